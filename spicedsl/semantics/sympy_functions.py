"""sympy functions the language has and sympy lacks."""

from __future__ import annotations

import sympy


class sigmoid(sympy.Function):  # noqa: N801 - named as in the model language
    """The logistic function ``1 / (1 + exp(-x))``.

    >>> sigmoid(0).rewrite(sympy.exp)
    1/2
    """

    nargs = 1

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sympy.exp(-x))

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0]) * (1 - sigmoid(self.args[0]))


class clip(sympy.Function):  # noqa: N801 - named as in the model language
    """``clip(x, low, high)``: x limited to [low, high]."""

    nargs = 3

    @classmethod
    def eval(cls, x, low, high):
        if x.is_number and low.is_number and high.is_number:
            return sympy.Min(sympy.Max(x, low), high)
        return None
