"""Generated source -> a live network class.

The source comes from :func:`spicedsl.codegen.generate.generate`, which only puts
validated identifiers and numbers from the model file into it.
"""

from __future__ import annotations

import linecache
import types

from spicedsl import ir
from spicedsl.codegen.generate import class_name, generate
from spicedsl.runtime.network import BaseRNN


def network_class(model: ir.Model) -> type[BaseRNN]:
    """The :class:`BaseRNN` subclass generated for ``model``."""
    source = generate(model)
    filename = f"<spicedsl generated: {model.name}>"
    # Registered so that tracebacks inside generated code show its lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(f"spicedsl_generated_{model.name}")
    exec(compile(source, filename, "exec"), module.__dict__)
    return getattr(module, class_name(model.name))
