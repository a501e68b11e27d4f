"""Round trips through the printer: parse(print(ast)) == ast, ``fmt`` is idempotent and
keeps every comment, and the examples are already in canonical form.

hypothesis builds the trees: random expressions, random programs (any statements, as
the grammar allows them), and random valid models (which must also pass the checker and
lower to IR).
"""

from __future__ import annotations

import operator
import re
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from spicedsl.errors import ModelError
from spicedsl.frontend import checked_program
from spicedsl.printer import format_expr, format_program, polynomial
from spicedsl.semantics.check import check
from spicedsl.semantics.functions import ACTIVATIONS, FUNCTIONS
from spicedsl.semantics.lower import lower
from spicedsl.settings import OPTIONS
from spicedsl.source import Source
from spicedsl.syntax import ast
from spicedsl.syntax.parser import grammar_text, parse

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.spice"))
KEYWORDS = set(re.findall(r'"([a-z]+)"', grammar_text()))
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies ---------------------------------------------------------------------------

FIRST = string.ascii_letters + "_"
name_ids = st.builds(
    operator.add, st.sampled_from(FIRST), st.text(FIRST + string.digits, max_size=7)
).filter(lambda s: s not in KEYWORDS)
names = name_ids.map(ast.Name)
OUTCOME_COLUMNS = ("choice", "reward", "rewards")
unsigned = st.floats(min_value=0, max_value=1e300, allow_nan=False, allow_infinity=False)
signed = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_infinity=False)
unsigned_numbers = st.one_of(st.integers(0, 1000).map(float), unsigned).map(ast.Number)
signed_numbers = st.one_of(st.integers(-1000, 1000).map(float), signed).map(ast.Number)
whole = st.integers(0, 10**6)
OPERATORS = ["+", "-", "*", "/", "^"]
COMPARISONS = ["<", "<=", ">", ">=", "==", "!="]


def expressions(leaves: st.SearchStrategy[ast.Expr]) -> st.SearchStrategy[ast.Expr]:
    """Any tree the parser could produce over ``leaves``."""

    def extend(inner):
        return st.one_of(
            st.builds(ast.BinOp, st.sampled_from(OPERATORS), inner, inner),
            st.builds(ast.Neg, inner),
            st.builds(ast.Call, names, st.lists(inner, max_size=3).map(tuple)),
        )

    return st.recursive(leaves, extend, max_leaves=12)


vectors = st.lists(signed_numbers, min_size=2, max_size=4).map(lambda v: ast.Vector(tuple(v)))
any_expressions = expressions(st.one_of(names, unsigned_numbers, vectors))
columns = names.map(ast.Column)
control_expressions = expressions(st.one_of(names, columns, unsigned_numbers))
comparisons = st.builds(
    ast.Comparison, any_expressions, st.sampled_from(COMPARISONS), any_expressions
)
filters = st.one_of(
    st.sampled_from(["chosen", "not_chosen", "not_offered", "all"]).map(ast.TrialFilter),
    comparisons.map(lambda c: ast.TrialFilter("condition", c)),
    st.builds(ast.TrialFilter, st.sampled_from(["chosen", "not_chosen"]), comparisons),
)
learn_bodies = st.builds(
    ast.Learn,
    st.lists(names, max_size=4).map(tuple),
    st.none() | names,
    st.none() | whole,
    st.none() | unsigned_numbers,
)
bodies = learn_bodies | st.builds(ast.Equation, names, any_expressions)


@st.composite
def params(draw) -> ast.ParamDecl:
    value = draw(st.none() | signed_numbers)
    return ast.ParamDecl(
        draw(names),
        draw(st.none() | signed_numbers),
        draw(st.none() | signed_numbers),
        draw(st.booleans()),
        value,
        fixed=value is not None and draw(st.booleans()),
    )


descriptions = st.none() | st.text(
    st.characters(blacklist_characters='"\n', blacklist_categories=("Cs",)), max_size=20
)
statements = st.one_of(
    st.builds(ast.ModelDecl, names, descriptions),
    st.builds(ast.ActionsDecl, st.none() | whole),
    st.builds(ast.StateDecl, names, signed_numbers),
    st.builds(ast.ControlDecl, names, control_expressions, st.booleans()),
    st.builds(ast.OfferedDecl, st.lists(columns, min_size=1, max_size=3).map(tuple)),
    st.builds(ast.ModuleDecl, names, names, filters, bodies),
    params(),
    st.builds(ast.LogitsDecl, any_expressions),
    st.builds(
        ast.EmbeddingDecl,
        whole,
        st.none() | unsigned_numbers,
        st.lists(names, max_size=3).map(tuple),
    ),
    st.builds(
        ast.FitDecl,
        st.lists(st.builds(ast.FitOption, names, signed_numbers), min_size=1).map(tuple),
    ),
)
programs = st.lists(statements, max_size=8).map(lambda s: ast.Program(tuple(s)))


