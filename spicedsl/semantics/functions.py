"""The one table of functions a model may call.

Each row names the function in the language, its arity, its spelling for sympy and
torch, and its value on floats (the checker folds constants with it). The parser accepts
any name in call position; the checker, the sympy lowering and the torch printer all
read this table, so adding a function is one row here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Function:
    name: str
    arity: int
    sympy: str  # attribute of sympy, or of spicedsl.semantics.sympy_functions
    torch: str  # torch callable used by the generated code
    summary: str
    evaluate: Callable[..., float]  # on Python floats, for the checker's constant folding


def _sigmoid(x: float) -> float:
    """The logistic function, without overflow for large ``-x``.

    >>> _sigmoid(0.0), _sigmoid(-1000.0)
    (0.5, 0.0)
    """
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    return math.exp(x) / (1 + math.exp(x))


def _clip(x: float, low: float, high: float) -> float:
    """``x`` limited to ``[low, high]``, as ``torch.clamp`` does.

    >>> _clip(2.0, 0.0, 1.0), _clip(-1.0, 0.0, 1.0)
    (1.0, 0.0)
    """
    return min(max(x, low), high)


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function("exp", 1, "exp", "torch.exp", "e to the power x", math.exp),
        Function("log", 1, "log", "torch.log", "natural logarithm", math.log),
        Function("sqrt", 1, "sqrt", "torch.sqrt", "square root", math.sqrt),
        Function("abs", 1, "Abs", "torch.abs", "absolute value", abs),
        Function("tanh", 1, "tanh", "torch.tanh", "hyperbolic tangent", math.tanh),
        Function("sigmoid", 1, "sigmoid", "torch.sigmoid", "1 / (1 + exp(-x))", _sigmoid),
        Function("min", 2, "Min", "torch.minimum", "smaller of two values", min),
        Function("max", 2, "Max", "torch.maximum", "larger of two values", max),
        Function("clip", 3, "clip", "torch.clamp", "clip(x, low, high)", _clip),
    )
}

# A learnable module's new value is clipped to [-MODULE_CLIP, MODULE_CLIP]. SPICE clips at
# 10, but a state's scale is free wherever an inverse temperature multiplies it, and
# networks drift there: on SPICE tutorial 4 the values sat at 10 on 8 % of updates and
# the equations that mimic such a network lose the participants' mechanisms. The clip
# is a guard against runaway values, not part of the model: wide enough not to bind.
MODULE_CLIP = 100.0

# Activations a learnable module may apply to its new value, with the range its values
# then lie in (after the clip).
ACTIVATIONS: dict[str, tuple[float, float]] = {
    "sigmoid": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "softplus": (0.0, MODULE_CLIP),
}


def output_range(activation: str | None) -> tuple[float, float]:
    """The range of a learnable module's new values: its network's during training, and
    the clip of the equation that replaces it.

    >>> output_range(None), output_range("sigmoid")
    ((-100.0, 100.0), (0.0, 1.0))
    """
    return ACTIVATIONS[activation] if activation else (-MODULE_CLIP, MODULE_CLIP)
