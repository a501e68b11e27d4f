"""The Python API: what the CLI calls, and what notebooks and scripts use directly."""

from __future__ import annotations

from pathlib import Path

from spicedsl.frontend import load_ir


def compile_model(path_or_text: str | Path) -> str:
    """The generated Python/torch module of a model file or model text.

    >>> print(compile_model("model m\\nstate x = 0\\nparam b = 2\\nlogits = b * x").splitlines()[8])
    class MModel(BaseRNN):
    """
    from spicedsl.codegen.generate import generate

    return generate(load_ir(path_or_text))


def load_model(path_or_text: str | Path, n_actions: int = 2, n_participants: int = 1, **options):
    """An instantiated torch network for a model (options: ``hidden_size``, ``dropout``)."""
    from spicedsl.codegen.instantiate import network_class

    return network_class(load_ir(path_or_text))(n_actions, n_participants, **options)
