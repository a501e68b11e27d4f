"""IR -> the Python source of a torch model (a :class:`~spicedsl.runtime.network.BaseRNN`).

Whole-file structure lives in ``templates/model.py.j2``; expressions are printed by
:class:`~spicedsl.codegen.torch_printer.ModelTorchPrinter`. Only validated identifiers
and numbers from the model file reach the generated code, and the file name only as
an escaped comment.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import PurePath

import jinja2
import sympy

from spicedsl import __version__, ir
from spicedsl.codegen.torch_printer import ModelTorchPrinter, local_names, number_text
from spicedsl.resources import data_dir

# The entries each trial filter selects. With offered items, the actions not chosen are
# the other offered ones.
_MASKS = {
    "chosen": "chosen",
    "not_chosen": "~chosen",
    "not_offered": "~offered",
    "all": None,
    "condition": None,
}
_OFFERED_MASKS = {**_MASKS, "not_chosen": "offered & ~chosen"}

# Data columns with one value per action: expressions reading them are (batch, actions).
_PER_ACTION_COLUMNS = frozenset({ir.CHOICE_COLUMN, ir.REWARDS_COLUMN})

# Longest line of the generated ``trial`` method before a call's arguments are wrapped.
_LINE_LENGTH = 100
_INDENT = 8


@dataclass(frozen=True)
class Statement:
    """One statement of the generated ``trial`` method and the model line it comes from."""

    line: int
    code: str


def class_name(model_name: str) -> str:
    """CamelCase class name of a model.

    >>> class_name("learning_rate")
    'LearningRateModel'
    """
    return "".join(part[:1].upper() + part[1:] for part in model_name.split("_")) + "Model"


def _py(value: object) -> str:
    if isinstance(value, (str, int, float, bool, tuple)) or value is None:
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
    for control in model.controls:
        for column in control.columns:
            code = "chosen.float()" if column == ir.CHOICE_COLUMN else f"data[{column!r}]"
            names[ir.DATA_PREFIX + column] = code
    for vector in model.vectors:
        names[vector.name] = f"self.vector({ir.vector_of(vector)!r})"
    writer = _TrialWriter(model, names)
    update, choice_logits = writer.update(), writer.choice_logits()
    used = {
        node.id
        for statement in update + choice_logits
        for node in ast.walk(ast.parse(statement.code))
        if isinstance(node, ast.Name)
    }
    imports = ["BaseRNN"]
    imports += ["ModuleSpec"] if model.learned_modules else []
    imports += ["ParamSpec"] if model.params else []
    return (
        _environment()
        .get_template("model.py.j2")
        .render(
            version=__version__,
            source=_comment_safe(PurePath(model.source_name).name),
            import_torch="torch" in used,
            imports=", ".join(imports),
            model_name=model.name,
            class_name=class_name(model.name),
            states=model.states,
            params=model.params,
            modules=[_module_setup(model, m) for m in model.learned_modules],
            data_columns=model.data_columns,
            embedding_size=model.embedding.size if model.embedding else 0,
            embedding_dropout=model.embedding.dropout if model.embedding else 0.0,
            state_locals=[(names[s.name], s.name) for s in model.states],
            logits_state_locals=[(names[s], s) for s in writer.logits_states()],
            update=update,
            choice_logits=choice_logits,
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


class _TrialWriter:
    """Writes the statements of the generated ``update`` and ``choice_logits`` methods.

    ``update``: the params and controls that a module or a trial filter reads, then one
    statement per module, in the order of the model file. ``choice_logits``: the params
    and controls the choice rule reads, then the logits.
    """

    def __init__(self, model: ir.Model, names: dict[str, str]) -> None:
        self.model = model
        self.names = names
        self.printer = ModelTorchPrinter(names)
        # Symbols whose value always has one entry per action: (batch, actions).
        states = {s.name for s in model.states} | {v.name for v in model.vectors}
        per_action = states | {ir.DATA_PREFIX + c for c in _PER_ACTION_COLUMNS}
        self.per_action = states | {
            c.name for c in model.controls if any(s.name in per_action for s in c.expr.free_symbols)
        }
        self.masks = _OFFERED_MASKS if model.offered else _MASKS

    def update(self) -> list[Statement]:
        out = self._reads(self._names_updates_read())
        if any("offered" in (self.masks[m.filter.kind] or "") for m in self.model.modules):
            out.insert(0, Statement(self.model.offered_line, "offered = data['offered']"))
        out.extend(self._module(module) for module in self.model.modules)
        return out

    def choice_logits(self) -> list[Statement]:
        logits = self.model.logits
        out = self._reads({s.name for s in logits.free_symbols})
        text = self.printer.doprint(logits) if logits.free_symbols else number_text(logits)
        return [*out, Statement(self.model.logits_line, f"return {text}")]

    def logits_states(self) -> list[str]:
        """The states the choice rule reads."""
        read = {s.name for s in self.model.logits.free_symbols}
        return [s.name for s in self.model.states if s.name in read]

    def _reads(self, read: set[str]) -> list[Statement]:
        """The params and controls among ``read``, each computed once."""
        model, names = self.model, self.names
        out = [
            Statement(p.line, f"{names[p.name]} = self.param({p.name!r})")
            for p in model.params
            if p.name in read
        ]
        for control in model.controls:
            if control.name in read:
                value = self.printer.doprint(control.expr)
                out.append(Statement(control.line, f"{names[control.name]} = {value}"))
        return out

    def _names_updates_read(self) -> set[str]:
        exprs = []
        read: set[str] = set()
        for module in self.model.modules:
            if module.filter.condition is not None:
                exprs.append(module.filter.condition)
            if isinstance(module, ir.EquationModule):
                exprs.append(module.expr)
            else:
                read.update(module.inputs)
        read.update(s.name for expr in exprs for s in expr.free_symbols)
        return read

    def _module(self, module: ir.Module) -> Statement:
        target = self.names[module.target]
        mask = self.masks[module.filter.kind]
        if module.filter.condition is not None:
            condition = self.printer.doprint(module.filter.condition)
            mask = condition if mask is None else f"{mask} & ({condition})"
        if isinstance(module, ir.LearnedModule):
            args = [repr(module.name), target, str(mask)] + [self.names[i] for i in module.inputs]
            return Statement(module.line, _call(target, "self.learned", args))
        expr = self.printer.doprint(module.expr)
        if mask is not None:
            return Statement(module.line, _call(target, "torch.where", [mask, expr, target]))
        if self._is_per_action(module.expr):
            return Statement(module.line, f"{target} = {expr}")
        return Statement(module.line, f"{target} = {expr} + torch.zeros_like({target})")

    def _is_per_action(self, expr: sympy.Expr) -> bool:
        return any(s.name in self.per_action for s in expr.free_symbols)


def _call(target: str, function: str, args: list[str]) -> str:
    """``target = function(args)`` in the ``trial`` method, wrapped as ruff formats calls:
    the arguments on a line of their own, or one argument a line, when too long."""
    arguments = ", ".join(args)
    code = f"{target} = {function}({arguments})"
    if _INDENT + len(code) <= _LINE_LENGTH:
        return code
    if _INDENT + 4 + len(arguments) <= _LINE_LENGTH:
        return f"{target} = {function}(\n    {arguments}\n)"
    return f"{target} = {function}(\n" + "".join(f"    {arg},\n" for arg in args) + ")"
