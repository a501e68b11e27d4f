"""Text -> :class:`~spicedsl.syntax.ast.Program`, with every syntax error reported.

The grammar lives in ``grammars/spice.lark``. Each statement starts with a keyword at
the start of a line, so the file is cut into statements there and each piece is parsed
on its own: a syntax error in one statement does not hide the errors in the others.
The statement keywords are therefore reserved; the other keywords (``when``, ``data``,
``size``, ...) may still be names wherever the grammar expects a name.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import NamedTuple

import lark
from lark import Token, v_args
from lark.lark import PostLex

from spicedsl.errors import Diagnostic, ModelError, did_you_mean
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
    "participants",
    "offered",
)
# A statement keyword at the start of a line starts a statement, unless '=' follows it:
# such a line can only be an equation line (and 'logits =' is the choice rule).
_STATEMENT_START = re.compile(
    r"^[ \t]*(?:logits\b|(?:{})\b(?![ \t]*=))".format(
        "|".join(k for k in STATEMENT_KEYWORDS if k != "logits")
    ),
    re.MULTILINE,
)

# Deeper expressions are refused: the compiler walks trees recursively, and Python's
# stack holds about a thousand frames. Parentheses, calls, unary minus and powers nest;
# a chain of + and - (or of * and /) is one level however long, as the compiler walks
# it in a loop.
MAX_NESTING = 200
# Left-associative operators of one precedence, which chain without nesting.
_CHAINS = ({"add", "sub"}, {"mul", "div"})
# The tokens that :func:`_too_deep` tells apart (comments and descriptions are skipped).
_TOKEN = re.compile(r'#[^\n]*|"[^"\n]*"|[A-Za-z0-9_.]+|[<>=!]=?|[-+*/^(),]')
_OPERAND = re.compile(r"[A-Za-z0-9_.)\]]")
_ENDS_LEVELS = {"+", "-", "*", "/", ","}

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


class _Lexed:
    """What the lexer sees besides the tokens it hands on, for one statement at a time:
    the comments (kept for the formatter) and statement keywords written as names."""

    def __init__(self) -> None:
        self.comments: list[Token] = []
        self.keyword_names: list[Token] = []

    def clear(self) -> None:
        self.comments.clear()
        self.keyword_names.clear()

    def name(self, token: Token) -> Token:
        if token in STATEMENT_KEYWORDS:
            self.keyword_names.append(token)
        return token


class _WholeWords(PostLex):
    """Lets the lexer read a NAME in every parser state, so that a word where a keyword
    should stand is reported whole ('inn', not the 'n' after a keyword 'in')."""

    always_accept = ("NAME",)

    def process(self, stream):
        return stream


_lexed = _Lexed()


@lru_cache(maxsize=1)
def _lark() -> lark.Lark:
    return lark.Lark(
        grammar_text(),
        parser="lalr",
        postlex=_WholeWords(),
        propagate_positions=True,
        maybe_placeholders=False,
        lexer_callbacks={"COMMENT": _lexed.comments.append, "NAME": _lexed.name},
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
        too_deep = _too_deep(text, start, end)
        if too_deep is not None:
            diagnostics.append(too_deep)
            continue
        _lexed.clear()
        tree, syntax_error = None, None
        try:
            tree = _lark().parse(text[start:end])
        except lark.exceptions.UnexpectedInput as error:
            syntax_error = _syntax_diagnostic(error, text, start, end)
        comments.extend(
            ast.Comment(tok.rstrip(), span=Span(start + tok.start_pos, start + tok.end_pos))
            for tok in _lexed.comments
        )
        if _lexed.keyword_names:
            # A keyword used as a name also derails the parse; its own message says more.
            diagnostics.extend(_keyword_name(tok, start) for tok in _lexed.keyword_names)
        elif syntax_error is not None:
            diagnostics.append(syntax_error)
        if tree is not None:
            statements.extend(_build(tree, start, diagnostics))
    if diagnostics:
        raise ModelError(source, diagnostics)
    return ast.Program(tuple(statements), tuple(comments))


def _build(tree: lark.Tree, offset: int, diagnostics: list[Diagnostic]) -> list[ast.Statement]:
    """The AST of each statement in a parse tree; problems are added to ``diagnostics``."""
    built = []
    for statement in tree.children:
        if _nesting(statement) > MAX_NESTING:
            span = Span(offset + statement.meta.start_pos, offset + statement.meta.end_pos)
            message = f"this statement nests expressions more than {MAX_NESTING} levels deep"
            diagnostics.append(Diagnostic(message, span))
            continue
        try:
            built.append(_ToAst(offset).transform(statement))
        except lark.exceptions.VisitError as error:
            if not isinstance(error.orig_exc, _StatementError):
                raise
            diagnostics.append(error.orig_exc.diagnostic)
    return built


def _too_deep(text: str, start: int, end: int) -> Diagnostic | None:
    """A diagnostic at the first token of ``text[start:end]`` that nests deeper than
    :data:`MAX_NESTING`, found by a scan of the tokens before parsing, so that refusing
    a deep nest takes no time.

    Parentheses, unary minus and ``^`` open a level; a parenthesis right after unary
    minus or ``^`` is that operator's own level. Other operators and commas end the
    levels opened since the enclosing parenthesis. The parse tree is measured again
    after parsing (:func:`_nesting`).

    >>> _too_deep("logits = " + "-(" * 300 + "x", 0, 609).message
    'this statement nests expressions more than 200 levels deep'
    >>> _too_deep("logits = " + " + ".join(["-x ^ (1 + 2)"] * 300), 0, 4500) is None
    True
    """
    depth = 0
    groups: list[tuple[int, int]] = []  # per open parenthesis: depth outside, depth inside
    previous = "="
    for match in _TOKEN.finditer(text, start, end):
        token = match[0]
        if token[0] in '#"':
            continue
        if token == "(":
            opened = previous not in ("-unary", "^")
            groups.append((depth, depth + opened))
            depth += opened
        elif token == ")":
            depth = groups.pop()[0] if groups else 0
        elif token == "^" or (token == "-" and not _OPERAND.match(previous)):
            depth += 1
            token = "-unary" if token == "-" else token
        elif token in _ENDS_LEVELS:
            depth = groups[-1][1] if groups else 0
        if depth > MAX_NESTING:
            message = f"this statement nests expressions more than {MAX_NESTING} levels deep"
            return Diagnostic(message, Span(match.start(), match.end()))
        previous = token
    return None


def _nesting(tree: lark.Tree) -> int:
    """The number of levels of ``tree``, counted without recursion; the left operand of
    a chain of operators of one precedence is on the chain's level.

    >>> [_nesting(_lark().parse(f"logits = {e}")) for e in ("-(-(1 + x))", "1 + x", "1 + x - x")]
    [6, 4, 4]
    """
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        for index, child in enumerate(node.children):
            if isinstance(child, lark.Tree):
                chained = index == 0 and any({node.data, child.data} <= c for c in _CHAINS)
                stack.append((child, depth if chained else depth + 1))
    return deepest


def _statement_chunks(text: str) -> list[tuple[int, int]]:
    starts = [m.start() for m in _STATEMENT_START.finditer(text)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    return list(zip(starts, starts[1:] + [len(text)], strict=True))


def _keyword_name(token: Token, offset: int) -> Diagnostic:
    span = Span(offset + token.start_pos, offset + token.end_pos)
    return Diagnostic(
        f"'{token}' is a keyword and cannot be used as a name",
        span,
        hint="the statement keywords (" + ", ".join(STATEMENT_KEYWORDS) + ") are reserved",
    )


def _syntax_diagnostic(
    error: lark.exceptions.UnexpectedInput, text: str, start: int, end: int
) -> Diagnostic:
    if isinstance(error, lark.exceptions.UnexpectedCharacters):
        pos = start + error.pos_in_stream
        char = text[pos]
        if char == '"':
            message = 'a description needs its closing " on the same line'
            return Diagnostic(message, Span(pos, pos + 1))
        hint = "names are made of ASCII letters, digits and '_'" if char.isalpha() else None
        return Diagnostic(f"unexpected character {char!r}", Span(pos, pos + 1), hint)
    token = error.token
    terminals = error.interactive_parser.accepts() or error.expected
    expected = _describe_expected(terminals)
    if token.type == "$END":
        pos = start + len(text[start:end].rstrip())
        return Diagnostic(f"unexpected end of statement; expected {expected}", Span(pos, pos))
    pos = start + token.start_pos
    hint = None
    if token.type == "NAME":
        hint = did_you_mean(str(token), _keywords(terminals))
    return Diagnostic(
        f"unexpected {str(token)!r}; expected {expected}", Span(pos, pos + len(token)), hint
    )


def _keywords(terminals: set[str]) -> list[str]:
    """The keywords among the parser's ``terminals``, statement keywords first."""
    words = [
        pattern.value
        for pattern in (_lark().get_terminal(name).pattern for name in terminals if name != "$END")
        if pattern.type == "str" and pattern.value.isalpha()
    ]
    return sorted(words, key=lambda w: (w not in STATEMENT_KEYWORDS, w))


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


