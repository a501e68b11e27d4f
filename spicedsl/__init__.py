"""spicedsl: a model language for SPICE, from model file to discovered equations."""

__version__ = "0.1.0"

from spicedsl.api import compile_model, load_model  # noqa: E402

__all__ = ["compile_model", "load_model", "__version__"]
