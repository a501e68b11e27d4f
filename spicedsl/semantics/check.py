"""Semantic checks on a parsed model: names, arities, filters, order, values.

:func:`check` returns every problem it finds as a :class:`Diagnostic`; it never stops
at the first. It needs neither sympy nor torch, so ``spicedsl check`` stays fast.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from spicedsl.errors import Diagnostic, did_you_mean
from spicedsl.printer import format_expr
from spicedsl.semantics.functions import ACTIVATIONS, FUNCTIONS
from spicedsl.settings import MAX_ACTIONS, OPTIONS
from spicedsl.source import Source, Span
from spicedsl.syntax import ast

MAX_DEGREE = 3
# Larger constant exponents make sympy compute huge exact powers, and mean nothing here.
MAX_EXPONENT = 1000
_VALUES = {"state", "control", "param"}  # what equations and the choice rule may read
# Data columns that are the choice or its outcome, and so never seen before the choice.
_OUTCOMES = {
    "choice": "the choice itself",
    "reward": "the outcome of the choice",
    "rewards": "the outcome of the trial",
}


@dataclass(frozen=True)
class Declarations:
    """The declarations of a program, by kind, after duplicates are dropped."""

    model: ast.ModelDecl | None
    actions: ast.ActionsDecl | None
    states: dict[str, ast.StateDecl]
    controls: dict[str, ast.ControlDecl]
    params: dict[str, ast.ParamDecl]
    modules: dict[str, ast.ModuleDecl]
    logits: ast.LogitsDecl | None
    embedding: ast.EmbeddingDecl | None
    fit: ast.FitDecl | None
    participants: ast.ParticipantsDecl | None
    offered: ast.OfferedDecl | None

    @property
    def table_params(self) -> list[ast.ParamDecl]:
        """The params a participant table may give values: per participant, not fixed."""
        return [p for p in self.params.values() if p.per_participant and not p.fixed]

    def kind_of(self, name: str) -> str | None:
        for kind, table in (("state", self.states), ("control", self.controls)):
            if name in table:
                return kind
        return "param" if name in self.params else None

    @property
    def value_names(self) -> list[str]:
        return [*self.states, *self.controls, *self.params]


def check(program: ast.Program, source: Source) -> list[Diagnostic]:
    """Every semantic error in ``program``, in source order.

    >>> from spicedsl.syntax.parser import parse
    >>> text = "model m\\nstate x = 0\\nlogits = y"
    >>> [d.message for d in check(parse(text), Source("m.spice", text))]
    ["unknown name 'y'"]
    """
    return sorted(_Checker(program, source).run(), key=lambda d: d.span.start if d.span else -1)


def declarations(program: ast.Program) -> Declarations:
    """The program's declarations by kind (first one wins where a name repeats)."""
    return _Checker(program, Source("", "")).decls


