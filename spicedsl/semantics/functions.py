"""The one table of functions a model may call.

Each row names the function in the language, its arity, and its spelling for sympy
and torch. The parser accepts any name in call position; the checker, the sympy lowering
and the torch printer all read this table, so adding a function is one row here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Function:
    name: str
    arity: int
    sympy: str  # attribute of sympy, or of spicedsl.semantics.sympy_functions
    torch: str  # torch callable used by the generated code
    summary: str


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function("exp", 1, "exp", "torch.exp", "e to the power x"),
        Function("log", 1, "log", "torch.log", "natural logarithm"),
        Function("sqrt", 1, "sqrt", "torch.sqrt", "square root"),
        Function("abs", 1, "Abs", "torch.abs", "absolute value"),
        Function("tanh", 1, "tanh", "torch.tanh", "hyperbolic tangent"),
        Function("sigmoid", 1, "sigmoid", "torch.sigmoid", "1 / (1 + exp(-x))"),
        Function("min", 2, "Min", "torch.minimum", "smaller of two values"),
        Function("max", 2, "Max", "torch.maximum", "larger of two values"),
        Function("clip", 3, "clip", "torch.clamp", "clip(x, low, high)"),
    )
}

# Activations a learnable module may apply to its new value.
ACTIVATIONS: dict[str, str] = {
    "sigmoid": "torch.sigmoid",
    "tanh": "torch.tanh",
    "softplus": "torch.nn.functional.softplus",
}
