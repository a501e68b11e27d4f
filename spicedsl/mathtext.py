"""Discovered equations as mathematics for people: MathML for web pages, LaTeX for
notebooks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.mathml import MathMLPresentationPrinter

if TYPE_CHECKING:
    from spicedsl.fitting import FitResult


def rounded(expr: sympy.Expr, digits: int = 4) -> sympy.Expr:
    """``expr`` with every float rounded to ``digits`` significant digits; whole numbers
    become integers, so ``1.0*x`` reads ``x``.

    >>> x = sympy.Symbol("x")
    >>> rounded(sympy.Float(0.083333333) + sympy.Float(1.0) * x, 3)
    x + 0.0833
    """
    replacements = {}
    for number in expr.atoms(sympy.Float):
        value = float(f"{float(number):.{digits}g}")
        replacements[number] = (
            sympy.Integer(int(value))
            if value.is_integer() and abs(value) < 1e15
            else sympy.Float(repr(value), digits)
        )
    return expr.xreplace(replacements)


class _MathML(MathMLPresentationPrinter):
    """Presentation MathML with model names shown whole (``x_value_reward``, not x
    subscripted)."""

    def _print_Symbol(self, sym, style="plain"):  # noqa: N802 (sympy's naming)
        element = self.dom.createElement("mi")
        element.appendChild(self.dom.createTextNode(sym.name))
        return element


class _Latex(LatexPrinter):
    """LaTeX with model names shown whole and upright."""

    def _print_Symbol(self, expr, style="plain"):  # noqa: N802 (sympy's naming)
        return r"\mathrm{" + expr.name.replace("_", r"\_") + "}"


def equation_mathml(name: str, expr: sympy.Expr, digits: int = 4) -> str:
    """``name = expr`` as a block MathML element.

    >>> text = equation_mathml("m", sympy.Symbol("x_v") / 2)
    >>> text[:40]
    '<math display="block"><mrow><mi>m</mi><m'
    >>> "<mfrac><mi>x_v</mi><mn>2</mn></mfrac>" in text
    True
    """
    equation = sympy.Eq(sympy.Symbol(name), rounded(expr, digits), evaluate=False)
    return f'<math display="block">{_MathML().doprint(equation)}</math>'


def equations_latex(result: FitResult) -> str:
    """The discovered equations as LaTeX, for ``FitResult._repr_latex_`` in notebooks.

    Parameters
    ----------
    result : FitResult
        A fit.

    Returns
    -------
    str
        ``$$\\begin{aligned} ... \\end{aligned}$$`` with one line ``module = equation``
        per learnable module, coefficients rounded to the fit's digits; a sentence in
        ``$$\\text{...}$$`` when the model has no learnable module.
    """
    digits = int(result.options.get("digits", 4))
    printer = _Latex()
    lines = [
        printer.doprint(sympy.Symbol(name)) + " &= " + printer.doprint(rounded(expr, digits))
        for name, expr in result.equations.items()
    ]
    if not lines:
        return r"$$\text{" + f"{result.model_name}: no learnable module" + "}$$"
    return r"$$\begin{aligned}" + r" \\ ".join(lines) + r"\end{aligned}$$"
