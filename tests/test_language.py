"""Unit tests of the front end: parse (text -> AST), check (AST -> diagnostics) and
lower (AST -> IR), plus the promise that ``spicedsl check`` needs neither torch nor sympy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sympy

from spicedsl import ir
from spicedsl.errors import Diagnostic, ModelError, did_you_mean
from spicedsl.frontend import checked_program, load_ir, read_source
from spicedsl.printer import format_expr, format_number, format_program
from spicedsl.semantics.check import check, declarations
from spicedsl.semantics.lower import lower, to_sympy
from spicedsl.source import Source, Span
from spicedsl.syntax.ast import (
    ActionsDecl,
    BinOp,
    Call,
    Column,
    Comparison,
    ControlDecl,
    EmbeddingDecl,
    Equation,
    FitDecl,
    FitOption,
    Learn,
    LogitsDecl,
    ModelDecl,
    ModuleDecl,
    Name,
    Neg,
    Number,
    OfferedDecl,
    ParamDecl,
    Program,
    StateDecl,
    TrialFilter,
    names_in,
)
from spicedsl.syntax.parser import parse

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.spice"))

# A small valid model; tests append or replace statements to probe one rule at a time.
BASE = """\
model m
state x = 0.5
control c = data.reward
param b > 0
logits = b * x
"""


def only(text: str):
    """The single statement of ``text``."""
    (statement,) = parse(text).statements
    return statement


def expr(text: str):
    """The expression of ``logits = text``."""
    return only(f"logits = {text}").expr


def messages(text: str) -> list[str]:
    """The checker's messages for a model text that parses."""
    return [d.message for d in check(parse(text), Source("m.spice", text))]


def errors_of(text: str) -> list[Diagnostic]:
    """Every diagnostic, syntax or semantic, that ``text`` produces."""
    with pytest.raises(ModelError) as caught:
        checked_program(Source("m.spice", text))
    return caught.value.diagnostics


# --- parsing: every construct -----------------------------------------------------------


@pytest.mark.parametrize(
    "text, statement",
    [
        ("model rw", ModelDecl(Name("rw"))),
        (
            'model rw "Rescorla-Wagner, tutorial 1"',
            ModelDecl(Name("rw"), "Rescorla-Wagner, tutorial 1"),
        ),
        ("actions 3", ActionsDecl(3)),
        ("actions from data", ActionsDecl(None)),
        ("state x = 0.5", StateDecl(Name("x"), Number(0.5))),
        ("state x = -1e-3", StateDecl(Name("x"), Number(-0.001))),
        ("state x = .5", StateDecl(Name("x"), Number(0.5))),
        ("control c = data.reward", ControlDecl(Name("c"), Column(Name("reward")))),
        ("control c = x", ControlDecl(Name("c"), Name("x"))),
        (
            "control c = data.gain / 2 before choice",
            ControlDecl(Name("c"), BinOp("/", Column(Name("gain")), Number(2.0)), True),
        ),
        ("offered data.a, data.b", OfferedDecl((Column(Name("a")), Column(Name("b"))))),
        ("param b", ParamDecl(Name("b"))),
        ("param b > 0", ParamDecl(Name("b"), lower=Number(0.0))),
        ("param b < -2", ParamDecl(Name("b"), upper=Number(-2.0))),
        ("param b in (0, 1)", ParamDecl(Name("b"), lower=Number(0.0), upper=Number(1.0))),
        ("param b = 3", ParamDecl(Name("b"), value=Number(3.0), fixed=True)),
        ("param b init 3", ParamDecl(Name("b"), value=Number(3.0), fixed=False)),
        (
            "param b in (-1, 1) per participant init 0.1",
            ParamDecl(
                Name("b"), Number(-1.0), Number(1.0), per_participant=True, value=Number(0.1)
            ),
        ),
        ("logits = b * x", LogitsDecl(BinOp("*", Name("b"), Name("x")))),
        ("embedding size 8", EmbeddingDecl(8)),
        (
            "embedding size 4 dropout 0.1 for m1, b",
            EmbeddingDecl(4, Number(0.1), (Name("m1"), Name("b"))),
        ),
        ("embedding size 4 for b", EmbeddingDecl(4, None, (Name("b"),))),
        (
            "fit epochs 100 learning_rate 1e-3 degree 2",
            FitDecl(
                (
                    FitOption(Name("epochs"), Number(100.0)),
                    FitOption(Name("learning_rate"), Number(0.001)),
                    FitOption(Name("degree"), Number(2.0)),
                )
            ),
        ),
        ("fit dropout -0.5", FitDecl((FitOption(Name("dropout"), Number(-0.5)),))),
    ],
)
def test_statement_parses_to_ast(text: str, statement) -> None:
    assert only(text) == statement


