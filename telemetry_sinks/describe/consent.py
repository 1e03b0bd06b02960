"""The consent part of the page: the reader's choice, what it means per kind of event, a form.

Built as blocks of :mod:`.page` (every sentence here, once); the collector renders it
into the HTML page at ``GET /`` for a browser that can post the plain form (no
JavaScript) to its consent endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping

from .page import Block, Bullets, Form, Heading, Para, Runs, Section, Strong

#: What a schema's consent mode means for the reader.
MODE_WORDS = {
    "required": "always recorded: the operator offers no way to turn it off",
    "opt-out": "recorded unless you turn it off",
    "opt-in": "recorded only if you allow it",
}
#: What the reader's current state means for one kind of event.
STATE_WORDS = {
    "required": "recorded (required)",
    "granted": "recorded",
    "denied": "not recorded",
    "pending": "not recorded until you allow it",
}


def consent_section(
    default_mode: str,
    choice: str | None,
    gpc: bool,
    schemas: Mapping[str, Mapping[str, str]],
    titles: Mapping[str, str],
    action: str,
    hidden: Mapping[str, str] | None = None,
    kept: str = "in a cookie of this service, in this browser; turning recording off also stops pages "
    "that use this service from sending events",
    locked: bool = False,
) -> Section:
    """The reader's current choice, what it means for each kind of event (``schemas``:
    ``{schema_id: {"mode", "state"}}``), and a form posting ``choice=granted|denied|clear``
    (and the ``hidden`` fields) to ``action``.

    ``kept`` says where the choice is kept; ``locked``: the administrator made it, no form."""
    if locked:
        current = ("Your administrator allowed recording for everyone." if choice == "granted"
                   else "Your administrator turned recording off for everyone.")
    elif choice == "granted":
        current = "You allowed recording."
    elif choice == "denied":
        current = "You turned recording off."
    else:
        current = "You have not made a choice."
    if gpc and choice != "granted":
        current += (" Your browser sends Global Privacy Control, which counts as turning recording off "
                    "(except for what the operator requires) unless you allow it here.")
    blocks: list[Block] = [Heading(2, ["Your choice"], "consent-title"), Para([Strong(current)])]
    if schemas:
        items: list[Runs] = []
        for sid, entry in schemas.items():
            mode = MODE_WORDS.get(entry["mode"], entry["mode"])
            state = STATE_WORDS.get(entry["state"], entry["state"])
            items.append([Strong(titles.get(sid) or sid), f": {mode}; now ", Strong(state), "."])
        blocks.append(Bullets(items))
    if locked:
        blocks.append(Para(["Your administrator made this choice; it cannot be changed here."]))
    elif any(entry["mode"] != "required" for entry in schemas.values()):
        buttons = [("granted", "Allow recording"), ("denied", "Turn recording off")]
        if choice is not None:
            buttons.append(("clear", "Forget my choice"))
        blocks += [
            Form(action, "choice", buttons, list((hidden or {}).items())),
            Para([f"Your choice is kept {kept}."], muted=True),
        ]
    else:
        blocks.append(Para(["Every kind of event recorded here is required by the operator: there is no "
                            "choice to make."]))
    blocks.append(Para([f"Default for kinds of events without their own setting: "
                        f"{MODE_WORDS.get(default_mode, default_mode)}."], muted=True))
    return Section("consent", "consent", blocks, labelled_by="consent-title")


__all__ = ["MODE_WORDS", "STATE_WORDS", "consent_section"]
