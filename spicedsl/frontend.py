"""Model text -> checked AST -> IR: the front end every command goes through."""

from __future__ import annotations

from pathlib import Path

from spicedsl.errors import ModelError
from spicedsl.files import MODEL_FILE_LIMIT, read_input_text
from spicedsl.semantics.check import check, declarations
from spicedsl.source import Source
from spicedsl.syntax import ast
from spicedsl.syntax.parser import parse


def read_source(path_or_text: str | Path) -> Source:
    """A model file's text, or the text itself when it does not look like a path.

    A value with a newline, or no ``.spice`` ending, that is not an existing file is
    taken as model text. A file is read with :func:`spicedsl.files.read_input`: a
    regular file of at most 1 MB.
    """
    text = str(path_or_text)
    looks_like_path = isinstance(path_or_text, Path) or (
        "\n" not in text and (text.endswith(".spice") or Path(text).is_file())
    )
    if not looks_like_path:
        return Source("<model>", text)
    return Source(text, read_input_text(text, "model file", MODEL_FILE_LIMIT))


def checked_program(source: Source) -> ast.Program:
    """Parse and check; raise :class:`ModelError` listing every problem."""
    program = parse(source.text, source.name)
    diagnostics = check(program, source)
    if diagnostics:
        raise ModelError(source, diagnostics)
    return program


def checked_table(program: ast.Program, source: Source):
    """Read and check the participant table a checked program names (None if none)."""
    from spicedsl.runtime.param_table import Bounds, read_param_table, table_path

    decls = declarations(program)
    if decls.participants is None:
        return None
    bounds = {
        p.name.id: Bounds(p.lower.value if p.lower else None, p.upper.value if p.upper else None)
        for p in decls.table_params
    }
    path = table_path(source.name, decls.participants.path)
    return read_param_table(path, bounds, decls.model.name.id)


def load_ir(path_or_text: str | Path):
    """The checked :class:`spicedsl.ir.Model` of a model file or text."""
    from spicedsl.semantics.lower import lower

    source = read_source(path_or_text)
    return lower(checked_program(source), source)