def _slot_expressions() -> st.SearchStrategy[ast.Expr]:
    """Valid expressions whose names are slots ``_0`` ... ``_7``, filled in by
    :func:`fill_slots`: one strategy serves every model, so hypothesis builds it once."""
    leaves = st.one_of(
        st.integers(0, 7).map(lambda i: ast.Name(f"_{i}")),
        st.integers(0, 10).map(float).map(ast.Number),
        st.floats(0, 10).map(ast.Number),
    )

    def extend(inner):
        # sympy cannot lower a constant clip(...) inside min or max (see test_language).
        first = {"clip": inner.filter(ast.names_in)}
        calls = [
            st.tuples(first.get(f.name, inner), *[inner] * (f.arity - 1)).map(
                lambda args, f=f: ast.Call(ast.Name(f.name), args)
            )
            for f in FUNCTIONS.values()
        ]
        # A leaf exponent keeps powers such as (2 * x) ^ (9 ^ 9) out of sympy's way.
        return st.one_of(
            st.builds(ast.BinOp, st.sampled_from(["+", "-", "*", "/"]), inner, inner),
            st.builds(ast.BinOp, st.just("^"), inner, leaves),
            st.builds(ast.Neg, inner),
            *calls,
        )

    return st.recursive(leaves, extend, max_leaves=8)


slot_expressions = _slot_expressions()


def fill_slots(expr: ast.Expr, names: list[str]) -> ast.Expr:
    """``expr`` with each slot ``_i`` replaced by ``names[i % len(names)]``."""
    if isinstance(expr, ast.Name):
        return ast.Name(names[int(expr.id[1:]) % len(names)])
    if isinstance(expr, ast.Neg):
        return ast.Neg(fill_slots(expr.operand, names))
    if isinstance(expr, ast.BinOp):
        return ast.BinOp(expr.op, fill_slots(expr.left, names), fill_slots(expr.right, names))
    if isinstance(expr, ast.Call):
        return ast.Call(expr.func, tuple(fill_slots(a, names) for a in expr.args))
    return expr


@st.composite
def fit_options(draw) -> list[ast.FitOption]:
    chosen = draw(st.lists(st.sampled_from(sorted(OPTIONS)), unique=True, max_size=4))
    options = []
    for name in chosen:
        spec = OPTIONS[name]
        high = spec.maximum if spec.maximum is not None else spec.minimum + 1000
        if spec.integer:
            values = st.integers(int(spec.minimum), int(high)).map(float)
        else:
            values = st.floats(spec.minimum, high, exclude_min=not spec.minimum_inclusive)
        # Valid values only: beyond its range, an option may have a rule of its own.
        value = draw(values.filter(lambda v, spec=spec: spec.problem(v) is None))
        options.append(ast.FitOption(ast.Name(name), ast.Number(value)))
    return options


FILTER_SCHEMES = [
    [],
    ["all"],
    ["chosen"],
    ["not_chosen"],
    ["chosen", "not_chosen"],
    ["not_chosen", "chosen"],
    ["condition"],
    ["chosen_condition"],
]


