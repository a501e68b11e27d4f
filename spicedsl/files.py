"""Writing results safely: atomic writes, and output folders never silently reused."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from spicedsl.errors import SpiceError


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never half.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> write_atomic(target, "hello")
    >>> target.read_text()
    'hello'
    """
    path = Path(path)
    if path.is_dir():
        raise SpiceError(f"cannot write '{path}': it is a folder; name a file")
    if not path.parent.is_dir():
        raise SpiceError(f"cannot write '{path}': folder '{path.parent}' does not exist")
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual mode
    try:
        with os.fdopen(fd, mode, **({} if isinstance(data, bytes) else {"encoding": "utf-8"})) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Refuse ``path`` as an output folder if it is a file, or non-empty without
    ``overwrite``; create nothing, so that a run failing early leaves nothing behind."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SpiceError(f"output '{path}' exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise SpiceError(f"output folder '{path}' is not empty; choose another or pass --overwrite")
    return path


def new_output_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Create the output folder ``path`` after :func:`check_output_dir`."""
    path = check_output_dir(path, overwrite)
    path.mkdir(parents=True, exist_ok=True)
    return path