class _Checker:
    def __init__(self, program: ast.Program, source: Source) -> None:
        self.program = program
        self.source = source
        self.errors: list[Diagnostic] = []
        self.decls = self._collect()

    def run(self) -> list[Diagnostic]:
        d = self.decls
        if d.model is None:
            self.error("the file declares no model; start it with 'model NAME'", None)
        if d.actions is not None and d.actions.count is not None:
            if d.actions.count < 2:
                self.error("a task needs at least 2 actions", d.actions.span)
            elif d.actions.count > MAX_ACTIONS:
                self.error(f"at most {MAX_ACTIONS} actions are supported", d.actions.span)
        for control in d.controls.values():
            self.check_control(control)
        for param in d.params.values():
            self.check_param(param)
        for module in d.modules.values():
            self.check_module(module)
        self.check_overlaps()
        self.check_order()
        if d.logits is None:
            self.error(
                "the model has no choice rule",
                None,
                hint="add one, e.g. 'logits = beta * x_value_reward'",
            )
        else:
            self.check_expr(d.logits.expr)
            self.check_choice_rule(d.logits.expr)
        if d.embedding is not None:
            self.check_embedding(d.embedding)
        if d.fit is not None:
            self.check_fit(d.fit)
        if d.participants is not None and not d.table_params:
            self.error(
                "a participant table gives values to per-participant params, "
                "but every param here is shared or fixed",
                d.participants.span,
                hint="declare them as 'param NAME per participant', with no '= value'",
            )
        if d.participants is not None and not d.participants.path.strip():
            self.error("the participant table needs a file name", d.participants.span)
        return self.errors

    # -- helpers
    def line_of(self, span: Span) -> str:
        return f"line {self.source.line_col(span.start)[0]}"

    def error(self, message: str, span: Span | None, hint: str | None = None) -> None:
        self.errors.append(Diagnostic(message, span, hint))

    def _collect(self) -> Declarations:
        single: dict[type, ast.Statement] = {}
        values: dict[str, dict[str, ast.Statement]] = {"state": {}, "control": {}, "param": {}}
        modules: dict[str, ast.ModuleDecl] = {}
        seen_values: dict[str, ast.Name] = {}
        kinds = {ast.StateDecl: "state", ast.ControlDecl: "control", ast.ParamDecl: "param"}
        for stmt in self.program.statements:
            if isinstance(stmt, ast.ModuleDecl):
                if stmt.name.id in modules:
                    self.duplicate(stmt.name, modules[stmt.name.id].name, "module")
                else:
                    modules[stmt.name.id] = stmt
            elif type(stmt) in kinds:
                name = stmt.name
                if name.id in seen_values:
                    self.duplicate(name, seen_values[name.id], "name")
                else:
                    seen_values[name.id] = name
                    values[kinds[type(stmt)]][name.id] = stmt
            elif type(stmt) in single:
                keyword = _keyword(stmt)
                self.error(f"the model declares '{keyword}' twice", stmt.span)
            else:
                single[type(stmt)] = stmt
        return Declarations(
            model=single.get(ast.ModelDecl),
            actions=single.get(ast.ActionsDecl),
            states=values["state"],
            controls=values["control"],
            params=values["param"],
            modules=modules,
            logits=single.get(ast.LogitsDecl),
            embedding=single.get(ast.EmbeddingDecl),
            fit=single.get(ast.FitDecl),
            participants=single.get(ast.ParticipantsDecl),
            offered=single.get(ast.OfferedDecl),
        )

    def duplicate(self, name: ast.Name, first: ast.Name, what: str) -> None:
        line = self.line_of(first.span)
        self.error(f"duplicate {what} '{name.id}'", name.span, hint=f"first declared {line}")

    def expect_kind(self, name: ast.Name, kinds: set[str], what: str) -> bool:
        """Report ``name`` unless it is declared as one of ``kinds``; ``what`` says who may
        only use those kinds, e.g. 'a module can only update'."""
        kind = self.decls.kind_of(name.id)
        if kind in kinds:
            return True
        if kind is None:
            candidates = [n for n in self.decls.value_names if self.decls.kind_of(n) in kinds]
            self.error(
                f"unknown name '{name.id}'", name.span, hint=did_you_mean(name.id, candidates)
            )
        else:
            allowed = " or ".join(sorted(kinds))
            self.error(f"'{name.id}' is a {kind}, but {what} a {allowed}", name.span)
        return False

    def check_expr(
        self,
        expr: ast.Expr,
        kinds: set[str] = _VALUES,
        what: str = "an equation can only read",
        columns: bool = False,
    ) -> None:
        """Report unknown names and functions, wrong arities and constants without a
        value in ``expr``; it may read names of ``kinds``, and data columns if ``columns``."""
        self.check_vectors(expr)
        if not columns:
            for column in ast.columns_in(expr):
                self.error(
                    f"'data.{column.name.id}' is read outside a control",
                    column.span,
                    hint=f"declare it as a control, e.g. 'control c_{column.name.id} = "
                    f"data.{column.name.id}', and read the control",
                )
        try:
            _constant_value(expr)
        except _NoValueError as problem:
            text = format_expr(problem.node)
            self.error(f"'{text}' {problem.reason}", problem.node.span)
        for call in ast.calls_in(expr):
            function = FUNCTIONS.get(call.func.id)
            if function is None:
                hint = did_you_mean(call.func.id, FUNCTIONS)
                known = ", ".join(FUNCTIONS)
                self.error(
                    f"unknown function '{call.func.id}'",
                    call.func.span,
                    hint=hint or f"the functions are {known}",
                )
            elif len(call.args) != function.arity:
                s = "" if function.arity == 1 else "s"
                were = "was" if len(call.args) == 1 else "were"
                self.error(
                    f"'{function.name}' takes {function.arity} argument{s}, "
                    f"but {len(call.args)} {were} given",
                    call.span,
                    hint=f"{function.name}: {function.summary}",
                )
            elif function.name == "clip":
                self.check_clip(call)
        for name in ast.names_in(expr):
            self.expect_kind(name, kinds, what)

    def check_clip(self, call: ast.Call) -> None:
        """Report ``clip(x, low, high)`` whose constant ends have ``low > high``."""
        try:
            low, high = [_constant_value(end) for end in call.args[1:]]
        except _NoValueError:
            return  # the end without a value is reported on its own
        if low is not None and high is not None and low > high:
            low_end, high_end = call.args[1:]
            self.error(
                f"the low end of clip, {format_expr(low_end)}, is above its high end, "
                f"{format_expr(high_end)}",
                Span(low_end.span.start, high_end.span.end),
                hint="clip(x, low, high) limits x to [low, high]; swap the two ends",
            )

    def check_vectors(self, expr: ast.Expr) -> None:
        """A per-action constant has one value per action, so the model must say how many."""
        actions = self.decls.actions.count if self.decls.actions else None
        for vector in (e for e in ast.subexpressions(expr) if isinstance(e, ast.Vector)):
            if actions is None:
                self.error(
                    "a per-action constant needs the number of actions",
                    vector.span,
                    hint=f"declare it, e.g. 'actions {len(vector.values)}'",
                )
            elif len(vector.values) != actions:
                self.error(
                    f"this per-action constant has {len(vector.values)} values, but the "
                    f"model has {actions} actions",
                    vector.span,
                )

    def check_control(self, control: ast.ControlDecl) -> None:
        """A control reads data columns and start-of-trial state values; one seen before
        the choice reads data columns only, and neither the choice nor its outcome."""
        self.check_expr(
            control.expr, {"state"}, "a control can read data columns ('data.NAME') and", True
        )
        columns = ast.columns_in(control.expr)
        if not columns and not ast.names_in(control.expr):
            self.error(
                f"control '{control.name.id}' reads no data column and no state, so it is "
                "the same on every trial",
                control.expr.span,
                hint="use a param or a number instead",
            )
        if not control.before_choice:
            return
        for name in ast.names_in(control.expr):
            self.error(
                f"control '{control.name.id}' is seen before the choice, so it can only read "
                f"data columns, not the state '{name.id}'",
                name.span,
                hint="the choice rule can read states directly",
            )
        for column in columns:
            if column.name.id in _OUTCOMES:
                self.error(
                    f"'data.{column.name.id}' is {_OUTCOMES[column.name.id]}, so it cannot be "
                    "seen before the choice",
                    column.span,
                )

    def check_choice_rule(self, expr: ast.Expr) -> None:
        """The choice rule reads params, states and the controls seen before the choice."""
        for name in ast.names_in(expr):
            control = self.decls.controls.get(name.id)
            if control is not None and not control.before_choice:
                self.error(
                    f"the choice rule reads '{name.id}', which is only known after the choice",
                    name.span,
                    hint=f"if the data show it before the choice, write 'control {name.id} = "
                    f"... before choice'; to use it on later trials, keep it in a state",
                )

    def check_param(self, param: ast.ParamDecl) -> None:
        low = param.lower.value if param.lower else -math.inf
        high = param.upper.value if param.upper else math.inf
        if low >= high:
            self.error(f"the bounds of '{param.name.id}' leave no value", param.span)
        elif param.value is not None and not low < param.value.value < high:
            word = "value" if param.fixed else "initial value"
            self.error(
                f"the {word} {param.value.value:g} of '{param.name.id}' is outside its bounds",
                param.value.span,
            )

    def check_module(self, module: ast.ModuleDecl) -> None:
        target = module.target
        target_ok = False
        if self.decls.kind_of(target.id) is None:
            self.error(
                f"module '{module.name.id}' updates '{target.id}', which is not declared",
                target.span,
                hint=did_you_mean(target.id, self.decls.states)
                or f"declare it as a state, e.g. 'state {target.id} = 0'",
            )
        else:
            target_ok = self.expect_kind(target, {"state"}, "a module can only update")
        if module.filter.kind == "not_offered" and self.decls.offered is None:
            self.error(
                f"module '{module.name.id}' updates the items not offered, but the model "
                "does not say which items each trial offers",
                module.filter.span,
                hint="add e.g. 'offered data.option_a, data.option_b'",
            )
        if module.filter.condition is not None:
            condition = module.filter.condition
            for side in (condition.left, condition.right):
                self.check_expr(side, {"control"}, "a trial filter can only read")
            if not ast.names_in(condition.left) + ast.names_in(condition.right):
                self.error(
                    f"the condition of module '{module.name.id}' reads no control, "
                    "so it is the same on every trial",
                    condition.span,
                    hint="compare a control with a value, e.g. 'when c_reward > 0.5', "
                    "or write 'when all'",
                )
        body = module.body
        if isinstance(body, ast.Equation):
            if body.name.id != module.name.id:
                self.error(
                    f"the equation of module '{module.name.id}' is named '{body.name.id}'",
                    body.name.span,
                    hint=f"write '{module.name.id} = ...'",
                )
            self.check_expr(body.expr)
            return
        seen: set[str] = set()
        for name in body.inputs:
            if target_ok and name.id == module.target.id:
                self.error(
                    f"learnable module '{module.name.id}' lists its own target "
                    f"'{name.id}' as an input",
                    name.span,
                    hint="a module always sees its target's current value; remove it here",
                )
            elif name.id in seen:
                self.error(f"input '{name.id}' is listed twice", name.span)
            else:
                self.expect_kind(name, {"state", "control"}, "a learnable module can only read")
            seen.add(name.id)
        if body.activation is not None and body.activation.id not in ACTIVATIONS:
            self.error(
                f"unknown activation '{body.activation.id}'",
                body.activation.span,
                hint="the activations are " + ", ".join(ACTIVATIONS),
            )
        if body.degree is not None and not 1 <= body.degree <= MAX_DEGREE:
            self.error(f"degree must be between 1 and {MAX_DEGREE}, not {body.degree}", body.span)

    def check_overlaps(self) -> None:
        by_target: dict[str, list[ast.ModuleDecl]] = {}
        for module in self.decls.modules.values():
            for other in by_target.get(module.target.id, []):
                if _filters_overlap(module.filter, other.filter):
                    line = self.line_of(other.span)
                    self.error(
                        f"modules '{other.name.id}' ({line}) and '{module.name.id}' both "
                        f"update '{module.target.id}' on the same trials",
                        module.filter.span if module.filter.span.end else module.name.span,
                        hint="two modules writing the same entries can split one update "
                        "between them in endless ways, so neither equation would be unique; "
                        "give them disjoint filters (e.g. 'when chosen' and "
                        "'when not chosen') or merge them",
                    )
                    break
            by_target.setdefault(module.target.id, []).append(module)

    def check_order(self) -> None:
        modules = list(self.decls.modules.values())
        for i, module in enumerate(modules):
            for name in _names_read(module):
                if name.id == module.target.id or self.decls.kind_of(name.id) != "state":
                    continue
                later = next((m for m in modules[i + 1 :] if m.target.id == name.id), None)
                if later is not None:
                    line = self.line_of(later.span)
                    self.error(
                        f"module '{module.name.id}' reads '{name.id}', which module "
                        f"'{later.name.id}' ({line}) updates later in the same trial",
                        name.span,
                        hint=f"modules run in file order: declare '{later.name.id}' first "
                        f"to read the new value, or read the start-of-trial value through "
                        f"a control ('control c_{name.id} = {name.id}')",
                    )

    def check_embedding(self, embedding: ast.EmbeddingDecl) -> None:
        largest = OPTIONS["hidden_size"].maximum
        if embedding.size < 1:
            self.error("the embedding size must be at least 1", embedding.span)
        elif embedding.size > largest:
            self.error(f"the embedding size must be at most {largest:g}", embedding.span)
        if embedding.dropout is not None and not 0 <= embedding.dropout.value < 1:
            self.error("dropout must be in [0, 1)", embedding.dropout.span)
        for name in embedding.targets:
            module = self.decls.modules.get(name.id)
            if module is not None and isinstance(module.body, ast.Learn):
                continue
            if name.id in self.decls.params:
                continue
            learnable = [m for m, d in self.decls.modules.items() if isinstance(d.body, ast.Learn)]
            self.error(
                f"'{name.id}' is neither a learnable module nor a param",
                name.span,
                hint=did_you_mean(name.id, learnable + list(self.decls.params)),
            )

    def check_fit(self, fit: ast.FitDecl) -> None:
        seen: set[str] = set()
        for option in fit.options:
            spec = OPTIONS.get(option.name.id)
            if spec is None:
                self.error(
                    f"unknown fit option '{option.name.id}'",
                    option.name.span,
                    hint=did_you_mean(option.name.id, OPTIONS)
                    or "the options are " + ", ".join(OPTIONS),
                )
            elif option.name.id in seen:
                self.error(f"fit option '{option.name.id}' is set twice", option.name.span)
            elif (problem := spec.problem(option.value.value)) is not None:
                self.error(f"fit option '{option.name.id}' {problem}", option.value.span)
            seen.add(option.name.id)


