"""AST -> canonical ``.spice`` text, used by ``spicedsl fmt`` and to write fitted models.

The printer checks itself: it parses what it printed and fails loudly if the result
differs from the tree it was given.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from spicedsl.syntax import ast
from spicedsl.syntax.parser import parse

INDENT = "    "
_BLANK_LINE = re.compile(r"\n[ \t\r]*\n")

# Binding strength of each expression form; higher binds tighter.
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "neg": 3, "^": 4, "atom": 5}


def format_number(value: float) -> str:
    """The shortest text that parses back to ``value``.

    >>> format_number(2.0), format_number(0.5), format_number(1e-5), format_number(-3.0)
    ('2', '0.5', '1e-05', '-3')
    """
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def format_expr(expr: ast.Expr) -> str:
    """An expression with the fewest parentheses that keep its tree.

    >>> from spicedsl.syntax.ast import BinOp, Name, Neg
    >>> format_expr(BinOp("-", Name("a"), BinOp("-", Name("b"), Name("c"))))
    'a - (b - c)'
    >>> format_expr(BinOp("^", Neg(Name("x")), Name("y")))
    '(-x) ^ y'
    """
    return _expr(expr)


def _strength(expr: ast.Expr) -> int:
    if isinstance(expr, ast.BinOp):
        return _PRECEDENCE[expr.op]
    if isinstance(expr, ast.Neg) or (isinstance(expr, ast.Number) and expr.value < 0):
        return _PRECEDENCE["neg"]
    return _PRECEDENCE["atom"]


def _wrap(expr: ast.Expr, needed: bool) -> str:
    text = _expr(expr)
    return f"({text})" if needed else text


def _expr(expr: ast.Expr) -> str:
    if isinstance(expr, ast.Number):
        return format_number(expr.value)
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Column):
        return f"data.{expr.name.id}"
    if isinstance(expr, ast.Vector):
        return "[" + ", ".join(format_number(v.value) for v in expr.values) + "]"
    if isinstance(expr, ast.Call):
        return f"{expr.func.id}({', '.join(_expr(a) for a in expr.args)})"
    if isinstance(expr, ast.Neg):
        return "-" + _wrap(expr.operand, _strength(expr.operand) < _PRECEDENCE["neg"])
    if expr.op == "^":
        left = _wrap(expr.left, _strength(expr.left) < _PRECEDENCE["atom"])
        right = _wrap(expr.right, _strength(expr.right) < _PRECEDENCE["neg"])
        return f"{left} ^ {right}"
    strength = _PRECEDENCE[expr.op]
    first, links = ast.chain(expr)
    parts = [_wrap(first, _strength(first) < strength)]
    for link in links:
        parts += [link.op, _wrap(link.right, _strength(link.right) <= strength)]
    return " ".join(parts)


def format_statement(stmt: ast.Statement) -> list[str]:
    """The canonical lines of one statement."""
    if isinstance(stmt, ast.ModelDecl):
        description = f' "{stmt.description}"' if stmt.description is not None else ""
        return [f"model {stmt.name.id}{description}"]
    if isinstance(stmt, ast.ActionsDecl):
        return [f"actions {stmt.count if stmt.count is not None else 'from data'}"]
    if isinstance(stmt, ast.StateDecl):
        return [f"state {stmt.name.id} = {format_number(stmt.initial.value)}"]
    if isinstance(stmt, ast.ControlDecl):
        seen = " before choice" if stmt.before_choice else ""
        return [f"control {stmt.name.id} = {_expr(stmt.expr)}{seen}"]
    if isinstance(stmt, ast.OfferedDecl):
        return ["offered " + ", ".join(_expr(column) for column in stmt.columns)]
    if isinstance(stmt, ast.ModuleDecl):
        header = f"module {stmt.name.id} updates {stmt.target.id} {_filter(stmt.filter)}"
        return [header, INDENT + _body(stmt.body)]
    if isinstance(stmt, ast.ParamDecl):
        return [_param(stmt)]
    if isinstance(stmt, ast.LogitsDecl):
        return [f"logits = {_expr(stmt.expr)}"]
    if isinstance(stmt, ast.EmbeddingDecl):
        text = f"embedding size {stmt.size}"
        if stmt.dropout is not None:
            text += f" dropout {format_number(stmt.dropout.value)}"
        if stmt.targets:
            text += " for " + ", ".join(n.id for n in stmt.targets)
        return [text]
    if isinstance(stmt, ast.ParticipantsDecl):
        return [f'participants from "{stmt.path}"']
    options = " ".join(f"{o.name.id} {format_number(o.value.value)}" for o in stmt.options)
    return [f"fit {options}"]


def _filter(trial_filter: ast.TrialFilter) -> str:
    c = trial_filter.condition
    condition = f"{_expr(c.left)} {c.op} {_expr(c.right)}" if c is not None else None
    if trial_filter.kind == "condition":
        return f"when {condition}"
    text = "when " + trial_filter.kind.replace("_", " ")
    return text if condition is None else f"{text} and {condition}"


def _body(body: ast.Learn | ast.Equation) -> str:
    if isinstance(body, ast.Equation):
        return f"{body.name.id} = {_expr(body.expr)}"
    text = f"learn({', '.join(n.id for n in body.inputs)})"
    if body.activation is not None:
        text += f" activation {body.activation.id}"
    if body.degree is not None:
        text += f" degree {body.degree}"
    if body.threshold is not None:
        text += f" threshold {format_number(body.threshold.value)}"
    return text


def _param(param: ast.ParamDecl) -> str:
    text = f"param {param.name.id}"
    low, high = param.lower, param.upper
    if low is not None and high is not None:
        text += f" in ({format_number(low.value)}, {format_number(high.value)})"
    elif low is not None:
        text += f" > {format_number(low.value)}"
    elif high is not None:
        text += f" < {format_number(high.value)}"
    if param.per_participant:
        text += " per participant"
    if param.value is not None:
        text += (" = " if param.fixed else " init ") + format_number(param.value.value)
    return text


def format_program(program: ast.Program, text: str = "") -> str:
    """The canonical text of ``program``, keeping its comments and blank lines.

    ``text`` is the source the program was parsed from: it tells where comments stood
    and where blank lines separated statements. Without it, comments are not printed.

    >>> src = "model m  # tutorial\\nstate x=0.5\\n\\n\\nlogits = 3*x"
    >>> print(format_program(parse(src), src))
    model m  # tutorial
    state x = 0.5
    <BLANKLINE>
    logits = 3 * x
    <BLANKLINE>
    """
    out = _layout(program, text)
    reparsed = parse(out, "<printer output>")
    kept = sorted(c.text for c in reparsed.comments)
    lost_comments = text and kept != sorted(c.text for c in program.comments)
    if reparsed.statements != program.statements or lost_comments:
        raise AssertionError("spicedsl's printer changed the model; please report this bug")
    return out


def _layout(program: ast.Program, text: str) -> str:
    statements = program.statements
    # Own-line comments go before the statement that follows them, except those inside a
    # module after its header line: they stay between its header and its body.
    leading: dict[int, list[ast.Comment]] = {i: [] for i in range(len(statements) + 1)}
    inner: dict[int, list[ast.Comment]] = {i: [] for i in range(len(statements))}
    # End-of-line comments stay on the statement's first or last printed line; when
    # several end the lines of one printed line, the others follow it on lines of their own.
    trailing: dict[tuple[int, int], list[ast.Comment]] = {}
    for comment in program.comments if text else ():
        line_start = text.rfind("\n", 0, comment.span.start) + 1
        # Statements without text of their own (added to a fitted model) end no line.
        before = [
            i
            for i, s in enumerate(statements)
            if s.span.start < s.span.end and s.span.start <= comment.span.start
        ]
        # A comment after code whose statement is gone (a fitted model drops its
        # embedding) stays where it was, like a comment on a line of its own.
        if not text[line_start : comment.span.start].strip() or not before:
            index = next(
                (i for i, s in enumerate(statements) if s.span.end > comment.span.start),
                len(statements),
            )
            inside_module = index < len(statements) and (
                isinstance(statements[index], ast.ModuleDecl)
                and statements[index].span.start < comment.span.start
            )
            (inner if inside_module else leading)[index].append(comment)
            continue
        index = before[-1]
        first_line_end = text.find("\n", statements[index].span.start)
        on_first = first_line_end < 0 or comment.span.start < first_line_end
        trailing.setdefault((index, 0 if on_first else -1), []).append(comment)

    lines: list[str] = []
    previous_end: int | None = None

    def emit(start: int, end: int, new_lines: Sequence[str]) -> None:
        nonlocal previous_end
        if previous_end is not None and _BLANK_LINE.search(text, previous_end, start):
            lines.append("")
        lines.extend(new_lines)
        previous_end = end

    for i in range(len(statements) + 1):
        for comment in leading[i]:
            emit(comment.span.start, comment.span.end, [comment.text])
        if i == len(statements):
            break
        stmt_lines = format_statement(statements[i])
        ends: list[list[ast.Comment]] = [[] for _ in stmt_lines]
        for position in (0, -1):
            ends[position] += trailing.get((i, position), [])
        printed: list[str] = []
        for number, (line, comments) in enumerate(zip(stmt_lines, ends, strict=True)):
            printed.append(f"{line}  {comments[0].text}" if comments else line)
            printed.extend(comment.text for comment in comments[1:])
            if number == 0:
                printed.extend(INDENT + comment.text for comment in inner[i])
        emit(statements[i].span.start, statements[i].span.end, printed)
    return "\n".join(lines) + "\n"


def polynomial(terms: Sequence[tuple[float | str, dict[str, int]]]) -> ast.Expr:
    """An expression for ``sum(weight * prod(name ^ power))``, terms in the given order.

    A weight is a number or the name of a param. Negative numbers become subtractions;
    a weight of 1 is left out.

    >>> format_expr(polynomial([(0.1, {}), (0.8, {"v": 1}), (-0.25, {"v": 1, "r": 2})]))
    '0.1 + 0.8 * v - 0.25 * v * r ^ 2'
    >>> format_expr(polynomial([(-1.0, {"v": 2}), ("c1", {"v": 1}), (-0.5, {})]))
    '-v ^ 2 + c1 * v - 0.5'
    """
    result: ast.Expr | None = None
    for weight, powers in terms:
        negative = not isinstance(weight, str) and weight < 0
        factors: list[ast.Expr] = []
        if isinstance(weight, str):
            factors.append(ast.Name(weight))
        elif abs(weight) != 1 or not powers:
            factors.append(ast.Number(abs(weight)))
        for name, power in powers.items():
            factor: ast.Expr = ast.Name(name)
            if power != 1:
                factor = ast.BinOp("^", factor, ast.Number(float(power)))
            factors.append(factor)
        if result is None and negative:
            factors[0] = ast.Neg(factors[0])
        term = factors[0]
        for factor in factors[1:]:
            term = ast.BinOp("*", term, factor)
        result = term if result is None else ast.BinOp("-" if negative else "+", result, term)
    return result if result is not None else ast.Number(0.0)
