"""Destination names per event: Kafka topics, indexes, log groups and streams, log names.

A name option (:class:`NameOption`, a string trait) is a fixed name or a template
over the event:

* ``{field}`` takes a field of the capsule (or of a log record's payload); a
  field that is missing or null renders as ``unknown``;
* a backend may add fields of its own (CloudWatch's ``{hostname}``, ``{date}``,
  ...: ``extra``), computed from the event's time;
* with ``strftime=True`` (indexes), ``%Y``-style directives format the event's
  UTC time.

A rendered name is made valid by the backend's :class:`NameRule` (characters it
forbids become ``_``, the length is cut); a fixed name must be valid as it is, so
a mistake fails at construction with the name it would have become.
"""

from __future__ import annotations

import datetime as _dt
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from traitlets import TraitError, Unicode

_UTC = _dt.timezone.utc
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
#: What a broken template raises when it is rendered.
TEMPLATE_ERRORS = (ValueError, IndexError, KeyError, AttributeError, TypeError)

#: A backend's own template fields: name -> value for the event's UTC time.
ExtraFields = Mapping[str, Callable[[_dt.datetime], Any]]


@dataclass(frozen=True)
class NameRule:
    """What one backend allows in a name."""

    #: What the name is, for messages: "Kafka topic name".
    kind: str
    #: One forbidden character (a regular expression); each becomes ``_``.
    forbidden: str
    #: The longest name, in characters (in UTF-8 bytes with ``length_in_bytes``).
    max_length: int
    #: How to write a valid name, for messages.
    advice: str
    length_in_bytes: bool = False
    lowercase: bool = False
    #: Characters a name may not start with (removed).
    strip_leading: str = ""
    #: What an empty (or reserved) name becomes.
    empty: str = "_"
    reserved: tuple[str, ...] = ()

    def safe(self, name: str) -> str:
        """``name`` made valid for this backend."""
        if self.lowercase:
            name = name.lower()
        name = re.sub(self.forbidden, "_", name)
        if self.strip_leading:
            name = name.lstrip(self.strip_leading)
        if self.length_in_bytes:  # never half a character
            name = name.encode("utf-8")[: self.max_length].decode("utf-8", "ignore")
        else:
            name = name[: self.max_length]
        return self.empty if name in ("", *self.reserved) else name


class _Fields:
    """The fields a template can use: the backend's own first, then the event's."""

    __slots__ = ("payload", "when", "extra")

    def __init__(self, payload: Any, when: _dt.datetime | None, extra: ExtraFields) -> None:
        self.payload = payload if isinstance(payload, Mapping) else {}
        self.when = when
        self.extra = extra

    def __getitem__(self, key: str) -> Any:
        if key in self.extra:
            return self.extra[key](self.when)  # type: ignore[arg-type]  # render() sets a time when there are extra fields
        value = self.payload.get(key)
        return "unknown" if value is None else value


class NameTemplate:
    """A name option's value, ready to render per event (see the module doc)."""

    __slots__ = ("template", "rule", "extra", "has_fields", "has_time")

    def __init__(
        self, template: str, rule: NameRule, *, extra: ExtraFields | None = None, strftime: bool = False
    ) -> None:
        self.template = template
        self.rule = rule
        self.extra: ExtraFields = extra or {}
        #: ValueError for a broken template ("{a", "a}").
        self.has_fields = any(f is not None for _, f, _, _ in string.Formatter().parse(template))
        self.has_time = strftime and "%" in template

    @property
    def fixed(self) -> bool:
        """True when every event gets the same name (the template itself)."""
        return not (self.has_fields or self.has_time)

    def render(self, payload: Any, when: _dt.datetime | None = None) -> str:
        """The name of the event ``payload`` at ``when`` (UTC; default now); raises on a bad field."""
        if self.fixed:
            return self.template
        if when is None and (self.has_time or self.extra):
            when = _dt.datetime.now(_UTC)
        name = when.strftime(self.template) if self.has_time else self.template  # type: ignore[union-attr]  # set just above
        if self.has_fields:
            name = name.format_map(_Fields(payload, when, self.extra))
        return self.rule.safe(name)


class NameOption(Unicode):
    """A destination name option: a fixed name or a template, checked against a :class:`NameRule`."""

    def __init__(
        self,
        rule: NameRule,
        default_value: Any = None,
        *,
        extra: ExtraFields | None = None,
        strftime: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(default_value, **kwargs)
        self.rule = rule
        self.extra = extra
        self.strftime = strftime

    def template(self, value: str) -> NameTemplate:
        """``value`` (a valid value of this option) as a template."""
        return NameTemplate(value, self.rule, extra=self.extra, strftime=self.strftime)

    def validate(self, obj: Any, value: Any) -> Any:
        value = super().validate(obj, value)
        where = f"The '{self.name}' trait of a {type(obj).__name__}"
        if not value.strip():
            raise TraitError(f"{where} must not be empty.")
        try:
            template = self.template(value)
            template.render({}, _EPOCH)
        except TEMPLATE_ERRORS as exc:
            raise TraitError(f"{where} is not a valid template: {value!r} ({exc}).") from None
        safe = self.rule.safe(value)
        if template.fixed and safe != value:
            raise TraitError(
                f"{where} is not a valid {self.rule.kind}: {value!r}. {self.rule.advice} (e.g. {safe!r})."
            )
        return value


def name_template(sink: Any, option: str) -> NameTemplate | None:
    """The template of ``sink``'s name option ``option`` (None when the option is None)."""
    value = getattr(sink, option)
    if value is None:
        return None
    trait = type(sink).class_traits()[option]
    assert isinstance(trait, NameOption), f"{option} is not a NameOption"
    return trait.template(value)


__all__ = ["NameOption", "NameRule", "NameTemplate", "TEMPLATE_ERRORS", "name_template"]