def module(filter_text: str, body_text: str = "learn()") -> ModuleDecl:
    return only(f"module m1 updates x {filter_text}\n    {body_text}")


@pytest.mark.parametrize(
    "filter_text, trial_filter",
    [
        ("when chosen", TrialFilter("chosen")),
        ("when not chosen", TrialFilter("not_chosen")),
        ("when all", TrialFilter("all")),
        ("", TrialFilter("all")),
        (
            "when c >= 0.5",
            TrialFilter("condition", Comparison(Name("c"), ">=", Number(0.5))),
        ),
        (
            "when 2 * c != c2 - 1",
            TrialFilter(
                "condition",
                Comparison(
                    BinOp("*", Number(2.0), Name("c")),
                    "!=",
                    BinOp("-", Name("c2"), Number(1.0)),
                ),
            ),
        ),
    ],
)
def test_trial_filters(filter_text: str, trial_filter: TrialFilter) -> None:
    assert module(filter_text).filter == trial_filter


@pytest.mark.parametrize(
    "filter_text, trial_filter",
    [
        (
            "when chosen and c_reward > 0.5",
            TrialFilter("chosen", Comparison(Name("c_reward"), ">", Number(0.5))),
        ),
        (
            "when not chosen and c_x <= 0.5",
            TrialFilter("not_chosen", Comparison(Name("c_x"), "<=", Number(0.5))),
        ),
    ],
)
def test_a_filter_and_a_condition_combine(filter_text: str, trial_filter: TrialFilter) -> None:
    statement = module(filter_text)
    assert statement.filter == trial_filter
    text = format_program(Program((statement,)))
    assert text.splitlines()[0] == f"module m1 updates x {filter_text}"
    chosen_part, condition = filter_text.removeprefix("when ").split(" and ")
    assert module(f"when {condition} and {chosen_part}").filter == trial_filter


@pytest.mark.parametrize("op", ["<", "<=", ">", ">=", "==", "!="])
def test_every_comparison(op: str) -> None:
    assert module(f"when c {op} 1").filter.condition.op == op


@pytest.mark.parametrize(
    "body_text, body",
    [
        ("learn()", Learn(())),
        ("learn(c, x2)", Learn((Name("c"), Name("x2")))),
        (
            "learn(c) activation sigmoid degree 2 threshold 0.1",
            Learn((Name("c"),), Name("sigmoid"), 2, Number(0.1)),
        ),
        ("learn() threshold 1e-2 activation tanh", Learn((), Name("tanh"), None, Number(0.01))),
        ("m1 = x + 1", Equation(Name("m1"), BinOp("+", Name("x"), Number(1.0)))),
    ],
)
def test_module_bodies(body_text: str, body) -> None:
    parsed = module("when chosen", body_text)
    assert parsed == ModuleDecl(Name("m1"), Name("x"), TrialFilter("chosen"), body)


def test_module_on_one_line_or_many() -> None:
    one_line = module("when chosen", "learn(c)")
    spread = only("module m1\n  updates x\n  when chosen\n  learn(\n    c\n  )")
    assert one_line == spread


