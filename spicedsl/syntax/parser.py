"""Text -> :class:`~spicedsl.syntax.ast.Program`, with every syntax error reported.

The grammar lives in ``grammars/spice.lark``. Each statement starts with a keyword at
the start of a line, so the file is cut into statements there and each piece is parsed
on its own: a syntax error in one statement does not hide the errors in the others.
"""

from __future__ import annotations

import difflib
import math
import re
from functools import lru_cache

import lark
from lark import Token, Transformer, v_args

from spicedsl.errors import Diagnostic, ModelError
from spicedsl.resources import data_dir
from spicedsl.source import Source, Span
from spicedsl.syntax import ast

STATEMENT_KEYWORDS = (
    "model",
    "actions",
    "state",
    "control",
    "module",
    "param",
    "logits",
    "embedding",
    "fit",
)
_STATEMENT_START = re.compile(r"^[ \t]*(?:%s)\b" % "|".join(STATEMENT_KEYWORDS), re.MULTILINE)

# How the parser's terminals read in an error message.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "INT": "a whole number",
    "STRING": 'a "quoted description"',
    "COMPARE": "a comparison (<, <=, >, >=, ==, !=)",
    "$END": "the end of the file",
}


def grammar_text() -> str:
    """The text of ``grammars/spice.lark``."""
    return (data_dir("grammars") / "spice.lark").read_text("utf-8")


class _Comments(list):
    """Collects the comments the lexer skips, for the formatter."""


_collected = _Comments()


@lru_cache(maxsize=1)
def _lark() -> lark.Lark:
    return lark.Lark(
        grammar_text(),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=False,
        lexer_callbacks={"COMMENT": _collected.append},
    )


def parse(text: str, name: str = "<model>") -> ast.Program:
    """Parse model text; raise :class:`ModelError` with every syntax error found.

    >>> prog = parse("model m\\nstate x = 0.5  # a value\\n")
    >>> prog.statements[1]
    StateDecl(name=Name(id='x'), initial=Number(value=0.5))
    >>> [c.text for c in prog.comments]
    ['# a value']
    """
    source = Source(name, text)
    statements: list[ast.Statement] = []
    comments: list[ast.Comment] = []
    diagnostics: list[Diagnostic] = []
    for start, end in _statement_chunks(text):
        _collected.clear()
        try:
            tree = _lark().parse(text[start:end])
        except lark.exceptions.UnexpectedInput as error:
            diagnostics.append(_syntax_diagnostic(error, text, start, end))
            continue
        finally:
            comments.extend(
                ast.Comment(str(tok), span=Span(start + tok.start_pos, start + tok.end_pos))
                for tok in _collected
            )
        try:
            statements.extend(_ToAst(start).transform(tree).children)
        except lark.exceptions.VisitError as error:
            if not isinstance(error.orig_exc, _NumberError):
                raise
            diagnostics.append(error.orig_exc.diagnostic)
    if diagnostics:
        raise ModelError(source, diagnostics)
    return ast.Program(tuple(statements), tuple(comments))


