"""Incremental reading of large JSON documents: the envelope is walked token by token and each
element of a large array is decoded on its own, so memory holds one record at a time.

Only the structure needed by the ingest formats is supported: a top-level object whose named
member is a big array (the JSON batch) or a top-level array / single object (Ed-Fi JSON).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from services.ingest.parsed_records import RecordError

_WS = re.compile(r"[ \t\r\n]*")
_WS_CHARS = " \t\r\n"
_CHUNK = 1 << 16
_LITERALS = ("true", "false", "null", "NaN", "Infinity", "-Infinity")


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


@dataclass(eq=False)  # eq=False: an exception stays hashable, as tracebacks expect
class JsonSyntaxError(Exception):
    """Where the JSON broke (1-based line and column) and how."""

    message: str
    line: int
    column: int

    def __post_init__(self) -> None:
        super().__init__(self.message)  # str(exc) is the message, as before

    def refusal(self, file: str, items: str) -> RecordError:
        """The file-level error a parse stops with: where the JSON broke, and that the ``items``
        (records, resources) before it were read."""
        message = (
            f"The file is not valid JSON at line {self.line}, column {self.column}: {self.message}. "
            f"{items} before that point were read; nothing after it was."
        )
        return RecordError(file, self.line, "", "file.unreadable", message, "")


class Oversized:
    """Stands in for an array element that was larger than the record size limit (skipped)."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


class NonFinite:
    """NaN / Infinity in the input: kept as a marker so the record can be refused by type."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class DuplicateKeys(dict[str, Any]):
    """An object in which some key appeared more than once (the names are in ``duplicates``)."""

    duplicates: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = dict(pairs)
    if len(out) == len(pairs):
        return out  # no member repeated: the object as built in C (most objects)
    out = {}
    dups: list[str] = []
    for k, v in pairs:
        if k in out:
            dups.append(k)
        out[k] = v
    if dups:
        d = DuplicateKeys(out)
        d.duplicates = dups
        return d
    return out


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=NonFinite)


class JsonReader:
    def __init__(self, stream: Readable, max_value_chars: int) -> None:
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.buf = ""
        self.pos = 0
        self.line = 1
        self._line_start = 0  # buffer offset where the current line begins (may be negative)
        self.eof = False
        self.max = max_value_chars
        self.bytes_read = 0
        self._first = True

    # --- buffer ------------------------------------------------------------------------------

    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self._stream.read(_CHUNK)
        self.bytes_read += len(data)
        try:
            text = self._decoder.decode(data, final=not data)
        except UnicodeDecodeError:
            raise JsonSyntaxError("the file is not UTF-8 text", self.line, self.pos - self._line_start + 1) from None
        if self._first:
            self._first = False
            if text.startswith("\ufeff"):
                text = text[1:]
        if not data:
            self.eof = True
        if self.pos > _CHUNK:
            self._line_start -= self.pos
            self.buf = self.buf[self.pos :]
            self.pos = 0
        self.buf += text
        return True

    def _advance(self, new_pos: int) -> None:
        n = self.buf.count("\n", self.pos, new_pos)
        if n:
            self.line += n
            self._line_start = self.buf.rindex("\n", self.pos, new_pos) + 1
        self.pos = new_pos

    def column(self) -> int:
        return self.pos - self._line_start + 1

    def error(self, message: str) -> JsonSyntaxError:
        return JsonSyntaxError(message, self.line, self.column())

    def skip_ws(self) -> None:
        if self.pos < len(self.buf) and self.buf[self.pos] not in _WS_CHARS:
            return  # already at a token: the common case between an array's values
        while True:
            m = _WS.match(self.buf, self.pos)
            end = m.end() if m else self.pos
            self._advance(end)
            if self.pos < len(self.buf) or not self._fill():
                return

    def peek(self) -> str:
        self.skip_ws()
        return self.buf[self.pos] if self.pos < len(self.buf) else ""

    def expect(self, chars: str) -> str:
        ch = self.peek()
        if not ch or ch not in chars:
            found = "the end of the file" if not ch else repr(ch)
            raise self.error(f"expected one of {' '.join(repr(c) for c in chars)} but found {found}")
        self._advance(self.pos + 1)
        return ch

    # --- values ------------------------------------------------------------------------------

    def value(self, limit: int | None = None) -> Any:
        """Decode the next JSON value; an ``Oversized`` marker if it exceeds the limit."""
        limit = limit or self.max
        self.skip_ws()
        while True:
            try:
                val, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self._truncated(exc) and not self.eof:
                    if len(self.buf) - self.pos > limit:
                        return self._skip_oversized()
                    self._fill()
                    continue
                self._advance(min(max(exc.pos, self.pos), len(self.buf)))
                raise self.error(exc.msg) from None
            except (ValueError, RecursionError) as exc:
                raise self.error(f"a value could not be read ({type(exc).__name__})") from None
            if end >= len(self.buf) and not self.eof:
                # a number or literal could continue in the next chunk
                self._fill()
                continue
            if end - self.pos > limit:
                size = end - self.pos
                self._advance(end)
                return Oversized(size)
            self._advance(end)
            return val

    def _truncated(self, exc: json.JSONDecodeError) -> bool:
        """Whether the decode failed only because the value continues past the buffer."""
        if exc.pos >= len(self.buf) - 1 or exc.msg.startswith("Unterminated string"):
            return True
        rest = self.buf[exc.pos :]
        return any(lit.startswith(rest) for lit in _LITERALS)

    def _skip_oversized(self) -> Oversized:
        """Skip a value larger than the limit without holding it: track nesting and strings."""
        depth = 0
        size = 0
        in_str = False
        esc = False
        while True:
            if self.pos >= len(self.buf) and not self._fill():
                raise self.error("the file ends inside a value")
            chunk_end = len(self.buf)
            i = self.pos
            buf = self.buf
            while i < chunk_end:
                c = buf[i]
                if in_str:
                    if esc:
                        esc = False
                    elif c == "\\":
                        esc = True
                    elif c == '"':
                        in_str = False
                elif c == '"':
                    in_str = True
                elif c in "[{":
                    depth += 1
                elif c in "]}":
                    depth -= 1
                    if depth == 0:
                        size += i + 1 - self.pos
                        self._advance(i + 1)
                        return Oversized(size)
                i += 1
            size += chunk_end - self.pos
            self._advance(chunk_end)

    def key(self) -> str:
        self.skip_ws()
        if self.peek() != '"':
            raise self.error("expected a quoted member name")
        k = self.value(limit=4096)
        if not isinstance(k, str):
            raise self.error("expected a quoted member name")
        return k

    def array_items(self) -> Iterator[tuple[int, int, Any]]:
        """After the opening '[': yield (index, line, value) for each element; consumes ']'."""
        index = 0
        if self.peek() == "]":
            self._advance(self.pos + 1)
            return
        while True:
            self.skip_ws()
            line = self.line
            yield index, line, self.value()
            index += 1
            if self.expect(",]") == "]":
                return

    def at_end(self) -> bool:
        return self.peek() == ""
