"""The pseudonym key: keyed HMAC-SHA256 pseudonyms, with a key that never shows.

A pseudonym is ``<key id>:<32 hex digits>``: the first 128 bits of
HMAC-SHA256(key, value).  The same value gives the same pseudonym under one key,
in every process that loads it (analysts count distinct users without knowing
who they are); without the key a pseudonym cannot be computed from a guessed
value.  The key id in front says which key made the pseudonym, so that keys can
be rotated: after a rotation the same value gives a different pseudonym, and
stored pseudonyms still say which key they came from.

The key is read from a file or an environment variable, never from the
configuration itself; it appears in no ``repr``, error, log, stats or page (the
key id does, and it is derived from the key only through HMAC when the operator
does not name it).  Strings are hashed as their UTF-8 bytes; any other JSON value
as its canonical JSON text (sorted keys, no spaces).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from typing import Any

from .errors import PolicyError

#: Shortest key accepted, in bytes (after stripping surrounding whitespace).
MIN_KEY_BYTES = 16
KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
#: What a pseudonym looks like: a value of this form is not pseudonymized again.
PSEUDONYM = re.compile(r"^[A-Za-z0-9._-]{1,32}:[0-9a-f]{32}$")
_GENERATE = 'python -c "import secrets; print(secrets.token_hex(32))"'
_log = logging.getLogger("telemetry_sinks.pseudonym")


class PseudonymKey:
    """An HMAC-SHA256 key and its id.  ``repr`` shows the id and where the key came from."""

    __slots__ = ("id", "source", "_inner", "_outer", "_prefix")

    def __init__(self, secret: bytes, key_id: str | None = None, source: str = "") -> None:
        secret = secret.strip()
        if len(secret) < MIN_KEY_BYTES:
            raise PolicyError(
                f"the pseudonym key{f' from {source}' if source else ''} is {len(secret)} bytes "
                f"long; use at least {MIN_KEY_BYTES} random bytes, e.g. the output of {_GENERATE}."
            )
        if len(secret) > 64:  # HMAC hashes keys longer than the block size first
            secret = hashlib.sha256(secret).digest()
        block = secret.ljust(64, b"\0")
        # HMAC's inner and outer hashes, keyed once: a pseudonym costs two copies and two updates.
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        if key_id is None or key_id == "":
            key_id = "k" + self._hmac(b"telemetry-sinks pseudonym key id")[:4].hex()
        if not KEY_ID.match(key_id):
            raise PolicyError(
                f"pseudonym key id {key_id!r} must be 1 to 32 letters, digits, '.', '_' or '-' "
                "(it is written in front of every pseudonym)."
            )
        self.id = key_id
        self.source = source
        self._prefix = key_id + ":"

    def _hmac(self, data: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def pseudonym(self, text: str) -> str:
        """The pseudonym of a string (hashed as UTF-8)."""
        inner = self._inner.copy()
        inner.update(text.encode("utf-8", "surrogatepass"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return self._prefix + outer.digest()[:16].hex()

    def pseudonym_of(self, value: Any) -> str:
        """The pseudonym of any JSON value: strings as UTF-8, others as canonical JSON."""
        if isinstance(value, str):
            return self.pseudonym(value)
        return self.pseudonym(
            json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        )

    def __repr__(self) -> str:
        where = f" from {self.source}" if self.source else ""
        return f"<PseudonymKey id={self.id!r}{where}>"

    def __reduce__(self) -> Any:
        raise TypeError(
            "a pseudonym key is not pickled; load it in each process from its file or environment "
            "variable (c.EventLog.pseudonym_key_file / pseudonym_key_env)"
        )


def load_key(file: str = "", env: str = "", key_id: str = "") -> PseudonymKey | None:
    """The key from ``file`` or from the environment variable ``env``; None when neither is set.

    Errors name the file or variable and the fix, never the content.
    """
    if file and env:
        raise PolicyError(
            "set one of pseudonym_key_file and pseudonym_key_env, not both "
            f"(file {file!r}, environment variable {env!r})."
        )
    if file:
        path = os.path.expanduser(file)
        try:
            with open(path, "rb") as stream:
                secret = stream.read(4096)
                mode = os.fstat(stream.fileno()).st_mode
        except OSError as exc:
            raise PolicyError(
                f"cannot read the pseudonym key file {path}: {exc.strerror or type(exc).__name__}. "
                f"Create it with {_GENERATE} > {path} (readable by this process only)."
            ) from None
        if mode & 0o077:
            _log.warning("the pseudonym key file %s can be read by other users (mode %o); make it readable "
                         "by this service only: chmod 600 %s", path, mode & 0o777, path)
        return PseudonymKey(secret, key_id or None, source=f"file {path}")
    if env:
        value = os.environ.get(env)
        if value is None:
            raise PolicyError(
                f"the environment variable {env} (pseudonym_key_env) is not set; set it to at least "
                f"{MIN_KEY_BYTES} random bytes, e.g. the output of {_GENERATE}."
            )
        return PseudonymKey(value.encode("utf-8", "surrogateescape"), key_id or None,
                            source=f"environment variable {env}")
    return None


def is_pseudonym(value: Any) -> bool:
    """Whether ``value`` already is a pseudonym (of any key id)."""
    # ':' 33 characters from the end first: most values are ruled out without the regular expression.
    return (isinstance(value, str) and 34 <= len(value) <= 65 and value[-33] == ":"
            and PSEUDONYM.match(value) is not None)