def _names_read(module: ast.ModuleDecl) -> list[ast.Name]:
    names: list[ast.Name] = []
    if module.filter.condition is not None:
        names += ast.names_in(module.filter.condition.left)
        names += ast.names_in(module.filter.condition.right)
    if isinstance(module.body, ast.Equation):
        names += ast.names_in(module.body.expr)
    else:
        names += list(module.body.inputs)
    return names


_COMPLEMENTS = {"<": ">=", ">=": "<", ">": "<=", "<=": ">", "==": "!=", "!=": "=="}
_MIRRORED = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "==": "==", "!=": "!="}


def _filters_overlap(a: ast.TrialFilter, b: ast.TrialFilter) -> bool:
    """Whether two filters may select the same entry on the same trial.

    Filters are disjoint when they select different ones of the chosen action, the
    other offered actions and the actions not offered (whatever conditions they add), or
    when both have conditions and the conditions
    are disjoint: they compare the same expression with numbers that no value satisfies
    both (``c > 0.5`` and ``c <= 0.5``), or one is the exact complement of the other
    (``c1 < c2`` and ``c1 >= c2``).

    >>> from spicedsl.syntax.parser import parse
    >>> def when(text):
    ...     return parse(f"module m updates x when {text} learn()").statements[0].filter
    >>> _filters_overlap(when("c > 0.5"), when("0.5 >= c"))
    False
    >>> _filters_overlap(when("c >= 0.5"), when("c <= 0.5"))
    True
    >>> _filters_overlap(when("chosen and c > 0.5"), when("chosen and c <= 0.5"))
    False
    >>> _filters_overlap(when("chosen and c > 0.5"), when("chosen"))
    True
    """
    if a.kind != b.kind and {a.kind, b.kind} <= {"chosen", "not_chosen", "not_offered"}:
        return False
    if a.condition is None or b.condition is None:
        return True
    return _conditions_overlap(a.condition, b.condition)


