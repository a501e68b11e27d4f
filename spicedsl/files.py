"""Reading untrusted files and writing results, each one guarded way.

Every input file goes through :func:`read_input`: only regular files are read (not a
device, a pipe or a folder), and only up to a size limit, so that no file can make a
command hang or fill the memory. Every output goes through :func:`write_output`: a file
is written atomically, never over a symbolic link, a device or a pipe, and
:func:`check_output` refuses, before any work, an output that is one of the command's
inputs or that cannot be written.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from spicedsl.errors import FileError, SpiceError, UsageError

# Size limits of input files, in bytes.
MODEL_FILE_LIMIT = 1_000_000
TABLE_FILE_LIMIT = 1_000_000
DATA_FILE_LIMIT = 1_000_000_000
# Larger than any network a fit writes (1024 hidden units, thousands of participants).
WEIGHTS_FILE_LIMIT = 100_000_000

# An output written as "-" goes to stdout.
STDOUT = "-"


def size_text(n_bytes: float) -> str:
    """A size for a message.

    >>> size_text(1_000_000), size_text(4e9), size_text(2.5e13)
    ('1 MB', '4 GB', '25000 GB')
    """
    if n_bytes >= 1e9:
        return f"{n_bytes / 1e9:.3g} GB" if n_bytes < 1e12 else f"{n_bytes / 1e9:.0f} GB"
    return f"{n_bytes / 1e6:.3g} MB"


def read_input(path: str | os.PathLike[str], what: str, limit: int) -> bytes:
    """The bytes of the input file ``path``, a regular file of at most ``limit`` bytes.

    ``what`` names the file in messages ("model file", "data file", ...).

    Raises
    ------
    FileError
        If the file does not exist, is a folder, a device, a pipe or a socket, is larger
        than ``limit``, or cannot be read.
    """
    shown = os.fspath(path)
    try:
        # Non-blocking, so that opening a pipe without a writer does not wait for one.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise FileError(f"the {what} does not exist", path=shown) from None
    except OSError as error:
        raise FileError(f"cannot read the {what}: {error.strerror}", path=shown) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise FileError(f"the {what} is a folder, not a file", path=shown)
        raise FileError(
            f"the {what} is not a regular file but a device, a pipe or a socket",
            path=shown,
            hint="spicedsl reads only regular files; save the input to a file first",
        )
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(limit + 1)
        except OSError as error:
            raise FileError(f"cannot read the {what}: {error.strerror}", path=shown) from None
    if len(data) > limit:
        raise FileError(f"the {what} is larger than {size_text(limit)}", path=shown)
    return data


def read_input_text(path: str | os.PathLike[str], what: str, limit: int) -> str:
    """The text of the input file ``path`` (see :func:`read_input`), decoded as UTF-8;
    a byte-order mark is dropped.

    >>> import tempfile, pathlib
    >>> file = pathlib.Path(tempfile.mkdtemp()) / "bad.csv"
    >>> _ = file.write_bytes(b"a\\n\\xff\\n")
    >>> read_input_text(file, "data file", 100)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    spicedsl.errors.FileError: ...bad.csv:2: error: the data file is not UTF-8 text
    hint: save the file with UTF-8 encoding
    """
    raw = read_input(path, what, limit)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FileError(
            f"the {what} is not UTF-8 text",
            path=os.fspath(path),
            row=raw.count(b"\n", 0, error.start) + 1,
            hint="save the file with UTF-8 encoding",
        ) from None


def check_output(
    path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None] = ()
) -> None:
    """Refuse the output ``path`` before any work is done.

    ``-`` (stdout) is always accepted. A file is refused if it exists and is not a
    regular file (a symbolic link, a folder, a device, a pipe), if it is one of
    ``inputs`` (``None`` entries are skipped), or if its folder is missing or not
    writable.
    """
    if os.fspath(path) == STDOUT:
        return
    _check_target(path)
    for given in inputs:
        if given is not None and _same_file(path, given):
            raise UsageError(
                f"the output '{path}' is the input '{given}'; writing it would replace "
                "the input. Choose another output"
            )
    folder = Path(path).parent
    if not folder.is_dir():
        raise SpiceError(f"cannot write '{path}': folder '{folder}' does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SpiceError(f"cannot write '{path}': folder '{folder}' is not writable")


def write_output(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write ``data`` to stdout if ``path`` is ``-``, else with :func:`write_atomic`.

    A closed stdout raises :class:`BrokenPipeError`; any other failure to write it is a
    :class:`SpiceError`.
    """
    if os.fspath(path) != STDOUT:
        write_atomic(path, data)
        return
    try:
        if isinstance(data, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
        else:
            sys.stdout.write(data)
    except BrokenPipeError:
        raise
    except OSError as error:
        drop_stdout()
        raise SpiceError(f"cannot write to stdout: {error.strerror}") from None
    flush_stdout()


def flush_stdout() -> None:
    """Flush stdout. A closed stdout raises :class:`BrokenPipeError`; any other failure
    is a :class:`SpiceError`, and what is left to write is dropped."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as error:
        drop_stdout()
        raise SpiceError(f"cannot write to stdout: {error.strerror}") from None


def drop_stdout() -> None:
    """Send the rest of stdout to the null device, so that Python's last flush, at exit,
    does not fail again."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never half.

    Only a regular file is replaced, never a symbolic link, a device or a pipe.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> write_atomic(target, "hello")
    >>> target.read_text()
    'hello'

    Raises
    ------
    SpiceError
        If ``path`` is not a regular file or cannot be written; the message names the
        path and the reason.
    """
    path = Path(path)
    _check_target(path)
    if not path.parent.is_dir():
        raise SpiceError(f"cannot write '{path}': folder '{path.parent}' does not exist")
    mode = "wb" if isinstance(data, bytes) else "w"
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual mode
        with os.fdopen(fd, mode, **({} if isinstance(data, bytes) else {"encoding": "utf-8"})) as f:
            f.write(data)
        os.replace(tmp, path)
        tmp = None
    except OSError as error:
        raise SpiceError(f"cannot write '{path}': {error.strerror or error}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def check_output_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Refuse ``path`` as an output folder if it is a file, non-empty without
    ``overwrite``, or cannot be created or written; create nothing, so that a run
    failing early leaves nothing behind."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SpiceError(f"output '{path}' exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise SpiceError(f"output folder '{path}' is not empty; choose another or pass --overwrite")
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise SpiceError(f"cannot create output folder '{path}': '{existing}' is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SpiceError(f"cannot write output folder '{path}': '{existing}' is not writable")
    return path


def new_output_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Create the output folder ``path`` after :func:`check_output_dir`."""
    path = check_output_dir(path, overwrite)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SpiceError(f"cannot create output folder '{path}': {error.strerror}") from None
    return path


def _check_target(path: str | os.PathLike[str]) -> None:
    """Refuse an existing ``path`` that is not a regular file."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        raise SpiceError(f"cannot write '{path}': {error.strerror}") from None
    if stat.S_ISLNK(mode):
        problem = "it is a symbolic link; spicedsl replaces only regular files"
    elif stat.S_ISDIR(mode):
        problem = "it is a folder; name a file"
    elif not stat.S_ISREG(mode):
        problem = "it is a device, a pipe or a socket, not a regular file"
    else:
        return
    raise SpiceError(f"cannot write '{path}': {problem}")


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` both exist and are the same file (device and inode)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
