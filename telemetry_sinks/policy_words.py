"""The policy's actions and retention in plain words, for the people the events are about.

The describe page (:mod:`.describe`) says with these what happens to each personal
field: "your user name or account identifier (``user``) is replaced by a pseudonym",
"the client's address (``client.ip``) is kept as its network only, the last part
removed", "the time of each event is rounded down to the minute", "after 90 days, your
user name or account identifier (``user``) is removed".  The words come from the
compiled plans, the same ones the emit path applies, so the page cannot say something
the service does not do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .actions import DROP, KEEP, Action, Bucket, IpNetwork, Pseudonymize, RoundTime, Truncate

_PARTS = {8: "the last three parts", 16: "the last two parts", 24: "the last part"}


def _ip_words(action: IpNetwork) -> str:
    v4 = action.options["ipv4_prefix"]
    if v4 == 32:
        return "kept as it is"
    removed = _PARTS.get(v4, f"all but its first {v4} bits")
    return f"kept as its network only, {removed} removed"


def action_words(action: Action) -> str:
    """What ``action`` does to a value, as the end of a sentence: "is replaced by a pseudonym"."""
    if action is DROP:
        return "is removed"
    if action is KEEP:
        return "is kept"
    if isinstance(action, Pseudonymize):
        return "is replaced by a pseudonym"
    if isinstance(action, IpNetwork):
        return "is " + _ip_words(action)
    if isinstance(action, RoundTime):
        return f"is rounded down to the {action.unit}"
    if isinstance(action, Bucket):
        return f"is rounded down to a multiple of {action.size:g}"
    if isinstance(action, Truncate):
        return f"is cut to its first {action.length} character{'s' if action.length != 1 else ''}"
    return f"is changed ({action.name})"


def timestamp_words(action: RoundTime) -> str:
    return f"The time of each event is rounded down to the {action.unit}."


def age_words(seconds: float, label: str = "") -> str:
    """``7776000`` -> "90 days" (whole years, weeks, days or hours when exact)."""
    for size, unit in ((365 * 86400, "year"), (7 * 86400, "week"), (86400, "day"), (3600, "hour"),
                       (60, "minute")):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return label or f"{seconds:g} seconds"


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def grouped(
    changes: Iterable[tuple[str, Action]], subject: Callable[[str], str], prefix: str = ""
) -> list[str]:
    """One sentence per (subject, action): "Your user name (``user``, ``peers[].user``) is removed."

    ``subject(path)`` names what a property holds, in words.
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for path, action in changes:
        groups.setdefault((subject(path), action_words(action)), []).append(path)
    out = []
    for (words, verb), paths in groups.items():
        out.append(_sentence(f"{prefix}{words} ({', '.join(paths)}) {verb}"))
    return out


def retention_words(stages: Iterable[tuple[Any, list[tuple[str, Action]]]],
                    subject: Callable[[str], str]) -> list[str]:
    """Sentences for retention stages: ``[(stage, [(path, action), ...]), ...]``."""
    out = []
    for stage, changes in stages:
        if changes:
            out += grouped(changes, subject, f"after {age_words(stage.after, stage.label)}, ")
    return out


def kept_for_words(max_age: float) -> str:
    """How long a sink keeps what it stores: "deleted after 90 days"."""
    return f"deleted after {age_words(max_age)}"


#: Said once on a page that mentions pseudonyms.
PSEUDONYM_WORDS = ("A pseudonym stands for the same value every time, so that uses can be counted, without "
                   "saying whose they are.")