@pytest.mark.parametrize(
    "text, tree",
    [
        ("1 + 2 * 3", BinOp("+", Number(1.0), BinOp("*", Number(2.0), Number(3.0)))),
        ("(1 + 2) * 3", BinOp("*", BinOp("+", Number(1.0), Number(2.0)), Number(3.0))),
        ("a - b - c", BinOp("-", BinOp("-", Name("a"), Name("b")), Name("c"))),
        ("a / b * c", BinOp("*", BinOp("/", Name("a"), Name("b")), Name("c"))),
        ("a ^ b ^ c", BinOp("^", Name("a"), BinOp("^", Name("b"), Name("c")))),
        ("-a ^ 2", Neg(BinOp("^", Name("a"), Number(2.0)))),
        ("a ^ -b", BinOp("^", Name("a"), Neg(Name("b")))),
        ("- - a", Neg(Neg(Name("a")))),
        ("-a * b", BinOp("*", Neg(Name("a")), Name("b"))),
        ("2 * -a", BinOp("*", Number(2.0), Neg(Name("a")))),
        ("1e-3 + 5E+2 + 0.", BinOp("+", BinOp("+", Number(0.001), Number(500.0)), Number(0.0))),
        ("exp(x)", Call(Name("exp"), (Name("x"),))),
        ("f()", Call(Name("f"), ())),
        ("clip(x, 0, 1)", Call(Name("clip"), (Name("x"), Number(0.0), Number(1.0)))),
        ("max(a + b, -c)", Call(Name("max"), (BinOp("+", Name("a"), Name("b")), Neg(Name("c"))))),
    ],
)
def test_expressions(text: str, tree) -> None:
    assert expr(text) == tree


def test_non_statement_keywords_work_as_names() -> None:
    program = parse("state size = 1\nparam per > 0\nlogits = per * size + data + learn")
    assert [s.name.id for s in program.statements[:2]] == ["size", "per"]
    assert [n.id for n in names_in(program.statements[2].expr)] == ["per", "size", "data", "learn"]


def test_comments_are_collected_with_their_spans() -> None:
    text = "# head\nmodel m  # tail\n"
    program = parse(text)
    assert [(c.text, text[c.span.start : c.span.end]) for c in program.comments] == [
        ("# head", "# head"),
        ("# tail", "# tail"),
    ]
    assert program.statements == (ModelDecl(Name("m")),)


# --- spans ------------------------------------------------------------------------------


def test_spans_take_no_part_in_equality() -> None:
    tight = parse("model m\nstate x=0.5\nlogits=2*(x)")
    loose = parse("# a comment\nmodel   m\n\nstate x = 0.5\nlogits =\n    2 * x\n")
    assert tight == loose
    assert tight.statements[1].span != loose.statements[1].span
    assert Name("x", span=Span(0, 1)) == Name("x", span=Span(5, 6))


def test_spans_point_into_the_whole_file() -> None:
    text = BASE + "module m1 updates x when chosen\n    m1 = x + c_rate\n"
    program = parse(text)
    equation = program.statements[-1].body
    plus = equation.expr
    assert text[plus.span.start : plus.span.end] == "x + c_rate"
    assert text[plus.right.span.start : plus.right.span.end] == "c_rate"
    state = program.statements[1]
    assert text[state.span.start : state.span.end] == "state x = 0.5"


# --- syntax errors ----------------------------------------------------------------------


def test_every_syntax_error_is_reported() -> None:
    text = "model m\nstate x 1\nstate y = \nlogits = (x\n"
    found = [(d.message, d.span.start) for d in errors_of(text)]
    assert [message.split(";")[0] for message, _ in found] == [
        "unexpected '1'",
        "unexpected end of statement",
        "unexpected end of statement",
    ]


@pytest.mark.parametrize(
    "text, hint",
    [
        ("modle m", "did you mean 'model'?"),
        ("model m\nparm b > 0", "did you mean 'param'?"),
        ("model m\nmodule m1 updats x learn()", "did you mean 'updates'?"),
        ("model m\nmodule m1 updates x when chosen learn() degre 2", "did you mean 'degree'?"),
        ("model m\nactions frm data", "did you mean 'from'?"),
        ("model m\nzebra", None),
    ],
)
def test_misspelled_keywords_get_a_hint(text: str, hint: str | None) -> None:
    (diagnostic,) = errors_of(text)
    assert diagnostic.hint == hint


def test_statement_keywords_are_reserved() -> None:
    found = errors_of("model m\nstate model = 0\nlogits = 2 * fit")
    assert [d.message for d in found] == [
        "'model' is a keyword and cannot be used as a name",
        "'fit' is a keyword and cannot be used as a name",
    ]


def test_learn_option_given_twice() -> None:
    (found,) = errors_of("model m\nmodule a updates x learn() activation tanh activation tanh")
    assert found.message == "the option 'activation' is given twice"


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1e400"])
def test_non_finite_numbers(number: str) -> None:
    (found,) = errors_of(f"model m\nstate x = {number}\nlogits = x")
    assert "too large (not finite)" in found.message


