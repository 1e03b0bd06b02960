"""Words for readers that the page model and the facts share: categories, phrases, lists."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..schema import UNRESTRICTED

if TYPE_CHECKING:
    from .model import PropertyInfo

#: Personal-data categories in plain words: (name, one item, what it means for a user).
CATEGORY_WORDS: dict[str, tuple[str, str, str]] = {
    UNRESTRICTED: ("no personal data", "not personal", "information that is not about you personally"),
    "user-identifier": ("user identifiers", "a user identifier", "your user name or account identifier"),
    "user-identifiable-information": (
        "identifying information",
        "identifying information",
        "information that could identify you, such as an IP address or a file name",
    ),
    "action-timestamp": ("action times", "an action time", "the exact time of something you did"),
    "content": ("content", "content", "what you write and compute, such as the code of a notebook cell and "
                "its outputs"),
}

#: Capsule fields every recorded event carries, in plain words.
CAPSULE_WORDS = "the time it was recorded, the kind of event (its schema) and the schema's version"


_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)\.\s+(?=[A-Z])")


def phrase(prop: PropertyInfo) -> str:
    """A property as a phrase: the first sentence of its description, else its name."""
    text = _SENTENCE_END.split(prop.description.strip(), 1)[0].strip().rstrip(".").strip()
    if not text:
        return prop.path
    first_word = text.split(None, 1)[0]
    if first_word[0].isupper() and not any(c.isupper() for c in first_word[1:]):
        text = text[0].lower() + text[1:]
    return text


def category_words(cat: str) -> str:
    """What a personal-data category means for the person the event is about."""
    return CATEGORY_WORDS.get(cat, (cat, cat, f"personal data of category {cat}"))[2]


def category_one(cat: str) -> str:
    return CATEGORY_WORDS.get(cat, (cat, cat, cat))[1]


def category_short(cat: str) -> str:
    return CATEGORY_WORDS.get(cat, (cat, cat, cat))[0]


def join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]




__all__ = [
    "CAPSULE_WORDS", "CATEGORY_WORDS", "category_one", "category_short", "category_words", "join", "phrase",
]
