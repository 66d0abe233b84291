"""Can a Redis glob pattern match a key whose parts are only partly known? (pure)

A key template (``booking:availability:{event_date}:get_available_slots:{args_hash}``) and a
pattern (``booking:*``, ``booking:availability:{result.event_date}:*``) are both compiled to a
sequence of *items*: a set of characters, taken once or any number of times. Two sequences can
describe a common string iff the end state of the product automaton is reachable; that is an
O(len(a) * len(b)) walk, exact for these regular languages, so the audit never guesses.

Character sets are kept symbolic (a finite set, or the complement of one) because the alphabet
is all of Unicode.
"""

from __future__ import annotations

import dataclasses
from collections import deque

from freshcache.audit.model import HoleKind, SymText
from freshcache.keys import SEGMENT_SEPARATOR


@dataclasses.dataclass(frozen=True, slots=True)
class CharSet:
    chars: frozenset[str]
    negated: bool  # True: every character except ``chars``

    def intersects(self, other: CharSet) -> bool:
        if not self.negated and not other.negated:
            return bool(self.chars & other.chars)
        if self.negated and other.negated:
            return True  # two co-finite sets of an infinite alphabet always meet
        pos, neg = (self, other) if not self.negated else (other, self)
        return bool(pos.chars - neg.chars)

    def contains(self, ch: str) -> bool:
        return (ch in self.chars) != self.negated


ANY = CharSet(frozenset(), negated=True)
#: What an escaped value can contain: never a separator or a glob character.
SEGMENT_CHAR = CharSet(frozenset(":*?[]\\"), negated=True)


@dataclasses.dataclass(frozen=True, slots=True)
class Item:
    chars: CharSet
    repeat: bool  # False: exactly one character; True: zero or more


def _literal(text: str) -> list[Item]:
    return [Item(CharSet(frozenset(ch), negated=False), repeat=False) for ch in text]


def _glob(text: str) -> list[Item]:
    """Redis glob syntax: ``*``, ``?``, ``[abc]``, ``[^a-z]``, ``\\x``."""
    items: list[Item] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "*":
            items.append(Item(ANY, repeat=True))
        elif ch == "?":
            items.append(Item(ANY, repeat=False))
        elif ch == "\\" and i + 1 < len(text):
            i += 1
            items.extend(_literal(text[i]))
        elif ch == "[":
            end = text.find("]", i + 2)  # "[]...]": a leading ']' is a member
            if end < 0:
                items.extend(_literal(ch))
            else:
                items.append(Item(_charclass(text[i + 1 : end]), repeat=False))
                i = end
        else:
            items.extend(_literal(ch))
        i += 1
    return items


def _charclass(body: str) -> CharSet:
    negated = body.startswith("^")
    if negated:
        body = body[1:]
    chars: set[str] = set()
    i = 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            chars.add(body[i + 1])
            i += 2
        elif i + 2 < len(body) and body[i + 1] == "-":
            lo, hi = sorted((ord(body[i]), ord(body[i + 2])))
            chars.update(chr(c) for c in range(lo, min(hi, lo + 0x10000) + 1))
            i += 3
        else:
            chars.add(body[i])
            i += 1
    return CharSet(frozenset(chars), negated)


def _hole_items(kind: HoleKind) -> list[Item]:
    if kind in (HoleKind.RAW, HoleKind.UNKNOWN):
        return [Item(ANY, repeat=True)]  # may contain anything, ':' and '*' included
    # Escaped values and the hash: one or more characters of a single segment.
    return [Item(SEGMENT_CHAR, repeat=False), Item(SEGMENT_CHAR, repeat=True)]


def compile_key(key: SymText) -> list[Item]:
    """A key template: literal text is literal (keys never contain glob characters)."""
    items: list[Item] = []
    for part in key.parts:
        items.extend(_literal(part) if isinstance(part, str) else _hole_items(part.kind))
    return items


def compile_pattern(pattern: SymText) -> list[Item]:
    """A pattern: literal text is glob syntax; a raw value may itself hold wildcards."""
    items: list[Item] = []
    for part in pattern.parts:
        items.extend(_glob(part) if isinstance(part, str) else _hole_items(part.kind))
    return items


def _closure(items: list[Item], i: int) -> list[int]:
    """States reachable from ``i`` without reading: skip any run of repeat items."""
    states = [i]
    while i < len(items) and items[i].repeat:
        i += 1
        states.append(i)
    return states


def intersects(a: list[Item], b: list[Item]) -> bool:
    """Is there one string that both item sequences describe?"""
    start = [(i, j) for i in _closure(a, 0) for j in _closure(b, 0)]
    seen = set(start)
    queue = deque(start)
    while queue:
        i, j = queue.popleft()
        if i == len(a) and j == len(b):
            return True
        if i == len(a) or j == len(b):
            continue
        x, y = a[i], b[j]
        if not x.chars.intersects(y.chars):
            continue
        # Reading one character: a repeat item may stay where it is.
        for ni in (_closure(a, i) if x.repeat else []) + _closure(a, i + 1):
            for nj in (_closure(b, j) if y.repeat else []) + _closure(b, j + 1):
                if (ni, nj) not in seen:
                    seen.add((ni, nj))
                    queue.append((ni, nj))
    return False


#: Stands for the unknown text of a hole when asking "does the pattern match *every* key?".
#: It is a character no literal or class in a pattern names, so only '*', '?' and negated
#: classes match it, exactly those that match any value a hole may take.
_OPAQUE = "\x00"


def covers_all(key: SymText, pattern: SymText) -> bool:
    """Does a pattern without holes match every key of the template ``key``?"""
    if not pattern.is_literal:
        return False
    text = "".join(p if isinstance(p, str) else _OPAQUE for p in key.parts)
    return intersects(_literal(text), compile_pattern(pattern))


def matches(key: SymText, pattern: SymText) -> bool:
    """Can ``pattern`` match at least one key of the template ``key``?"""
    return intersects(compile_key(key), compile_pattern(pattern))


def segments_of(text: SymText) -> int:
    """Number of ':'-separated segments of the literal text (holes never add one)."""
    return sum(p.count(SEGMENT_SEPARATOR) for p in text.parts if isinstance(p, str)) + 1