# --- the checker ------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_have_no_errors(path: Path) -> None:
    source = read_source(path)
    assert check(parse(source.text), source) == []


@pytest.mark.parametrize(
    "first, second",
    [
        ("when chosen", "when not chosen"),
        ("when c > 0.5", "when c <= 0.5"),
        ("when c > 0.5", "when 0.5 > c"),
        ("when c < 0", "when c > 1"),
        ("when c == 1", "when c == 2"),
        ("when c == 1", "when c != 1"),
        ("when c < x0", "when c >= x0"),
        ("when chosen and c > 0.5", "when chosen and c <= 0.5"),
        ("when chosen and c > 0.5", "when not chosen"),
        ("when chosen and c > 0.5", "when not chosen and c > 0.5"),
        ("when not chosen and c == 1", "when not chosen and c == 2"),
        ("when c > 0.5", "when chosen and c <= 0.5"),
        ("when not chosen and c < 0", "when c > 1"),
    ],
)
def test_disjoint_filters_are_accepted(first: str, second: str) -> None:
    text = BASE + f"control x0 = x\nmodule u1 updates x {first}\n  learn()\n"
    text += f"module u2 updates x {second}\n  learn()\n"
    assert messages(text) == []


@pytest.mark.parametrize(
    "first, second",
    [
        ("when all", "when chosen"),
        ("", "when not chosen"),
        ("when chosen", "when chosen"),
        ("when c >= 0.5", "when c <= 0.5"),
        ("when c != 1", "when c != 2"),
        ("when c > 0", "when c > 1"),
        ("when c > 0.5", "when chosen"),
        ("when c < x0", "when c > x0"),
        ("when chosen and c > 0.5", "when chosen"),
        ("when not chosen", "when not chosen and c > 0.5"),
        ("when chosen and c > 0", "when chosen and c > 1"),
        ("when chosen and c > 0.5", "when c > 0.6"),
        ("when chosen and c > 0.5", "when all"),
    ],
)
def test_overlapping_filters_are_reported(first: str, second: str) -> None:
    text = BASE + f"control x0 = x\nmodule u1 updates x {first}\n  learn()\n"
    text += f"module u2 updates x {second}\n  learn()\n"
    assert messages(text) == ["modules 'u1' (line 7) and 'u2' both update 'x' on the same trials"]


def test_diagnostics_come_in_source_order() -> None:
    text = "state x = 0\nlogits = b * y\nparam b in (1, 0)\nactions 1\n"
    assert messages(text) == [
        "the file declares no model; start it with 'model NAME'",
        "unknown name 'y'",
        "the bounds of 'b' leave no value",
        "a task needs at least 2 actions",
    ]


@pytest.mark.parametrize(
    "expression, problem",
    [
        ("log(0)", "'log(0)' has no finite real value"),
        ("x / (2 - 2)", "'x / (2 - 2)' divides by zero"),
        ("(0 - 8) ^ (1 / 3)", "'(0 - 8) ^ (1 / 3)' has no finite real value"),
        ("x * 10 ^ 400", "'10 ^ 400' has no finite real value"),
        ("exp(1000)", "'exp(1000)' has no finite real value"),
        ("min(x, sqrt(0 - 1))", "'sqrt(0 - 1)' has no finite real value"),
    ],
)
def test_constants_without_a_value(expression: str, problem: str) -> None:
    assert messages(BASE.replace("b * x", expression)) == [problem]


@pytest.mark.parametrize(
    "expression",
    ["x / 2", "sigmoid(-1000) * x", "exp(x) ^ 0.5", "2 ^ 10 * x", "clip(x, 0, 1)", "x ^ -1"],
)
def test_constants_with_a_value(expression: str) -> None:
    assert messages(BASE.replace("b * x", expression)) == []


def test_declarations_keep_the_first_of_duplicates() -> None:
    program = parse(BASE + "state x = 1\nparam b2 = 2\n")
    decls = declarations(program)
    assert decls.states["x"].initial == Number(0.5)
    assert list(decls.params) == ["b", "b2"]
    assert decls.kind_of("c") == "control" and decls.kind_of("nope") is None


