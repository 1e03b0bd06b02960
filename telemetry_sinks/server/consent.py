"""The user's consent, as the collector records and enforces it.

A person's choice ("granted" or "denied", or none yet) is kept in a first-party
cookie of the collector, :data:`COOKIE`, set by ``POST /api/consent`` (JSON from
the browser module, or the plain form of the ``GET /`` page, which needs no
JavaScript).  Global Privacy Control (the ``Sec-GPC: 1`` request header) counts as
a denial for opt-out and opt-in schemas unless the person explicitly granted.

Each schema's mode comes from the operator's policy (:data:`~telemetry_sinks.policy.CONSENT_MODES`):

================  =================  ================  ==================
mode              no choice          granted           denied (or GPC)
================  =================  ================  ==================
``required``      required           required          required
``opt-out``       granted            granted           denied
``opt-in``        pending            granted           denied
================  =================  ================  ==================

Events are recorded in the states ``required`` and ``granted`` only.  The same
table is implemented by the browser module, which sends nothing the collector
would drop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

COOKIE = "telemetry_sinks_consent"
CHOICES = ("granted", "denied")
RECORDING_STATES = ("required", "granted")


def consent_state(mode: str, choice: str | None, gpc: bool) -> str:
    """The state of one schema: ``required``, ``granted``, ``denied`` or ``pending``."""
    if mode == "required":
        return "required"
    if choice == "granted":
        return "granted"
    if choice == "denied" or gpc:
        return "denied"
    return "granted" if mode == "opt-out" else "pending"


@dataclass(frozen=True)
class UserConsent:
    """What one request says about its user: the stored choice (and when), and GPC."""

    choice: str | None = None
    at: int | None = None  # Unix time of the choice
    gpc: bool = False

    def state(self, mode: str) -> str:
        return consent_state(mode, self.choice, self.gpc)

    def permits(self, mode: str) -> bool:
        """Whether an event of a schema in ``mode`` may be recorded for this user."""
        return self.state(mode) in RECORDING_STATES


def parse_cookie(value: str | None) -> tuple[str | None, int | None]:
    """``(choice, unix_time)`` from the cookie value ``granted.1735689600``; (None, None) if unusable."""
    if not value:
        return None, None
    choice, _, at = value.partition(".")
    if choice not in CHOICES:
        return None, None
    return choice, int(at) if at.isdigit() else None


def cookie_value(choice: str, now: float | None = None) -> str:
    return f"{choice}.{int(time.time() if now is None else now)}"


def from_request(request: Any) -> UserConsent:
    """The :class:`UserConsent` of a tornado request (its cookie and ``Sec-GPC`` header)."""
    morsel = request.cookies.get(COOKIE)
    choice, at = parse_cookie(morsel.value if morsel is not None else None)
    gpc = request.headers.get("Sec-GPC", "").strip() == "1"
    return UserConsent(choice, at, gpc)


def schema_states(eventlog: Any, user: UserConsent) -> dict[str, dict[str, str]]:
    """``{schema_id: {"mode", "state"}}`` for every registered schema the policy records."""
    out = {}
    for sid in sorted({sid for sid, _ in eventlog.schemas}):
        mode = eventlog.consent_mode(sid)
        if mode is not None:
            out[sid] = {"mode": mode, "state": user.state(mode)}
    return out


def consent_body(eventlog: Any, user: UserConsent) -> dict[str, Any]:
    """The JSON answer of ``GET``/``POST /api/consent``."""
    default = eventlog.default_consent
    return {
        "choice": user.choice,
        "choice_time": user.at,
        "gpc": user.gpc,
        "default": {"mode": default, "state": user.state(default)},
        "schemas": schema_states(eventlog, user),
    }
