"""Inflate a request body in bounded steps, and decode it as strict JSON.

A body of 4 MiB can inflate to 4 GiB. So a body is inflated only after its sender has been
authenticated (the handlers do that first), in steps of at most STEP bytes, and refused the moment
its inflated size passes the limit: the limit holds while inflating, not after. Accepted
encodings are identity, gzip and deflate (the zlib format, as HTTP means it); anything else is
refused, and so is a stream that is corrupt, truncated or followed by trailing bytes.

Errors: BodyError, carrying a stable code (BodyCode) and a message; `collector.errors` gives
each code its HTTP status, once.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterator
from typing import Any, Literal

import orjson

from probes.values import HOLDS_NUL, NUL, clean_text

# orjson decodes an agent's batch in ~60% of the json module's time and to the same objects,
# but for one thing: an integer past 64 bits becomes a float. Such an integer has 19 digits or
# more, and `raw.translate(DIGITS_AS_ZEROS)` (every digit "0", every other byte ".") finds any
# run of 19 in ~0.2 µs a result: a body holding one is left to the json module, as is any body
# orjson refuses (for the json module's wording, or its reading of 1e400 and lone surrogates).
DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x2E for byte in range(256))
LONG_NUMBER = b"0" * 19
STEP = 256 * 1024  # bytes inflated at once: well under a millisecond of the event loop
ENCODINGS = {"": None, "identity": None, "gzip": 16 + 15, "x-gzip": 16 + 15, "deflate": 15}


BodyCode = Literal[
    "too_large", "too_many_values", "unsupported_encoding", "bad_encoding", "bad_json"
]


class BodyError(Exception):
    """A body refused: a stable code and a message for people (no HTTP number: errors.py's)."""

    def __init__(self, code: BodyCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class Inflater:
    """The inflated bytes of one body, fed as it arrives, refused beyond `limit` bytes."""

    def __init__(self, encoding: str, limit: int) -> None:
        name = encoding.strip().lower()
        if name not in ENCODINGS:
            raise BodyError(
                "unsupported_encoding",
                f"Content-Encoding {encoding[:40]!r} is not supported: send gzip, deflate "
                "or identity",
            )
        self.name, self.limit = name or "identity", limit
        wbits = ENCODINGS[name]
        self._zlib = None if wbits is None else zlib.decompressobj(wbits)
        self.body = bytearray()
        self.received = 0

    def feed(self, data: bytes) -> Iterator[None]:
        """Take `data`; yield after each step of inflating it, so the caller can pause."""
        self.received += len(data)
        if self.received > self.limit:  # compressed, and still too large
            raise BodyError("too_large", f"the body is over {self.limit} bytes")
        if self._zlib is None:
            self._keep(data)
            return
        pending = data
        while pending:
            try:
                piece = self._zlib.decompress(pending, STEP)
            except zlib.error as err:
                raise self._corrupt(str(err)) from err
            self._keep(piece)
            if self._zlib.eof and self._zlib.unused_data:
                raise self._corrupt("bytes after the end of the compressed stream")
            pending = self._zlib.unconsumed_tail
            yield

    def finish(self) -> bytes:
        """Return the whole inflated body; refuse a compressed stream that stopped short."""
        if self._zlib is not None and not self._zlib.eof:
            raise self._corrupt("the compressed stream is truncated")
        return bytes(self.body)

    def _keep(self, piece: bytes) -> None:
        if len(self.body) + len(piece) > self.limit:
            raise BodyError("too_large", f"the body is over {self.limit} bytes inflated")
        self.body += piece

    def _corrupt(self, detail: str) -> BodyError:
        return BodyError("bad_encoding", f"the body is not valid {self.name}: {detail}")


def count_values(raw: bytes, cap: int) -> int:
    """Return a bound on the JSON values in `raw`, counted in C; stop once it passes `cap`.

    Every value is the first in its array (after a `[`), follows a comma, or is a member after
    its colon; an object's members are its colons. So commas, colons, `[` and `{` bound what
    the decoder must build (those inside strings count too, which errs on the safe side).
    bytes.count runs at memchr speed: under 2 ms a MiB for all four, where decoding a MiB of
    `0,0,0,...` costs ~20 ms and holds the GIL throughout.
    """
    found = 1
    for mark in (b",", b":", b"[", b"{"):
        found += raw.count(mark)
        if found > cap:
            break
    return found


def decode_json(raw: bytes, *, in_thread: bool = False, max_values: int | None = None) -> Any:
    """Return the JSON in `raw`; NaN and Infinity are refused, as JSON itself refuses them.

    `max_values`: refuse (too_many_values) a body holding more values than this before
    decoding it, since the decoder holds the GIL for long stretches whatever the thread.

    `in_thread`: the C decoder holds the GIL for the whole body (~10 ms a MiB), stalling the
    event loop even from a worker thread; a Python hook per object and per number lets the GIL
    go between them, for ~30% more decoding time in the thread. Numbers need their own hook: a
    flat list of long floats or 4,000-digit integers has no object, and costs up to 20 ms a MiB.
    """
    # A body holds at most one value more than it has bytes: a shorter one needs no count.
    if (
        max_values is not None
        and len(raw) >= max_values
        and count_values(raw, max_values) > max_values
    ):
        raise BodyError(
            "too_many_values",
            f"the body holds over {max_values} JSON values: send smaller batches",
        )
    if not in_thread and LONG_NUMBER not in raw.translate(DIGITS_AS_ZEROS):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # the json module below words the refusal, or reads what orjson does not
    try:
        if in_thread:
            return json.loads(
                raw,
                parse_constant=_refuse_constant,
                object_pairs_hook=_pairs,
                parse_float=_float,
                parse_int=_int,
            )
        return json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as err:  # bad UTF-8 or JSON, 5,000-digit numbers
        raise BodyError("bad_json", f"the body is not JSON: {err}") from err


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return dict(pairs)


def _float(text: str) -> float:
    return float(text)


def _int(text: str) -> int:
    return int(text)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def lone_surrogate(value: Any, path: str = "") -> str | None:
    """Return where in `value` a string holds a lone surrogate (such as "\\ud800"), or None.

    JSON's escapes can carry half of a UTF-16 pair; it is not text, and SQLite cannot store it.
    """
    if isinstance(value, str):
        return None if clean_text(value) else path or "body"
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if not clean_text(key):
                return (path or "body") + " (a key)"
            found = lone_surrogate(item, where)
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = lone_surrogate(item, f"{path}[{index}]")
            if found:
                return found
    return None


def unstorable_text(raw: bytes, value: Any) -> str | None:
    """Return why a staff body's strings cannot be stored as text, naming where; None if they can.

    `value` is what `raw` decodes to. A lone surrogate is not text; U+0000 is text that
    PostgreSQL's text columns refuse (SQLite takes it), so both backends refuse it here. A JSON
    body can carry U+0000 only as the escape `\\u0000`, or in a UTF-16/32 body (which holds
    zero bytes anyway): two byte searches at memchr speed keep the walk off nearly every body.
    """
    where = lone_surrogate(value)
    if where is not None:
        return f"{where}: holds a lone surrogate, which is not text"
    if b"\\u0000" in raw or b"\x00" in raw:
        where = nul_character(value)
        if where is not None:
            return f"{where}: {HOLDS_NUL}"
    return None


def nul_character(value: Any, path: str = "") -> str | None:
    """Return where in `value` a string or a key holds U+0000, or None."""
    if isinstance(value, str):
        return path or "body" if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if NUL in key:
                return (path or "body") + " (a key)"
            found = nul_character(item, f"{path}.{key}" if path else key)
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = nul_character(item, f"{path}[{index}]")
            if found:
                return found
    return None


def finite(value: Any) -> Any:
    """Return `value` with every NaN or infinite float made null, for strict JSON out."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value