class _StatementError(Exception):
    """A problem found while building a statement's AST (a number too large, an option
    given twice); it carries the diagnostic out of lark's transformer."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        self.diagnostic = diagnostic


class _LearnOption(NamedTuple):
    key: str
    value: object
    span: Span


@v_args(meta=True)
class _ToAst(lark.visitors.Transformer_NonRecursive):
    """Parse tree -> AST nodes, with spans shifted to offsets in the whole file; without
    recursion, so that a long chain of operators does not overflow Python's stack."""

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
            raise _StatementError(Diagnostic(f"number {token} is too large (not finite)", span))
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
        name, expr, *before = children
        return ast.ControlDecl(self._name(name), expr, bool(before), span=self._span(meta))

    def before_choice(self, meta, children):
        return True

    def offered_decl(self, meta, children):
        return ast.OfferedDecl(tuple(children), span=self._span(meta))

    def data_column(self, meta, children):
        prefix, column = children
        if prefix != "data":
            message = f"unknown prefix '{prefix}.'; a data column is written 'data.{column}'"
            raise _StatementError(Diagnostic(message, self._tok(prefix)))
        return ast.Column(self._name(column), span=self._span(meta))

    def module_decl(self, meta, children):
        name, target, *rest = children
        body = rest[-1]
        trial_filter = rest[0] if len(rest) == 2 else ast.TrialFilter("all")
        return ast.ModuleDecl(
            self._name(name), self._name(target), trial_filter, body, span=self._span(meta)
        )

    def when_chosen(self, meta, children):
        return self._chosen_filter("chosen", meta, children)

    def when_not_chosen(self, meta, children):
        return self._chosen_filter("not_chosen", meta, children)

    def _chosen_filter(self, kind, meta, children):
        """``[not] chosen``, with the condition written after or before it, if any."""
        condition = next((c for c in children if isinstance(c, ast.Comparison)), None)
        return ast.TrialFilter(kind, condition, span=self._span(meta))

    def when_not_offered(self, meta, children):
        return ast.TrialFilter("not_offered", span=self._span(meta))

    def when_all(self, meta, children):
        return ast.TrialFilter("all", span=self._span(meta))

    def when_condition(self, meta, children):
        return ast.TrialFilter("condition", children[0], span=self._span(meta))

    def comparison(self, meta, children):
        left, op, right = children
        return ast.Comparison(left, str(op), right, span=self._span(meta))

    def learn(self, meta, children):
        inputs: tuple[ast.Name, ...] = ()
        options: dict[str, object] = {}
        for child in children:
            if not isinstance(child, _LearnOption):
                inputs = child
            elif child.key in options:
                message = f"the option '{child.key}' is given twice"
                raise _StatementError(Diagnostic(message, child.span))
            else:
                options[child.key] = child.value
        return ast.Learn(inputs, **options, span=self._span(meta))

    def activation_option(self, meta, children):
        return _LearnOption("activation", self._name(children[0]), self._span(meta))

    def degree_option(self, meta, children):
        return _LearnOption("degree", int(children[0]), self._span(meta))

    def threshold_option(self, meta, children):
        return _LearnOption("threshold", children[0], self._span(meta))

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

    def participants_decl(self, meta, children):
        return ast.ParticipantsDecl(str(children[0])[1:-1], span=self._span(meta))

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

    def vector(self, meta, children):
        return ast.Vector(tuple(children), span=self._span(meta))

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
