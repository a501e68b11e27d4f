"""Files that ship with spicedsl: the grammar and the code templates.

In the source tree they live at the top level (``grammars/``, ``templates/``); the
wheel maps them into the package (see ``pyproject.toml``), where this module looks first.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_SOURCE_TREE = Path(__file__).resolve().parent.parent


def data_dir(kind: str) -> Path:
    """The folder of ``kind`` ('grammars' or 'templates'), installed or in the source tree."""
    installed = resources.files("spicedsl").joinpath(kind)
    if installed.is_dir():
        return Path(str(installed))
    return _SOURCE_TREE / kind
