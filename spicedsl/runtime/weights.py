"""Network weights in a ``network.npz`` file: written by a fit, read by simulate and plot.

The file is a zip archive of ``.npy`` arrays, one per entry of the network's
``state_dict``. It is untrusted input: it is read through
:func:`spicedsl.files.read_input`, and each array's header is checked against the
network it loads into (its name, a float dtype, its shape) before the array is read, so
that a crafted header cannot make it allocate more than the network holds. The values
must be finite.
"""

from __future__ import annotations

import io
import math
import os
import zipfile

import numpy as np
import torch

from spicedsl.errors import FileError, SpiceError
from spicedsl.files import WEIGHTS_FILE_LIMIT, read_input, write_atomic
from spicedsl.runtime.network import BaseRNN
from spicedsl.settings import OPTIONS, FitSettings

_WHAT = "network weights file"
_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def save_weights(net: BaseRNN, path: str | os.PathLike[str]) -> None:
    """Write the weights of ``net`` as a plain ``.npz`` archive (no pickle), atomically."""
    buffer = io.BytesIO()
    arrays = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def weights_hidden_size(path: str | os.PathLike[str]) -> int:
    """The hidden size of the module networks in a ``network.npz`` (the default if it
    has none), checked against the range of the ``hidden_size`` option."""
    with _open(path) as archive:
        headers = _headers(archive, path)
    option = OPTIONS["hidden_size"]
    for key, (shape, _) in headers.items():
        if key.startswith("nets.") and key.endswith(".out_weight"):
            size = shape[0] if len(shape) == 1 else math.nan
            problem = option.problem(size)
            if problem:
                raise FileError(
                    f"'{key}' has shape {shape}: its hidden size {problem}",
                    path=os.fspath(path),
                )
            return int(size)
    return FitSettings().hidden_size


def load_weights(net: BaseRNN, path: str | os.PathLike[str]) -> None:
    """Load into ``net`` the weights written by :func:`save_weights`.

    Raises
    ------
    FileError
        If the file is not such an archive, or holds values that are not finite.
    SpiceError
        If its arrays are not those of ``net`` (other names or shapes).
    """
    shown = os.fspath(path)
    expected = net.state_dict()
    with _open(path) as archive:
        headers = _headers(archive, path)
        missing = [key for key in expected if key not in headers]
        extra = [key for key in headers if key not in expected]
        wrong = [
            f"'{key}' has shape {shape}, the model's {tuple(expected[key].shape)}"
            for key, (shape, _) in headers.items()
            if key in expected and shape != tuple(expected[key].shape)
        ]
        problems = wrong + [f"'{key}' is missing" for key in missing]
        problems += [f"'{key}' is not part of the model" for key in extra]
        if problems:
            more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
            raise SpiceError(
                f"the weights in '{shown}' do not fit this model: "
                + "; ".join(problems[:3])
                + more
                + "\nhint: use the model file, actions and participants of the fit that wrote them"
            )
        arrays = {key: _array(archive, key, path) for key in headers}
    net.load_state_dict({key: torch.as_tensor(value) for key, value in arrays.items()})


def _open(path: str | os.PathLike[str]) -> zipfile.ZipFile:
    data = read_input(path, _WHAT, WEIGHTS_FILE_LIMIT)
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        raise FileError(f"the {_WHAT} is not an .npz archive", path=os.fspath(path)) from None


def _headers(
    archive: zipfile.ZipFile, path: str | os.PathLike[str]
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array's shape and dtype, read from its header alone, by state_dict key."""
    headers = {}
    for info in archive.infolist():
        key = info.filename.removesuffix(".npy")
        if key == info.filename or key in headers:
            problem = "is not an .npy array" if key == info.filename else "appears twice"
            raise FileError(f"the archive member '{info.filename}' {problem}", path=os.fspath(path))
        with _member(archive, info, path) as member:
            shape, dtype, offset = _header(member, info.filename, path)
        if info.file_size != offset + math.prod(shape) * dtype.itemsize:
            raise FileError(
                f"the size of '{info.filename}' does not match its header", path=os.fspath(path)
            )
        headers[key] = (shape, dtype)
    return headers


def _header(member, name: str, path) -> tuple[tuple[int, ...], np.dtype, int]:
    """The shape and dtype an ``.npy`` header gives, and where the data starts."""
    try:
        version = np.lib.format.read_magic(member)
        if version not in _HEADER_READERS:
            raise ValueError(f"unknown .npy format version {version}")
        shape, _, dtype = _HEADER_READERS[version](member)
    except (ValueError, OSError, EOFError, SyntaxError, zipfile.BadZipFile) as error:
        raise FileError(
            f"the archive member '{name}' is not a valid .npy array ({error})",
            path=os.fspath(path),
        ) from None
    if dtype.kind != "f" or dtype.itemsize > 8:
        raise FileError(
            f"the array '{name}' holds {dtype} values, not floating-point numbers",
            path=os.fspath(path),
        )
    return tuple(shape), dtype, member.tell()


def _array(archive: zipfile.ZipFile, key: str, path) -> np.ndarray:
    """The array of ``key``, whose header :func:`_headers` checked; values must be finite."""
    info = archive.getinfo(key + ".npy")
    with _member(archive, info, path) as member:
        try:
            array = np.lib.format.read_array(member, allow_pickle=False)
        except (ValueError, OSError, zipfile.BadZipFile) as error:
            raise FileError(
                f"cannot read the array '{key}': {error}", path=os.fspath(path)
            ) from None
    if not np.isfinite(array).all():
        raise FileError(
            f"the array '{key}' holds values that are not finite (NaN or infinite)",
            path=os.fspath(path),
        )
    return array


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path):
    try:
        return archive.open(info)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError) as error:
        raise FileError(
            f"cannot read the archive member '{info.filename}': {error}", path=os.fspath(path)
        ) from None