@pytest.mark.parametrize(
    "word, candidates, hint",
    [
        ("stat", ["state", "static_value"], "did you mean 'state'?"),
        ("x_value_rewrad", ["x_value_reward", "x_value_choice"], "did you mean 'x_value_reward'?"),
        ("beta", ["beta_value"], None),
        ("ab", ["ba"], "did you mean 'ba'?"),
        ("q", ["x"], None),
        ("anything", [], None),
    ],
)
def test_did_you_mean(word: str, candidates: list[str], hint: str | None) -> None:
    assert did_you_mean(word, candidates) == hint


# --- rendering ----------------------------------------------------------------------------


def test_excerpt_of_a_line_with_tabs_and_crlf() -> None:
    text = "model m\r\nlogits =\tb @ x\r\n"
    (found,) = errors_of(text)
    rendered = found.render(Source("m.spice", text))
    assert rendered.splitlines() == [
        "m.spice:2:12: error: unexpected character '@'",
        "    logits = b @ x",
        "               ^",
    ]
    assert "\r" not in rendered


def test_error_at_the_end_of_a_file_without_newline() -> None:
    text = "model m\nlogits = b *"
    (found,) = errors_of(text)
    assert found.render(Source("m.spice", text)).splitlines()[0] == (
        "m.spice:2:13: error: unexpected end of statement; "
        "expected a name, a number, '(', '-' or '['"
    )


# --- lowering ---------------------------------------------------------------------------


def test_ir_of_learning_rate_example() -> None:
    model = load_ir(ROOT / "examples" / "learning_rate.spice")
    assert model.name == "learning_rate" and model.n_actions is None
    assert [(s.name, s.initial) for s in model.states] == [
        ("x_value_reward", 0.5),
        ("x_learning_rate_reward", 0.0),
    ]
    assert [(c.name, c.column, c.state) for c in model.controls] == [
        ("c_reward", "reward", None),
        ("c_value_reward", None, "x_value_reward"),
    ]
    learned, not_chosen, chosen = model.modules
    assert isinstance(learned, ir.LearnedModule) and isinstance(not_chosen, ir.LearnedModule)
    assert (learned.name, learned.target, learned.filter.kind) == (
        "x_learning_rate_reward",
        "x_learning_rate_reward",
        "chosen",
    )
    assert learned.inputs == ("c_reward", "c_value_reward")
    assert learned.activation == "sigmoid" and not_chosen.activation is None
    assert (not_chosen.target, not_chosen.filter.kind, not_chosen.inputs) == (
        "x_value_reward",
        "not_chosen",
        (),
    )
    assert isinstance(chosen, ir.EquationModule)
    assert chosen.filter == ir.TrialFilter("chosen")
    v, lr, r = (ir.symbol(n) for n in ("x_value_reward", "x_learning_rate_reward", "c_reward"))
    assert sympy.simplify(chosen.expr - (v + lr * (r - v))) == 0
    assert [m.line for m in model.modules] == [17, 20, 24]
    (beta,) = model.params
    assert (beta.name, beta.lower, beta.upper, beta.fixed) == ("beta_value", 0.0, None, False)
    assert model.logits == ir.symbol("beta_value") * v
    assert model.learned_modules == (learned, not_chosen)


def test_fit_statement_and_module_options_reach_the_ir() -> None:
    text = BASE + (
        "module u updates x when chosen\n  learn(c) degree 3 threshold 0.2\n"
        "module v updates x when not chosen\n  learn()\n"
        "embedding size 3 dropout 0.25 for v, b\n"
        "fit degree 2 epochs 50\n"
    )
    model = lower(checked_program(Source("m.spice", text)), Source("m.spice", text))
    u, v = model.modules
    assert (u.degree, u.threshold, u.embedded) == (3, 0.2, False)
    assert (v.degree, v.threshold, v.embedded) == (2, model.fit.threshold, True)
    assert (model.fit.epochs, type(model.fit.epochs)) == (50, int)
    assert model.embedding == ir.Embedding(3, 0.25)
    assert model.params[0].embedded


