"""sympy -> torch expression text for generated code."""

from __future__ import annotations

import keyword
import math

import sympy
from sympy.printing.pycode import AbstractPythonCodePrinter

from spicedsl.semantics.functions import FUNCTIONS

# Functions printed as a plain call of their torch spelling. sqrt is printed with
# powers, min, max and clip by methods of their own.
_CALLS = {f.sympy: f.torch for f in FUNCTIONS.values() if f.name not in ("min", "max", "clip")}

# Integers from here on are printed as floats: torch takes a Python int only if it fits
# in 64 bits, and the computation is in floating point anyway.
_EXACT = 2**53

# Names the generated ``trial`` method uses itself, and names Python will not let it
# assign; model names that clash get a suffix.
RESERVED = frozenset(
    {"self", "state", "data", "chosen", "offered", "torch", "logits", "new_state", "__debug__"}
)


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


def number_text(value: sympy.Expr) -> str:
    """A Python literal (or ``torch`` constant) for a constant expression.

    Constants are evaluated here, so that the generated code never applies a torch
    function to a plain number. A value that is not a real number is NaN, as torch
    gives for, e.g., ``log(-1)``.

    >>> number_text(sympy.log(2)), number_text(sympy.oo), number_text(sympy.sqrt(-1))
    ('0.6931471805599453', 'torch.inf', 'torch.nan')
    >>> number_text(sympy.Integer(10) ** 400)
    'torch.inf'
    """
    number = sympy.N(value.rewrite(sympy.Min).rewrite(sympy.exp), 30)
    if not number.is_extended_real:
        return "torch.nan"
    return _float_text(float(number))


def _float_text(value: float) -> str:
    if math.isinf(value):
        return "torch.inf" if value > 0 else "-torch.inf"
    return repr(value)


def _is_exact_in_python(expr: sympy.Expr) -> bool:
    """True for a rational that prints as Python ints torch accepts (as ``p`` or ``p/q``)."""
    return expr.is_Rational and abs(expr.p) < _EXACT and expr.q < _EXACT


class ModelTorchPrinter(AbstractPythonCodePrinter):
    """Prints a model expression as torch code over the generated method's local variables.

    Every symbol is a tensor there; constant subexpressions are printed as numbers.
    Printing anything outside the language's function table is an error. (sympy's own
    ``TorchPrinter`` is not the base class: importing it imports torch, which would
    make ``spicedsl compile`` several times slower.)
    """

    def __init__(self, names: dict[str, str]) -> None:
        super().__init__({"user_functions": _CALLS, "strict": True})
        self.names = names

    def doprint(self, expr: sympy.Basic) -> str:
        """The code of one expression (sympy's own ``doprint`` also handles assignments
        and code blocks, and importing what it needs for them is slow)."""
        return self._print(expr)

    def _print(self, expr, **kwargs) -> str:
        if isinstance(expr, sympy.Expr) and expr.is_number and not _is_exact_in_python(expr):
            return number_text(expr)
        return super()._print(expr, **kwargs)

    def _print_Symbol(self, expr: sympy.Symbol) -> str:  # noqa: N802 - sympy's naming
        return self.names[expr.name]

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:  # noqa: N802
        return self._hprint_Pow(expr, rational=rational, sqrt=FUNCTIONS["sqrt"].torch)

    def _print_Relational(self, expr) -> str:  # noqa: N802 - sympy's naming
        return f"{self._print(expr.lhs)} {expr.rel_op} {self._print(expr.rhs)}"

    def _print_BooleanTrue(self, expr) -> str:  # noqa: N802 - sympy's naming
        return "torch.tensor(True)"

    def _print_BooleanFalse(self, expr) -> str:  # noqa: N802 - sympy's naming
        return "torch.tensor(False)"

    def _print_clip(self, expr) -> str:
        x, low, high = expr.args
        if low.is_number and high.is_number:
            # torch.clamp's backward pass takes four operations, hardtanh's one; they
            # differ only in the gradient at the ends exactly.
            ends = f"{self._print(low)}, {self._print(high)}"
            return f"torch.nn.functional.hardtanh({self._print(x)}, {ends})"
        return self._print(sympy.Min(sympy.Max(x, low), high))

    def _extreme(self, expr, function: str, bound: str) -> str:
        numbers = [a for a in expr.args if a.is_number]
        others = [a for a in expr.args if not a.is_number]
        text = self._print(others[0])
        for other in others[1:]:
            text = f"{function}({text}, {self._print(other)})"
        if numbers:
            text = f"{FUNCTIONS['clip'].torch}({text}, {bound}={self._print(numbers[0])})"
        return text

    def _print_Min(self, expr) -> str:  # noqa: N802 - sympy's naming
        return self._extreme(expr, FUNCTIONS["min"].torch, "max")

    def _print_Max(self, expr) -> str:  # noqa: N802 - sympy's naming
        return self._extreme(expr, FUNCTIONS["max"].torch, "min")