def _conditions_overlap(ca: ast.Comparison, cb: ast.Comparison) -> bool:
    """Whether two comparisons may hold on the same trial (see :func:`_filters_overlap`)."""
    if ca.left == cb.left and ca.right == cb.right and _COMPLEMENTS[ca.op] == cb.op:
        return False
    bound_a, bound_b = _bound(ca), _bound(cb)
    if bound_a is None or bound_b is None or bound_a[0] != bound_b[0]:
        return True
    return _both_hold(bound_a[1:], bound_b[1:])


def _bound(comparison: ast.Comparison) -> tuple[ast.Expr, str, float] | None:
    """``comparison`` as ``(expression, op, number)`` when one side is a constant."""
    sides = (
        (comparison.left, comparison.op, comparison.right),
        (comparison.right, _MIRRORED[comparison.op], comparison.left),
    )
    for subject, op, other in sides:
        try:
            value = _constant_value(other)
        except _NoValueError:
            return None
        if value is not None:
            return subject, op, value
    return None


def _both_hold(a: tuple[str, float], b: tuple[str, float]) -> bool:
    """Whether some ``x`` satisfies both ``x op_a value_a`` and ``x op_b value_b``."""
    if "!=" in (a[0], b[0]):
        (other_op, other_value), excluded = (b, a[1]) if a[0] == "!=" else (a, b[1])
        return not (other_op == "==" and other_value == excluded)
    (low_a, low_a_in, high_a, high_a_in), (low_b, low_b_in, high_b, high_b_in) = (
        _interval(*a),
        _interval(*b),
    )
    # Where two ends coincide, the end of the intersection is included only if both are.
    low, low_out = max((low_a, not low_a_in), (low_b, not low_b_in))
    high, high_in = min((high_a, high_a_in), (high_b, high_b_in))
    return low < high or (low == high and not low_out and high_in)


