"""The statement syntax of ISC dhclient's lease files and configuration: words and quoted
strings, statements ended by `;` or by a `{ ... }` block, `#` comments to the end of a line.

Quoted strings are unescaped the way dhclient's own reader does (`\\ooo` octal, `\\xHH` hex,
`\\t \\r \\n \\b`, any other character after a backslash stands for itself); dhclient writes
every unprintable byte as `\\ooo`. Text is handled one character per byte (latin-1), so a
string's characters are exactly its bytes.

The input is untrusted: a syntax error stops the parse there and is reported with its line,
and everything complete before it is kept, so a lease file whose last write was cut short
still yields its earlier leases.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

# dhclient nests at most three deep (lease6 > ia-na > iaaddr); anything far deeper is garbage.
MAX_DEPTH = 8

# Real lease files and configurations hold hundreds of statements; a file of tens of
# thousands is garbage, and the limit keeps its parse quick.
MAX_STATEMENTS = 10_000
# dhclient writes at most four words in a statement (`expire 6 2026/12/05 04:07:55;`).
MAX_WORDS = 64

# Every character starts exactly one of these; a `"` that no closing quote follows is
# `unterminated`. The string's possessive repeats never backtrack, so finding that a string
# is not closed costs one pass.
_TOKEN = re.compile(
    r"""(?P<newline>\n)
      | (?P<space>[^\S\n]+)
      | (?P<comment>\#[^\n]*)
      | (?P<punctuation>[{};])
      | (?P<string>"[^"\\]*+(?:\\.[^"\\]*+)*+")
      | (?P<word>[^\s{};"\#]+)
      | (?P<unterminated>")""",
    re.VERBOSE | re.DOTALL,
)
_ESCAPE = re.compile(r"\\([0-3][0-7]{2}|x[0-9A-Fa-f]{2}|.)", re.DOTALL)
_CONTROL_ESCAPES = {"t": "\t", "r": "\r", "n": "\n", "b": "\b"}


@dataclass(frozen=True)
class Word:
    """A bare word, or a quoted string's unescaped characters (`quoted`)."""

    text: str
    quoted: bool
    line: int


@dataclass(frozen=True)
class Statement:
    """Words ended by `;` (`block` is None) or followed by a `{ ... }` block."""

    words: tuple[Word, ...]
    block: tuple[Statement, ...] | None
    line: int

    @property
    def keyword(self) -> str:
        return self.words[0].text if self.words and not self.words[0].quoted else ""


@dataclass(frozen=True)
class ParsedText:
    """The complete top-level statements, and why parsing stopped early (None if it did not)."""

    statements: tuple[Statement, ...]
    problem: str | None


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "string" or the punctuation character itself
    text: str
    line: int


class _SyntaxProblem(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")


def parse_statements(text: str) -> ParsedText:
    """Parse `text` into statements, stopping at the first syntax error."""
    parser = _Parser(_tokens(text))
    statements: list[Statement] = []
    try:
        while not parser.at_end():
            statement = parser.statement(depth=0)
            if statement is not None:
                statements.append(statement)
    except _SyntaxProblem as problem:
        return ParsedText(tuple(statements), str(problem))
    return ParsedText(tuple(statements), None)


def _unescape(raw: str) -> str:
    def replace(match: re.Match[str]) -> str:
        escaped = match.group(1)
        if len(escaped) == 3 and escaped.isdigit():
            return chr(int(escaped, 8))
        if len(escaped) == 3:
            return chr(int(escaped[1:], 16))
        return _CONTROL_ESCAPES.get(escaped, escaped)

    return _ESCAPE.sub(replace, raw)


def _tokens(text: str) -> Iterator[_Token]:
    """The tokens of `text`, made as the parser asks for them, so that a parse stopped by an
    error early in a large text does not tokenize the rest."""
    line = 1
    for match in _TOKEN.finditer(text):
        kind, value = match.lastgroup, match.group()
        if kind == "newline":
            line += 1
        elif kind == "punctuation":
            yield _Token(value, value, line)
        elif kind == "string":
            yield _Token("string", _unescape(value[1:-1]), line)
            line += value.count("\n")
        elif kind == "word":
            yield _Token("word", value, line)
        elif kind == "unterminated":
            raise _SyntaxProblem(line, "a quoted string is never closed")


class _Parser:
    def __init__(self, tokens: Iterator[_Token]) -> None:
        self._tokens = tokens
        self._lookahead: _Token | None = None
        self._statements = 0

    def _peek(self) -> _Token | None:
        if self._lookahead is None:
            self._lookahead = next(self._tokens, None)
        return self._lookahead

    def at_end(self) -> bool:
        return self._peek() is None

    def _next(self, context_line: int) -> _Token:
        token = self._peek()
        if token is None:
            raise _SyntaxProblem(context_line, "the text ends inside this statement")
        self._lookahead = None
        return token

    def statement(self, depth: int) -> Statement | None:
        """One statement; None for an empty one (a lone `;`). Called only when a token is
        there to start it."""
        first = self._next(0)
        self._statements += 1
        if self._statements > MAX_STATEMENTS:
            raise _SyntaxProblem(first.line, f"more than {MAX_STATEMENTS} statements")
        words: list[Word] = []
        token = first
        while True:
            if token.kind == ";":
                return Statement(tuple(words), None, first.line) if words else None
            if token.kind == "{":
                return Statement(tuple(words), self._block(depth + 1, token.line), first.line)
            if token.kind == "}":
                raise _SyntaxProblem(token.line, "'}' without a matching '{'")
            if len(words) == MAX_WORDS:
                raise _SyntaxProblem(first.line, f"a statement of more than {MAX_WORDS} words")
            words.append(Word(token.text, token.kind == "string", token.line))
            token = self._next(first.line)

    def _block(self, depth: int, opened_at: int) -> tuple[Statement, ...]:
        if depth > MAX_DEPTH:
            raise _SyntaxProblem(opened_at, f"blocks nest deeper than {MAX_DEPTH}")
        statements: list[Statement] = []
        while True:
            token = self._peek()
            if token is None:
                raise _SyntaxProblem(opened_at, "this block is never closed")
            if token.kind == "}":
                self._lookahead = None
                return tuple(statements)
            statement = self.statement(depth)
            if statement is not None:
                statements.append(statement)
