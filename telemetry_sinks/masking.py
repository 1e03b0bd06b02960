"""Secret masking: secrets (tokens, passwords, keys) replaced by ``***`` in any text we show.

"Mask" is always about secrets of the operator's configuration; removing an
event's personal data is "redact" (:mod:`telemetry_sinks.policy`).  Sinks mask
their ``repr()`` and every message that may quote an option or a client's error:
``stats()["last_error"]``, warnings, dead-letter reasons, configuration errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

MASK = "***"
#: Secrets shorter than this are not masked: "a" would mask every "a" in the text.
MIN_SECRET_LENGTH = 3
#: Longest masked text: a backend's error page must not fill a log line.
MAX_TEXT_LENGTH = 1000

_URL_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")


def mask_url_password(text: str) -> str:
    """``text`` with the user:password part of any URL in it replaced by ``***``."""
    return _URL_USERINFO.sub(rf"\1{MASK}@", text)


def strings_in(value: Any) -> Iterator[str]:
    """Every string in ``value``: the value itself, or those inside a dict or list (nested)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from strings_in(item)


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each secret (and its repr and JSON escapes) and URL passwords masked.

    A client's error may quote a value as Python or JSON would, so those forms of
    each secret are masked too; the result is cut at ``MAX_TEXT_LENGTH``.
    """
    forms: set[str] = set()
    for value in secrets:
        forms.update((value, repr(value)[1:-1], json.dumps(value)[1:-1]))
    for form in sorted(forms, key=len, reverse=True):
        if len(form) >= MIN_SECRET_LENGTH:
            text = text.replace(form, MASK)
    return mask_url_password(text)[:MAX_TEXT_LENGTH]


class MaskingLogger:
    """A ``logging.Logger`` stand-in that masks every message before it reaches ``logger``.

    For client libraries that log through a logger they are given (librdkafka's log
    lines, through confluent-kafka): their text never reaches a handler unmasked.
    """

    def __init__(self, logger: Any, masker: Callable[[str], str]) -> None:
        self.logger = logger
        self.masker = masker

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        if self.logger.isEnabledFor(level):
            text = msg % args if args else str(msg)
            self.logger.log(level, "%s", self.masker(text))


__all__ = ["MASK", "MaskingLogger", "mask", "mask_url_password", "strings_in"]
