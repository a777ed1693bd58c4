"""One JSON text read as it arrives, in chunks cut anywhere: a value, or an object member by
member, at a time. A document of a million devices is then never held whole, and its first
members are used before the last arrive.

Each value is decoded by the standard library's decoder (`JSONDecoder.raw_decode`); only the
objects the caller walks (`members`) are taken apart here.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from typing import Any

_SPACE = " \t\n\r"


class JsonStreamError(ValueError):
    """The text is not JSON, not the shape the caller walks, or ends too soon."""


class JsonStream:
    """A JSON text from `chunks` (UTF-8 bytes, split anywhere)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._decoder = json.JSONDecoder()
        self._text = ""  # what has arrived and is not read yet starts at _at
        self._at = 0
        self._ended = False

    def value(self) -> Any:
        """The next whole value."""
        self._skip_space()
        while True:
            try:
                value, end = self._decoder.raw_decode(self._text, self._at)
            except json.JSONDecodeError as exc:
                if self._read_more():
                    continue
                raise JsonStreamError(f"invalid JSON: {exc}") from None
            # A number at the end of what has arrived may go on in the next chunk.
            if end == len(self._text) and self._read_more():
                continue
            self._at = end
            return value

    def members(self) -> Iterator[str]:
        """The keys of the object that starts here, in order; after each, the caller reads its
        value (with `value` or `members`) before asking for the next key."""
        self._expect("{")
        if self._peek() == "}":
            self._at += 1
            return
        while True:
            key = self.value()
            if not isinstance(key, str):
                raise JsonStreamError(f"invalid JSON: an object key is {type(key).__name__}")
            self._expect(":")
            yield key
            if self._expect(",}") == "}":
                return

    def end(self) -> None:
        """Check that nothing but white space follows."""
        self._skip_space()
        if self._at < len(self._text):
            raise JsonStreamError("invalid JSON: text after the end of the document")

    def _expect(self, characters: str) -> str:
        found = self._peek()
        if found not in characters:
            wanted = " or ".join(repr(character) for character in characters)
            raise JsonStreamError(f"invalid JSON: {wanted} expected, not {found!r}")
        self._at += 1
        return found

    def _peek(self) -> str:
        self._skip_space()
        if self._at == len(self._text):
            raise JsonStreamError("the JSON text ends too soon")
        return self._text[self._at]

    def _skip_space(self) -> None:
        while True:
            while self._at < len(self._text) and self._text[self._at] in _SPACE:
                self._at += 1
            if self._at < len(self._text) or not self._read_more():
                return

    def _read_more(self) -> bool:
        """Add chunks until what is unread has doubled (a value cut by chunks is decoded again
        each time: doubling keeps that linear in its size); False at the end of the text."""
        if self._ended:
            return False
        unread = [self._text[self._at :]]
        wanted = max(len(unread[0]), 1)
        arrived = 0
        try:
            while arrived < wanted:
                chunk = next(self._chunks, None)
                text = self._utf8.decode(chunk or b"", final=chunk is None)
                unread.append(text)
                arrived += len(text)
                if chunk is None:
                    self._ended = True
                    break
        except UnicodeDecodeError as exc:
            raise JsonStreamError(f"the JSON text is not UTF-8: {exc.reason}") from None
        if not arrived:
            return False
        self._text = "".join(unread)
        self._at = 0
        return True
