"""Fuzzing the front end: whatever the text, parsing, checking, lowering and formatting
raise nothing but :class:`spicedsl.errors.SpiceError`.

Two sources of input: sentences of the grammar (``hypothesis.extra.lark``), which reach
the checker, and mutations of the example files (bytes deleted, inserted or replaced,
tokens swapped in, lines swapped or repeated, files cut short), which probe error
recovery. The default run covers 10,000 inputs in well under a minute; the ``slow``
variant covers ten times as many.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import lark
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark

from spicedsl.errors import ModelError, SpiceError
from spicedsl.frontend import checked_program
from spicedsl.printer import format_program
from spicedsl.semantics.check import check
from spicedsl.semantics.lower import lower
from spicedsl.source import Source
from spicedsl.syntax.parser import MAX_NESTING, STATEMENT_KEYWORDS, grammar_text, parse

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "examples").glob("*.spice"))]


def run_front_end(text: str) -> None:
    """Everything a command does with model text; only SpiceError may escape.

    Text that parses must also format (``format_program`` itself makes sure that the
    tree and the comments stay the same). Every diagnostic must render, with its span
    inside the text. This is :func:`spicedsl.frontend.checked_program` step by step, so
    that the text is parsed once.
    """
    source = Source("fuzz.spice", text)
    try:
        program = parse(text, source.name)
    except SpiceError as error:
        check_rendering(error, text)
        return
    format_program(program, text)
    diagnostics = check(program, source)
    if diagnostics:
        check_rendering(ModelError(source, diagnostics), text)
    else:
        lower(program, source)


def check_rendering(error: SpiceError, text: str) -> None:
    assert error.render()
    for diagnostic in getattr(error, "diagnostics", []):
        if diagnostic.span is not None:
            assert 0 <= diagnostic.span.start <= diagnostic.span.end <= len(text)


# --- grammar-driven -----------------------------------------------------------------------

# Names the examples declare, so that some generated models get past the name checks.
KNOWN_NAMES = ["x_value_reward", "c_reward", "beta", "reward", "alpha", "m", "x"]
FUNCTION_NAMES = ["exp", "log", "sqrt", "abs", "tanh", "sigmoid", "min", "max", "clip", "f"]
OTHER_NAMES = ["relu", "epochs", "degree", "learning_rate", "data", "size", "model"]
# Numbers stay small: sympy computes (2 * x) ^ N exactly, which takes forever for huge N.
NUMBERS = ["0", "1", "2", "3", "0.5", ".5", "2.", "1e-3", "1E+2", "1e999", "-0", "1000000"]


def token_texts() -> dict[str, st.SearchStrategy[str]]:
    """A text strategy for every terminal, spaced so that tokens do not run together;
    statement keywords start a line, where they cut the file into statements."""
    special = {
        "NAME": st.sampled_from(KNOWN_NAMES + FUNCTION_NAMES + OTHER_NAMES)
        | st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,5}\Z"),
        "NUMBER": st.sampled_from(NUMBERS),
        "INT": st.sampled_from(["0", "1", "2", "3", "8", "07"]),
        "STRING": st.from_regex(r'\A"[^"\n]{0,8}"\Z'),
        "COMPARE": st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
        "COMMENT": st.from_regex(r"\A#[^\n]{0,10}\Z"),
    }
    texts = {}
    for terminal in lark.Lark(grammar_text(), parser="lalr").terminals:
        pattern = terminal.pattern
        if terminal.name in special:
            end = "\n" if terminal.name == "COMMENT" else " "
            texts[terminal.name] = special[terminal.name].map(lambda text, end=end: text + end)
        elif pattern.type == "re":  # the whitespace that the grammar ignores
            texts[terminal.name] = st.sampled_from(["\n", "\t", "\r\n", "\n\n"])
        elif pattern.value in STATEMENT_KEYWORDS:
            texts[terminal.name] = st.just(f"\n{pattern.value} ")
        else:
            texts[terminal.name] = st.just(pattern.value + " ")
    return texts


grammar_sentences = from_lark(
    lark.Lark(grammar_text(), parser="lalr"), start="start", explicit=token_texts()
)
GRAMMAR_SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), database=None)


@settings(max_examples=1000, **GRAMMAR_SETTINGS)
@given(grammar_sentences)
def test_grammar_sentences(text: str) -> None:
    run_front_end(text)


@pytest.mark.slow
@settings(max_examples=20_000, **GRAMMAR_SETTINGS)
@given(grammar_sentences)
def test_grammar_sentences_slow(text: str) -> None:
    run_front_end(text)


# --- mutations of the examples --------------------------------------------------------------

TOKENS = sorted(
    {token for text in EXAMPLES for token in re.findall(r"\w+|[^\w\s]", text)}
    | set(STATEMENT_KEYWORDS)
    | set(re.findall(r'"(\w+)"', grammar_text()))
    | {"(", ")", ",", ".", "=", "<", ">", "<=", ">=", "==", "!="}
    | set(NUMBERS + FUNCTION_NAMES + ["^", "-", "#", '"', "\t", "\r\n", "\n", "\n\n", "β"])
)
NOISE = b' \t\n\r#"()=<>!.,+-*/^_0123456789eEaz\x00\xff\xc3\xa9'


def mutate(text: str, rng: random.Random) -> str:
    """``text`` with one to five random edits, at the level of bytes, tokens or lines."""
    data = bytearray(text.encode("utf-8"))
    for _ in range(rng.randint(1, 5)):
        at = rng.randrange(len(data) + 1)
        kind = rng.randrange(8)
        if kind == 0:
            del data[at : at + rng.randint(1, 8)]
        elif kind == 1:
            data[at:at] = bytes(rng.choice(NOISE) for _ in range(rng.randint(1, 4)))
        elif kind == 2 and at < len(data):
            data[at] = rng.choice(NOISE)
        elif kind == 3:
            data[at:at] = f" {rng.choice(TOKENS)} ".encode()
        elif kind == 4:
            lines = data.split(b"\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
        elif kind == 5:
            lines = data.split(b"\n")
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(lines))
            data = bytearray(b"\n".join(lines))
        elif kind == 6:
            del data[at:]
        else:
            words = re.split(rb"(\w+)", bytes(data))
            word = rng.randrange(len(words))
            words[word] = rng.choice(TOKENS).encode()
            data = bytearray(b"".join(words))
    # A model file that is not UTF-8 stops at reading it; the front end sees text.
    return data.decode("utf-8", errors="replace")


def run_mutations(count: int, seed: int) -> None:
    rng = random.Random(seed)
    for case in range(count):
        text = mutate(rng.choice(EXAMPLES), rng)
        try:
            run_front_end(text)
        except Exception as error:
            raise AssertionError(f"case {case} of seed {seed} fails on {text!r}") from error


def test_mutated_examples() -> None:
    run_mutations(9000, seed=2)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10))
def test_mutated_examples_slow(seed: int) -> None:
    run_mutations(10_000, seed=1000 + seed)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        "#",
        "model",
        "model m\nmodule",
        "model m\r\nlogits = x\r",
        "model m\n\x00",
        "state x = 0 state y = 1",
        "module model updates x\n    model = 1\n",
        'model m "unterminated',
        "model m\nlogits = (((((((((((((((((((((((((((((((x",
        "model m\nlogits = " + "-" * 500 + "1",
        "model m\nlogits = " + " + ".join(["x"] * 2000),
    ],
    ids=lambda text: repr(text[:20]),
)
def test_edge_cases(text: str) -> None:
    run_front_end(text)


DEEP = MAX_NESTING - 5


@pytest.mark.parametrize(
    "expression",
    [
        "-" * DEEP + "x",
        " + ".join(["x"] * DEEP),
        " ^ ".join(["x"] * DEEP),
        "(" * DEEP + "x" + " * 2)" * DEEP,
        "max(x, " * DEEP + "x" + ")" * DEEP,
        " ^ ".join(["1"] * DEEP),
    ],
    ids=["negations", "sum", "powers", "parentheses", "calls", "constant powers"],
)
def test_deepest_expressions_allowed(expression: str) -> None:
    text = f"model m\nstate x = 0\nlogits = {expression}\n"
    run_front_end(text)
    checked_program(Source("deep.spice", text))


CHAIN = 2000


@pytest.mark.parametrize(
    "expression",
    [
        " + ".join(["x"] * CHAIN),
        " - ".join(f"{i % 7} * x / {i + 1}" for i in range(CHAIN)),
        "(" * DEEP + " + ".join(["x"] * CHAIN) + ")" * DEEP,
    ],
    ids=["sum", "sum of products", "inside parentheses"],
)
def test_flat_chains_are_not_nesting(expression: str, tmp_path: Path) -> None:
    """However long, a chain of + and - (or * and /) is one level, in every command."""
    model = tmp_path / "flat.spice"
    chain = " + ".join(["c"] * CHAIN)
    model.write_text(
        f"model m\nstate x = 0\ncontrol c = data.cue\n"
        f"module up updates x when {chain} > 0\n    up = x + 1\n"
        f"module down updates x when {chain} <= 0\n    down = x - 1\n"
        f"logits = {expression}\n"
    )
    for command in ("check", "compile", "fmt"):
        result = subprocess.run(
            [sys.executable, "-m", "spicedsl.cli", command, str(model)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert (result.returncode, result.stderr) == (0, ""), command
    formatted = tmp_path / "formatted.spice"
    formatted.write_text(result.stdout)
    assert parse(formatted.read_text()) == parse(model.read_text())


@pytest.mark.parametrize(
    "opener",
    ["(", "- ", "x ^ ", "-(", "exp("],
    ids=["parentheses", "minus", "power", "both", "calls"],
)
def test_deep_nests_are_refused_before_parsing(opener: str) -> None:
    """A deep nest is refused at the token that goes too deep, by a scan that takes no
    time even for a file of 1 MB."""
    start = len("model m\nlogits = ")
    text = "model m\nlogits = " + opener * 200_000 + "x"
    with pytest.raises(ModelError) as caught:
        parse(text)
    (diagnostic,) = caught.value.diagnostics
    assert (
        diagnostic.message
        == f"this statement nests expressions more than {MAX_NESTING} levels deep"
    )
    too_deep = start + len(opener) * MAX_NESTING
    assert too_deep <= diagnostic.span.start < too_deep + len(opener)