@st.composite
def valid_models(draw) -> ast.Program:
    """A model that the checker accepts: every name declared once and used rightly,
    filters that never overlap, modules that read no state updated after them."""
    pool = draw(st.lists(name_ids, min_size=16, max_size=16, unique=True))
    n_states, n_controls, n_params = draw(st.integers(1, 3)), draw(st.integers(0, 2)), 2
    states, pool = pool[:n_states], pool[n_states:]
    controls, pool = pool[:n_controls], pool[n_controls:]
    param_names, module_names = pool[:n_params], pool[n_params:]

    out: list[ast.Statement] = [ast.ModelDecl(ast.Name(draw(name_ids)), draw(descriptions))]
    if draw(st.booleans()):
        out.append(ast.ActionsDecl(draw(st.none() | st.integers(2, 10))))
    out += [ast.StateDecl(ast.Name(s), draw(signed_numbers)) for s in states]
    seen_before_choice: list[str] = []
    for c in controls:
        if draw(st.booleans()):
            column = ast.Column(draw(names.filter(lambda n: n.id not in OUTCOME_COLUMNS)))
            expr = draw(st.sampled_from([column, ast.BinOp("/", column, ast.Number(2.0))]))
            if draw(st.booleans()):
                seen_before_choice.append(c)
            out.append(ast.ControlDecl(ast.Name(c), expr, c in seen_before_choice))
        else:
            out.append(ast.ControlDecl(ast.Name(c), ast.Name(draw(st.sampled_from(states)))))

    planned: list[tuple[str, ast.TrialFilter]] = []
    for target in states:
        scheme = draw(st.sampled_from(FILTER_SCHEMES if controls else FILTER_SCHEMES[:-2]))
        if scheme in (["condition"], ["chosen_condition"]):
            control = ast.Name(draw(st.sampled_from(controls)))
            cut = ast.Number(draw(st.floats(0, 1)))
            op, complement = draw(st.sampled_from([("<", ">="), (">", "<="), ("==", "!=")]))
            kind = "condition" if scheme == ["condition"] else "chosen"
            planned += [
                (target, ast.TrialFilter(kind, ast.Comparison(control, op, cut))),
                (target, ast.TrialFilter(kind, ast.Comparison(control, complement, cut))),
            ]
            if kind == "chosen":
                planned.append((target, ast.TrialFilter("not_chosen")))
        else:
            planned += [(target, ast.TrialFilter(kind)) for kind in scheme]
    planned = draw(st.permutations(planned))

    learnable: list[str] = []
    for index, (target, trial_filter) in enumerate(planned):
        name = module_names[index]
        updated_later = {t for t, _ in planned[index + 1 :]} - {target}
        earlier_states = [s for s in states if s not in updated_later]
        if draw(st.booleans()):
            candidates = [n for n in earlier_states if n != target] + controls
            inputs = draw(
                st.lists(st.sampled_from(candidates), unique=True) if candidates else st.just([])
            )
            body: ast.Learn | ast.Equation = ast.Learn(
                tuple(map(ast.Name, inputs)),
                draw(st.none() | st.sampled_from(sorted(ACTIVATIONS)).map(ast.Name)),
                draw(st.none() | st.integers(1, 3)),
                draw(st.none() | st.floats(0, 1).map(ast.Number)),
            )
            learnable.append(name)
        else:
            readable = earlier_states + controls + param_names
            body = ast.Equation(ast.Name(name), fill_slots(draw(slot_expressions), readable))
        out.append(ast.ModuleDecl(ast.Name(name), ast.Name(target), trial_filter, body))

    for p in param_names:
        low, high = sorted(
            draw(st.lists(st.integers(-10, 10), min_size=2, max_size=2, unique=True))
        )
        lower, upper = draw(st.sampled_from([(low, high), (low, None), (None, high), (None, None)]))
        if lower is not None and upper is not None:
            middle = (low + high) / 2
        else:
            middle = low + 1 if lower is not None else high - 1
        value = draw(st.none() | st.just(ast.Number(float(middle))))
        out.append(
            ast.ParamDecl(
                ast.Name(p),
                None if lower is None else ast.Number(float(lower)),
                None if upper is None else ast.Number(float(upper)),
                draw(st.booleans()),
                value,
                fixed=value is not None and draw(st.booleans()),
            )
        )
    readable = states + seen_before_choice + param_names
    out.append(ast.LogitsDecl(fill_slots(draw(slot_expressions), readable)))
    if draw(st.booleans()):
        targets = draw(st.lists(st.sampled_from(learnable + param_names), unique=True))
        dropout = draw(st.none() | st.floats(0, 0.99).map(ast.Number))
        out.append(
            ast.EmbeddingDecl(draw(st.integers(1, 64)), dropout, tuple(map(ast.Name, targets)))
        )
    options = draw(fit_options())
    if options:
        out.append(ast.FitDecl(tuple(options)))
    if draw(st.booleans()):
        # Declarations may come in any order; modules keep theirs, which is their run order.
        shuffled = iter(draw(st.permutations([s for s in out if not _is_module(s)])))
        modules = iter([s for s in out if _is_module(s)])
        order = draw(st.permutations([_is_module(s) for s in out]))
        out = [next(modules) if is_module else next(shuffled) for is_module in order]
    return ast.Program(tuple(out))


def _is_module(statement: ast.Statement) -> bool:
    return isinstance(statement, ast.ModuleDecl)


# --- properties ---------------------------------------------------------------------------


@SETTINGS
@given(any_expressions)
def test_expression_round_trip(tree: ast.Expr) -> None:
    text = format_expr(tree)
    assert parse(f"logits = {text}").statements == (ast.LogitsDecl(tree),)


