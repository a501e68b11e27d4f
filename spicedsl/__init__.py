"""spicedsl: a model language for SPICE, from model file to discovered equations.

>>> import spicedsl
>>> spicedsl.compile_model  # doctest: +ELLIPSIS
<function compile_model at ...>
"""

__version__ = "0.1.0"

_API = ("compile_model", "load_model", "fit", "baseline", "evaluate", "simulate", "read_data")
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    # The API is imported on first use, so that `spicedsl check` loads neither torch nor sympy.
    if name in _API:
        from spicedsl import api

        return getattr(api, name)
    raise AttributeError(f"module 'spicedsl' has no attribute {name!r}")
