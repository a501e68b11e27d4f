"""IR -> the Python source of a torch model (a :class:`~spicedsl.runtime.network.BaseRNN`).

Whole-file structure lives in ``templates/model.py.j2``; expressions are printed by
:class:`~spicedsl.codegen.torch_printer.ModelTorchPrinter`. Only validated identifiers
and numbers from the model file reach the generated code, and the file name only as
an escaped comment.
"""

from __future__ import annotations

from pathlib import PurePath

import jinja2

from spicedsl import __version__, ir
from spicedsl.codegen.torch_printer import ModelTorchPrinter, local_names
from spicedsl.resources import data_dir

_MASKS = {"chosen": "chosen", "not_chosen": "~chosen", "all": None}


def class_name(model_name: str) -> str:
    """CamelCase class name of a model.

    >>> class_name("learning_rate")
    'LearningRateModel'
    """
    return "".join(part[:1].upper() + part[1:] for part in model_name.split("_")) + "Model"


def _py(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (str, int, bool, tuple)) or value is None:
        return repr(value)
    raise TypeError(f"cannot put {type(value).__name__} into generated code")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        autoescape=False,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["py"] = _py
    return env


def generate(model: ir.Model) -> str:
    """The Python module implementing ``model``; byte-identical for identical input."""
    names = local_names(
        [s.name for s in model.states]
        + [c.name for c in model.controls]
        + [p.name for p in model.params]
    )
    printer = ModelTorchPrinter(names)
    source = _comment_safe(PurePath(model.source_name).name)
    statements = _trial_statements(model, names, printer)
    return (
        _environment()
        .get_template("model.py.j2")
        .render(
            version=__version__,
            source=source,
            model_name=model.name,
            class_name=class_name(model.name),
            states=model.states,
            params=model.params,
            modules=[_module_setup(model, m) for m in model.learned_modules],
            data_columns=model.data_columns,
            embedding_size=model.embedding.size if model.embedding else 0,
            embedding_dropout=model.embedding.dropout if model.embedding else 0.0,
            state_locals=[(names[s.name], s.name) for s in model.states],
            statements=statements,
        )
    )


def _comment_safe(text: str) -> str:
    """Text that cannot end a comment line: control characters are escaped."""
    return repr(text)[1:-1]


def _module_setup(model: ir.Model, module: ir.LearnedModule) -> dict[str, object]:
    return {
        "name": module.name,
        "target": module.target,
        "filter": module.filter.kind,
        "inputs": module.inputs,
        "binary_inputs": model.binary_inputs(module),
        "activation": module.activation,
        "degree": module.degree,
        "threshold": float(module.threshold),
        "embedded": module.embedded,
        "line": module.line,
    }


def _trial_statements(
    model: ir.Model, names: dict[str, str], printer: ModelTorchPrinter
) -> list[tuple[int, str]]:
    used = set().union(*(m.expr.free_symbols for m in model.modules if hasattr(m, "expr")))
    used |= model.logits.free_symbols
    used_names = {s.name for s in used}
    out: list[tuple[int, str]] = []
    for param in model.params:
        if param.name in used_names:
            out.append((param.line, f"{names[param.name]} = self.param({param.name!r})"))
    for control in model.controls:
        local = names[control.name]
        if control.state is not None:
            out.append((control.line, f"{local} = {names[control.state]}"))
        elif control.column == ir.CHOICE_COLUMN:
            out.append((control.line, f"{local} = chosen.float()"))
        else:
            out.append((control.line, f"{local} = data[{control.column!r}]"))
    for module in model.modules:
        target = names[module.target]
        if module.filter.kind == "condition":
            mask = printer.doprint(module.filter.condition)
        else:
            mask = _MASKS[module.filter.kind]
        if isinstance(module, ir.LearnedModule):
            args = ", ".join(
                [repr(module.name), target, str(mask)] + [names[i] for i in module.inputs]
            )
            out.append((module.line, f"{target} = self.learned({args})"))
            continue
        expr = printer.doprint(module.expr)
        if mask is None:
            out.append((module.line, f"{target} = {expr} + torch.zeros_like({target})"))
        else:
            out.append((module.line, f"{target} = torch.where({mask}, {expr}, {target})"))
    out.append((model.logits_line, f"logits = {printer.doprint(model.logits)}"))
    return out
