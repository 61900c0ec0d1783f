"""Read typed values out of a node tree, collecting problems instead of stopping.

Every getter returns a usable value even when the input is wrong (a neutral fallback), and
records a Problem. Builders can therefore always finish, so one pass finds every mistake in a
file; the caller raises ConfigError at the end if any problem was recorded, and the fallbacks
are never seen by anyone.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Collection, Sequence
from datetime import time, timedelta
from typing import TypeVar

from sitewatch.config.errors import Problem
from sitewatch.config.model import IPAddress
from sitewatch.config.yamltree import Node

T = TypeVar("T", bound=str)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_IDENTIFIER = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62})")
_HOSTNAME_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_TIME_OF_DAY = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def parse_duration(text: str) -> timedelta | None:
    """Return `30s`, `15m`, `4h`, `2d` or a sum like `1h30m` as a timedelta, or None."""
    text = text.strip()
    if not text:
        return None
    position = 0
    seconds = 0.0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            return None
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text):
        return None
    return timedelta(seconds=seconds)


def _type_name(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} {value!r}"


class Reader:
    """Typed access to one file's nodes; problems go to `problems`."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def problem(self, node: Node, message: str, *, line: int | None = None) -> None:
        """Record that `node` is wrong in the way `message` says (once, however often asked).

        Inherited settings are read once per inheritor, so the same mistake can be met many
        times; the user should see it once, at its own line.
        """
        problem = Problem(self.file, line or node.line, node.path, message)
        if problem not in self.problems:
            self.problems.append(problem)

    def mapping(
        self,
        node: Node,
        allowed: Collection[str],
        required: Collection[str] = (),
    ) -> dict[str, Node]:
        """Return the children of a mapping node, checking unknown and missing keys."""
        if not isinstance(node.value, dict):
            self.problem(node, f"expected a mapping of keys, got {_type_name(node.value)}")
            return {}
        children: dict[str, Node] = node.value
        suggested: set[str] = set()
        for key, child in children.items():
            if key not in allowed:
                close = closest(key, allowed)
                hint = f" (did you mean {close!r}?)" if close else ""
                self.problem(child, f"unknown key{hint}", line=node.key_lines.get(key))
                suggested.add(close or "")
        for key in required:
            # A misspelt required key is one mistake: the unknown-key line already says it.
            if key not in children and key not in suggested:
                self.problem(node, f"missing required key {key!r}")
        return {key: child for key, child in children.items() if key in allowed}

    def items(self, node: Node) -> list[Node]:
        """Return the items of a list node (a null counts as an empty list)."""
        if node.value is None:
            return []
        if not isinstance(node.value, list):
            self.problem(node, f"expected a list, got {_type_name(node.value)}")
            return []
        return list(node.value)

    def string(self, node: Node, *, allow_empty: bool = False) -> str:
        """Return a text value."""
        value = node.value
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            hint = ""
            if isinstance(value, bool):
                hint = " (YAML reads yes/no/on/off as booleans: put the text in quotes)"
            self.problem(node, f"expected text, got {_type_name(value)}{hint}")
            return ""
        text = str(value).strip()
        if not text and not allow_empty:
            self.problem(node, "must not be empty")
        return text

    def boolean(self, node: Node) -> bool:
        """Return true or false."""
        if not isinstance(node.value, bool):
            self.problem(node, f"expected true or false, got {_type_name(node.value)}")
            return False
        return node.value

    def integer(self, node: Node, *, minimum: int | None = None, maximum: int | None = None) -> int:
        """Return a whole number within the given bounds."""
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(node, f"expected a whole number, got {_type_name(value)}")
            return minimum or 0
        self._check_range(node, value, minimum, maximum)
        return value

    def number(
        self, node: Node, *, minimum: float | None = None, maximum: float | None = None
    ) -> float:
        """Return a number (whole or decimal) within the given bounds."""
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            self.problem(node, f"expected a number, got {_type_name(value)}")
            return minimum or 0.0
        self._check_range(node, value, minimum, maximum)
        return float(value)

    def fraction(self, node: Node, *, allow_zero: bool = True) -> float:
        """Return a share between 0 and 1, like `0.2` for 20%."""
        value = self.number(node)
        if not 0 <= value <= 1:
            self.problem(node, f"must be a fraction between 0 and 1 (0.2 means 20%), not {value}")
        elif value == 0 and not allow_zero:
            self.problem(node, "must be more than 0")
        return value

    def duration(self, node: Node, *, minimum: timedelta | None = None) -> timedelta:
        """Return a duration written like `30s`, `15m`, `4h` or `2d`."""
        value = node.value
        parsed = parse_duration(value) if isinstance(value, str) else None
        if parsed is None:
            self.problem(
                node,
                f"expected a duration such as 30s, 15m, 4h or 2d, got {_type_name(value)}",
            )
            return minimum or timedelta(0)
        if minimum is not None and parsed < minimum:
            self.problem(node, f"must be at least {_format_duration(minimum)}")
        return parsed

    def choice(self, node: Node, options: Sequence[T]) -> T:
        """Return one of a fixed set of words."""
        text = self.string(node)
        for option in options:
            if text == option:
                return option
        if text:
            self.problem(
                node, f"{text!r} is not one of {', '.join(options)}{suggestion(text, options)}"
            )
        return options[0]

    def identifier(self, node: Node) -> str:
        """Return an id: lower-case letters, digits, `-`, `_` and `.`, starting alphanumeric."""
        text = self.string(node)
        if text and not _IDENTIFIER.fullmatch(text):
            self.problem(
                node,
                f"{text!r} is not a valid id: use lower-case letters, digits, '-', '_' and '.', "
                "starting with a letter or digit, at most 63 characters",
            )
        return text

    def ip_address(self, node: Node) -> IPAddress:
        """Return an IPv4 or IPv6 address."""
        text = self.string(node)
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            if text:
                self.problem(node, f"{text!r} is not a valid IP address")
            return ipaddress.IPv4Address(0)

    def host(self, node: Node) -> str:
        """Return an IP address or a DNS host name."""
        text = self.string(node)
        if not text:
            return text
        normalised = normalise_host(text)
        if normalised is None:
            self.problem(node, f"{text!r} is neither a valid IP address nor a host name")
            return text
        return normalised

    def port(self, node: Node) -> int:
        """Return a TCP/UDP port number."""
        return self.integer(node, minimum=1, maximum=65535)

    def time_of_day(self, node: Node) -> time:
        """Return a time of day written `"HH:MM"`."""
        value = node.value
        match = _TIME_OF_DAY.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            hint = ' (write it in quotes, like "08:00")' if isinstance(value, int) else ""
            self.problem(node, f'expected a time like "08:00", got {_type_name(value)}{hint}')
            return time(0)
        return time(int(match.group(1)), int(match.group(2)))

    def _check_range(
        self, node: Node, value: float, minimum: float | None, maximum: float | None
    ) -> None:
        if minimum is not None and value < minimum:
            self.problem(node, f"must be at least {minimum}, not {value}")
        elif maximum is not None and value > maximum:
            self.problem(node, f"must be at most {maximum}, not {value}")


def normalise_host(text: str) -> str | None:
    """Return an IP address in its canonical form or a valid host name as given, else None.

    Dotted numbers are held to the rules of addresses: `999.1.1.1` is a bad address, not a
    host name.
    """
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    labels = text.rstrip(".").split(".")
    if all(label.isdigit() for label in labels):
        return None
    if not all(_HOSTNAME_LABEL.fullmatch(label) for label in labels):
        return None
    return text


def closest(word: str, candidates: Collection[str]) -> str | None:
    """Return the candidate closest to `word`, if any is close enough to be a typo."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


def suggestion(word: str, candidates: Collection[str]) -> str:
    """Return ` (did you mean 'x'?)` for the closest candidate, or nothing."""
    close = closest(word, candidates)
    return f" (did you mean {close!r}?)" if close else ""


def _format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit in ("d", "h", "m", "s"):
        size = _DURATION_UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds}s"