@SETTINGS
@given(programs)
def test_program_round_trip(program: ast.Program) -> None:
    text = format_program(program)
    assert parse(text) == program
    assert format_program(parse(text), text) == text


@SETTINGS
@given(valid_models())
def test_valid_models_check_lower_and_round_trip(program: ast.Program) -> None:
    text = format_program(program)
    source = Source("generated.spice", text)
    parsed = parse(text)
    assert parsed == program
    problems = [d.message for d in check(parsed, source)]
    # A random constant part may have no value (log(0), 0 / 0), or a constant clip range
    # may be empty: the checker rightly says so.
    rightly = ("finite real value", "divides by zero", "is above its high end")
    assume(not any(reason in p for p in problems for reason in rightly))
    assert problems == [], text
    model = lower(parsed, source)
    assert [m.name for m in model.modules] == [
        s.name.id for s in program.statements if isinstance(s, ast.ModuleDecl)
    ]


COMMENT_TEXT = st.text(
    st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=12
).map(lambda t: ("# " + t).rstrip())


@st.composite
def commented_texts(draw) -> str:
    """A canonical model text with comments added at line ends and on lines of their own."""
    lines = format_program(draw(valid_models())).split("\n")[:-1]
    commented = []
    for line in lines:
        if draw(st.integers(0, 4)) == 0:
            commented.append(" " * draw(st.integers(0, 4)) + draw(COMMENT_TEXT))
        if line and draw(st.integers(0, 3)) == 0:
            line += " " * draw(st.integers(0, 3)) + draw(COMMENT_TEXT)
        if draw(st.integers(0, 6)) == 0:
            commented.append("")
        commented.append(line)
    if draw(st.booleans()):
        commented.append(draw(COMMENT_TEXT))
    return "\n".join(commented) + "\n"


def comment_texts(text: str) -> list[str]:
    return sorted(c.text for c in parse(text).comments)


@SETTINGS
@given(commented_texts())
def test_fmt_is_idempotent_and_keeps_comments(text: str) -> None:
    once = format_program(parse(text), text)
    twice = format_program(parse(once), once)
    assert twice == once
    assert parse(once) == parse(text)
    assert comment_texts(once) == comment_texts(text)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_canonical(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert format_program(parse(text), text) == text


@pytest.mark.parametrize(
    "text, formatted",
    [
        (
            "logits = x +  # one\n    x +  # two\n    x  # three\nparam b\n",
            "logits = x + x + x  # one\n# two\n# three\nparam b\n",
        ),
        (
            "model m\nmodule u updates x when chosen  # head\n    # in\n\n    learn()  # body\n",
            "model m\nmodule u updates x when chosen  # head\n    # in\n    learn()  # body\n",
        ),
        (
            "model m\r\n\r\n\r\nstate x=0  # crlf \r\n",
            "model m\n\nstate x = 0  # crlf\n",
        ),
        ("# only a comment\n\n\n# and another", "# only a comment\n\n# and another\n"),
    ],
    ids=["comments on every line", "comment inside a module", "crlf", "comments only"],
)
def test_comment_layout(text: str, formatted: str) -> None:
    assert format_program(parse(text), text) == formatted
    assert format_program(parse(formatted), formatted) == formatted


def test_comments_of_a_dropped_statement_stay() -> None:
    text = "embedding size 2  # one\nmodel m\nlogits = x\nembedding size 3  # two\n"
    program = parse(text)
    kept = ast.Program(program.statements[1:3], program.comments)
    assert format_program(kept, text) == "# one\nmodel m\nlogits = x  # two\n"


def test_fitted_polynomial_prints_back_to_the_same_tree() -> None:
    tree = polynomial([(-0.5, {"x": 2}), (1.0, {"x": 1, "c": 1}), (0.25, {})])
    assert format_expr(tree) == "-0.5 * x ^ 2 + x * c + 0.25"
    assert parse(f"logits = {format_expr(tree)}").statements[0].expr == tree


def test_printer_refuses_a_tree_it_cannot_print_back() -> None:
    negative_literal = ast.Program(
        (ast.LogitsDecl(ast.BinOp("^", ast.Number(-2.0), ast.Name("x"))),)
    )
    with pytest.raises(AssertionError, match="printer changed the model"):
        format_program(negative_literal)


def test_checked_program_of_a_formatted_example_is_unchanged() -> None:
    for path in EXAMPLES:
        text = path.read_text(encoding="utf-8")
        program = checked_program(Source(str(path), text))
        again = format_program(program, text)
        try:
            assert checked_program(Source(str(path), again)) == program
        except ModelError as error:  # pragma: no cover - shows the message on failure
            pytest.fail(error.render())
