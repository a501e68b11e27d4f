"""sympy -> torch expression text for generated code."""

from __future__ import annotations

import keyword

import sympy
from sympy.printing.pytorch import TorchPrinter

# Names the generated ``trial`` method uses itself; model names that clash get a suffix.
RESERVED = frozenset({"self", "state", "data", "chosen", "torch", "logits"})


def local_names(names: list[str]) -> dict[str, str]:
    """A valid, distinct Python identifier for each model name.

    >>> local_names(["lambda", "lambda_", "x"])
    {'lambda': 'lambda__', 'lambda_': 'lambda_', 'x': 'x'}
    """
    taken = set(names)
    result: dict[str, str] = {}
    for name in names:
        local = name
        if keyword.iskeyword(name) or name in RESERVED:
            local = name + "_"
            while local in taken or keyword.iskeyword(local):
                local += "_"
            taken.add(local)
        result[name] = local
    return result


class ModelTorchPrinter(TorchPrinter):
    """Prints the model's symbols as the generated method's local variables."""

    def __init__(self, names: dict[str, str]) -> None:
        super().__init__()
        self.names = names

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        return self.names[expr.name]

    def _print_sigmoid(self, expr) -> str:
        return f"torch.sigmoid({self._print(expr.args[0])})"

    def _print_clip(self, expr) -> str:
        x, low, high = (self._print(a) for a in expr.args)
        return f"torch.clamp({x}, {low}, {high})"

    def _extreme(self, expr, function: str, bound: str) -> str:
        numbers = [a for a in expr.args if a.is_number]
        others = [a for a in expr.args if not a.is_number]
        text = self._print(others[0])
        for other in others[1:]:
            text = f"torch.{function}({text}, {self._print(other)})"
        if numbers:
            text = f"torch.clamp({text}, {bound}={self._print(numbers[0])})"
        return text

    def _print_Min(self, expr) -> str:
        return self._extreme(expr, "minimum", "max")

    def _print_Max(self, expr) -> str:
        return self._extreme(expr, "maximum", "min")