def test_fit_settings_given_at_fit_time_override_the_fit_statement_not_the_module() -> None:
    text = BASE + (
        "module u updates x when chosen\n  learn(c) degree 3\n"
        "module v updates x when not chosen\n  learn()\n"
        "fit degree 2 threshold 0.1\n"
    )
    source = Source("m.spice", text)
    model = lower(checked_program(source), source, {"degree": 1, "threshold": 0.2})
    u, v = model.modules
    assert (u.degree, u.threshold) == (3, 0.2)
    assert (v.degree, v.threshold) == (1, 0.2)
    assert (model.fit.degree, model.fit.threshold) == (1, 0.2)


def test_condition_filter_lowers_to_a_relation() -> None:
    text = BASE + "module u updates x when c >= 0.5\n  learn()\n"
    model = lower(checked_program(Source("m.spice", text)), Source("m.spice", text))
    (u,) = model.modules
    assert u.filter == ir.TrialFilter("condition", sympy.GreaterThan(ir.symbol("c"), 0.5))


def test_a_chosen_filter_with_a_condition_lowers_to_both() -> None:
    text = BASE + "module u updates x when not chosen and c < 0.5\n  learn()\n"
    model = lower(checked_program(Source("m.spice", text)), Source("m.spice", text))
    (u,) = model.modules
    assert u.filter == ir.TrialFilter("not_chosen", sympy.StrictLessThan(ir.symbol("c"), 0.5))


TRICKY_NAMES = ["beta", "gamma", "E", "I", "lambda", "pi", "S", "N", "Q", "O", "zeta", "oo"]


def test_names_that_mean_something_to_sympy_are_plain_symbols() -> None:
    states = "".join(f"state {n} = 0\n" for n in TRICKY_NAMES)
    total = " + ".join(f"{n} * {n}" for n in TRICKY_NAMES)
    text = f"model m\n{states}logits = {total}\n"
    model = lower(checked_program(Source("m.spice", text)), Source("m.spice", text))
    symbols = model.logits.free_symbols
    assert {s.name for s in symbols} == set(TRICKY_NAMES)
    assert all(isinstance(s, sympy.Symbol) for s in symbols)
    assert model.logits == sum(ir.symbol(n) ** 2 for n in TRICKY_NAMES)
    assert not model.logits.has(sympy.E, sympy.I, sympy.pi, sympy.oo)


def test_to_sympy_builds_nodes_without_parsing_text() -> None:
    tree = BinOp("^", Name("E"), BinOp("*", Name("I"), Name("pi")))
    assert to_sympy(tree) == ir.symbol("E") ** (ir.symbol("I") * ir.symbol("pi"))
    assert to_sympy(Number(2.0)) == sympy.Integer(2)
    assert to_sympy(Number(0.25)) == sympy.Float(0.25)


def test_constant_clip_inside_max_lowers() -> None:
    text = BASE.replace("b * x", "b * max(x, clip(2, 0, 1))")
    model = lower(checked_program(Source("m.spice", text)), Source("m.spice", text))
    assert model.logits == ir.symbol("b") * sympy.Max(ir.symbol("x"), 1)


def test_conditions_stay_comparisons_after_lowering() -> None:
    text = BASE + "module m updates x when c + 1 > c\n    m = 1\n"
    model = lower(checked_program(Source("m.spice", text)), Source("m.spice", text))
    assert isinstance(model.modules[0].filter.condition, sympy.core.relational.Relational)


def test_printer_numbers_and_parentheses() -> None:
    assert [format_number(v) for v in (3.0, -0.5, 1e20, 1.5e-7)] == [
        "3",
        "-0.5",
        "1e+20",
        "1.5e-07",
    ]
    tree = BinOp("*", BinOp("+", Name("a"), Name("b")), Neg(BinOp("^", Name("c"), Number(2.0))))
    assert format_expr(tree) == "(a + b) * -c ^ 2"
    assert expr(format_expr(tree)) == tree


# --- no heavy imports on the check path ----------------------------------------------------

PROBE = """
import sys
from spicedsl.cli import main
code = main(["check", "examples/learning_rate.spice"])
heavy = sorted(m for m in ("torch", "sympy", "numpy", "jinja2") if m in sys.modules)
print(code, heavy)
"""


def test_check_imports_neither_torch_nor_sympy() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.splitlines()[-1] == "0 []", result.stderr