def _statement_chunks(text: str) -> list[tuple[int, int]]:
    starts = [m.start() for m in _STATEMENT_START.finditer(text)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    return list(zip(starts, starts[1:] + [len(text)]))


def _syntax_diagnostic(
    error: lark.exceptions.UnexpectedInput, text: str, start: int, end: int
) -> Diagnostic:
    if isinstance(error, lark.exceptions.UnexpectedCharacters):
        pos = start + error.pos_in_stream
        return Diagnostic(f"unexpected character {text[pos]!r}", Span(pos, pos + 1))
    token = error.token
    expected = _describe_expected(error.interactive_parser.accepts() or error.expected)
    if token.type == "$END":
        pos = start + len(text[start:end].rstrip())
        return Diagnostic(f"unexpected end of statement; expected {expected}", Span(pos, pos))
    pos = start + token.start_pos
    found = "end of file" if token.type == "$END" else repr(str(token))
    hint = None
    if token.type == "NAME" and str(token) not in STATEMENT_KEYWORDS:
        close = _close_keyword(str(token))
        if close:
            hint = f"did you mean '{close}'?"
    return Diagnostic(
        f"unexpected {found}; expected {expected}", Span(pos, pos + len(str(token))), hint
    )


def _close_keyword(word: str) -> str | None:
    keywords = list(STATEMENT_KEYWORDS) + ["updates", "when", "learn", "chosen", "data"]
    match = difflib.get_close_matches(word, keywords, n=1, cutoff=0.75)
    return match[0] if match else None


def _describe_expected(terminals: set[str]) -> str:
    words = set()
    keywords = {name.upper() for name in STATEMENT_KEYWORDS}
    if keywords <= terminals:
        words.add("a statement (" + ", ".join(STATEMENT_KEYWORDS) + ")")
        terminals = terminals - keywords
    for name in terminals:
        if name in _TERMINAL_WORDS:
            words.add(_TERMINAL_WORDS[name])
            continue
        pattern = _lark().get_terminal(name).pattern
        words.add(f"'{pattern.value}'")
    ordered = sorted(words, key=lambda w: (not w.startswith("a"), w))
    if len(ordered) == 1:
        return ordered[0]
    return ", ".join(ordered[:-1]) + " or " + ordered[-1]


class _NumberError(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        self.diagnostic = diagnostic


@v_args(meta=True)
class _ToAst(Transformer):
    """Parse tree -> AST nodes, with spans shifted to offsets in the whole file."""

    def __init__(self, offset: int) -> None:
        super().__init__()
        self.offset = offset

    def _span(self, meta) -> Span:
        return Span(self.offset + meta.start_pos, self.offset + meta.end_pos)

    def _tok(self, token: Token) -> Span:
        return Span(self.offset + token.start_pos, self.offset + token.end_pos)

    def _name(self, token: Token) -> ast.Name:
        return ast.Name(str(token), span=self._tok(token))

    def _number(self, token: Token, negative: bool = False) -> ast.Number:
        value = float(token)
        span = self._tok(token)
        if not math.isfinite(value):
            raise _NumberError(Diagnostic(f"number {token} is too large (not finite)", span))
        return ast.Number(-value if negative else value, span=span)

    # -- statements
    def model_decl(self, meta, children):
        description = str(children[1])[1:-1] if len(children) > 1 else None
        return ast.ModelDecl(self._name(children[0]), description, span=self._span(meta))

    def actions_fixed(self, meta, children):
        return ast.ActionsDecl(int(children[0]), span=self._span(meta))

    def actions_from_data(self, meta, children):
        return ast.ActionsDecl(None, span=self._span(meta))

    def state_decl(self, meta, children):
        return ast.StateDecl(self._name(children[0]), children[1], span=self._span(meta))

    def control_decl(self, meta, children):
        kind, token = children[1]
        return ast.ControlDecl(
            self._name(children[0]), **{kind: self._name(token)}, span=self._span(meta)
        )

    def data_source(self, meta, children):
        return ("column", children[0])

    def state_source(self, meta, children):
        return ("state", children[0])

    def module_decl(self, meta, children):
        name, target, *rest = children
        body = rest[-1]
        trial_filter = rest[0] if len(rest) == 2 else ast.TrialFilter("all")
        return ast.ModuleDecl(
            self._name(name), self._name(target), trial_filter, body, span=self._span(meta)
        )

    def when_chosen(self, meta, children):
        return ast.TrialFilter("chosen", span=self._span(meta))

    def when_not_chosen(self, meta, children):
        return ast.TrialFilter("not_chosen", span=self._span(meta))

    def when_all(self, meta, children):
        return ast.TrialFilter("all", span=self._span(meta))

    def when_condition(self, meta, children):
        left, op, right = children
        span = self._span(meta)
        comparison = ast.Comparison(left, str(op), right, span=Span(left.span.start, span.end))
        return ast.TrialFilter("condition", comparison, span=span)

    def learn(self, meta, children):
        inputs: tuple[ast.Name, ...] = ()
        options: dict[str, object] = {}
        for child in children:
            if isinstance(child, tuple) and child and child[0] == "option":
                options[child[1]] = child[2]
            else:
                inputs = child
        return ast.Learn(inputs, **options, span=self._span(meta))

    def activation_option(self, meta, children):
        return ("option", "activation", self._name(children[0]))

    def degree_option(self, meta, children):
        return ("option", "degree", int(children[0]))

    def threshold_option(self, meta, children):
        return ("option", "threshold", children[0])

    def equation(self, meta, children):
        return ast.Equation(self._name(children[0]), children[1], span=self._span(meta))

    def param_decl(self, meta, children):
        fields: dict[str, object] = {}
        for child in children[1:]:
            fields.update(child)
        return ast.ParamDecl(self._name(children[0]), **fields, span=self._span(meta))

    def lower_bound(self, meta, children):
        return {"lower": children[0]}

    def upper_bound(self, meta, children):
        return {"upper": children[0]}

    def interval_bound(self, meta, children):
        return {"lower": children[0], "upper": children[1]}

    def per_participant(self, meta, children):
        return {"per_participant": True}

    def fixed_value(self, meta, children):
        return {"value": children[0], "fixed": True}

    def initial_value(self, meta, children):
        return {"value": children[0], "fixed": False}

    def logits_decl(self, meta, children):
        return ast.LogitsDecl(children[0], span=self._span(meta))

    def embedding_decl(self, meta, children):
        size, *rest = children
        dropout = next((c for c in rest if isinstance(c, ast.Number)), None)
        targets = next((c for c in rest if isinstance(c, tuple)), ())
        return ast.EmbeddingDecl(int(size), dropout, targets, span=self._span(meta))

    def fit_decl(self, meta, children):
        return ast.FitDecl(tuple(children), span=self._span(meta))

    def fit_option(self, meta, children):
        return ast.FitOption(self._name(children[0]), children[1], span=self._span(meta))

    def name_list(self, meta, children):
        return tuple(self._name(token) for token in children)

    # -- numbers
    def positive(self, meta, children):
        return self._number(children[0])

    def negative(self, meta, children):
        number = self._number(children[0])
        return ast.Number(-number.value, span=self._span(meta))

    def number(self, meta, children):
        return self._number(children[0])

    # -- expressions
    def name(self, meta, children):
        return self._name(children[0])

    def call(self, meta, children):
        func, *args = children
        return ast.Call(self._name(func), tuple(args), span=self._span(meta))

    def neg(self, meta, children):
        return ast.Neg(children[0], span=self._span(meta))

    def _binop(op):  # noqa: N805 - a helper that builds methods
        def build(self, meta, children):
            return ast.BinOp(op, children[0], children[1], span=self._span(meta))

        return build

    add = _binop("+")
    sub = _binop("-")
    mul = _binop("*")
    div = _binop("/")
    pow = _binop("^")