def _interval(op: str, value: float) -> tuple[float, bool, float, bool]:
    """The ``x`` with ``x op value``: low end, whether it is included, high end, whether it is."""
    return {
        "<": (-math.inf, False, value, False),
        "<=": (-math.inf, False, value, True),
        ">": (value, False, math.inf, False),
        ">=": (value, True, math.inf, False),
        "==": (value, True, value, True),
    }[op]


_ARITHMETIC = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "^": operator.pow,
}


class _NoValueError(Exception):
    def __init__(self, node: ast.Expr, reason: str = "has no finite real value") -> None:
        super().__init__(node)
        self.node = node
        self.reason = reason


def _constant_value(expr: ast.Expr) -> float | None:
    """The value of ``expr`` when it reads no name, else None.

    Raises :class:`_NoValueError` for the innermost constant part without a finite real value,
    such as ``log(0)``, ``(-8) ^ (1 / 3)`` or ``10 ^ 400``, or for a division by zero.

    >>> from spicedsl.syntax.ast import BinOp, Call, Name, Number
    >>> _constant_value(BinOp("*", Number(2.0), Call(Name("max"), (Number(1.0), Number(3.0)))))
    6.0
    >>> _constant_value(BinOp("*", Name("x"), Number(2.0))) is None
    True
    >>> _constant_value(BinOp("+", Name("x"), BinOp("/", Number(1.0), Number(0.0))))
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    spicedsl.semantics.check._NoValueError: BinOp(op='/', left=Number(value=1.0), ...)
    """
    if isinstance(expr, ast.Number):
        return expr.value
    if isinstance(expr, ast.Name | ast.Column | ast.Vector):
        return None
    if isinstance(expr, ast.Neg):
        value = _constant_value(expr.operand)
        return None if value is None else -value
    if isinstance(expr, ast.Call):
        args = [_constant_value(arg) for arg in expr.args]
        function = FUNCTIONS.get(expr.func.id)
        if function is None or len(args) != function.arity or None in args:
            return None
        return _finite(expr, function.evaluate, args)
    first, links = ast.chain(expr)
    value = _constant_value(first)
    for link in links:
        right = _constant_value(link.right)
        if link.op == "/" and right == 0:
            raise _NoValueError(link, "divides by zero")
        if link.op == "^" and right is not None and abs(right) > MAX_EXPONENT:
            raise _NoValueError(link, f"has an exponent beyond {MAX_EXPONENT:g}")
        if value is not None and right is not None:
            value = _finite(link, _ARITHMETIC[link.op], [value, right])
        else:
            value = None
    return value


def _finite(node: ast.Expr, function, args: list[float]) -> float:
    try:
        value = function(*args)
    except (ArithmeticError, ValueError):
        raise _NoValueError(node) from None
    if isinstance(value, complex) or not math.isfinite(value):
        raise _NoValueError(node)
    return value


def _keyword(stmt: ast.Statement) -> str:
    return {
        ast.ModelDecl: "model",
        ast.ActionsDecl: "actions",
        ast.LogitsDecl: "logits",
        ast.EmbeddingDecl: "embedding",
        ast.FitDecl: "fit",
        ast.ParticipantsDecl: "participants",
        ast.OfferedDecl: "offered",
    }[type(stmt)]
