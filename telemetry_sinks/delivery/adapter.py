"""The adapter contract: what the delivery engine needs from the code that talks to one backend.

An adapter is any object with these five members (:class:`Adapter`, a
``typing.Protocol``; nothing needs to be subclassed)::

    class MyAdapter:
        label = "my-backend"                 # the name in warnings, dead letters and metrics

        def open(self) -> None:              # connect; may raise (retried like a send)
            self.client = make_client()

        def send_batch(self, batch):         # send, then classify the answer
            response = self.client.post([e.data for e in batch])
            if response.status in (200, 201):
                return None                  # every event acknowledged
            if response.status in (401, 403):
                raise AuthError(f"HTTP {response.status}")   # credentials refused: retried
            if is_retryable_status(response.status):
                raise RetryableError(f"HTTP {response.status}",
                                     retry_after=parse_retry_after(response.retry_after))
            raise PermanentError(f"HTTP {response.status}")

        def close_backend(self) -> None:     # disconnect (best effort)
            self.client.close()

        def mask(self, text: str) -> str:    # ``text`` without the adapter's secrets
            return text.replace(self.token, "***")

        credentials_help = "its token"       # optional: what to check when credentials are refused

What the engine promises in return:

* every call runs in the engine's worker thread, one at a time, never in the
  thread that emitted the event;
* ``open()`` is called before the first ``send_batch`` and again whenever the
  connection must be made anew: after it failed (it is retried with backoff, so a
  backend that is down at start never stops the application), after a
  ``send_batch`` whose result asked for it (``BatchResult.reconnect``), and in a
  forked child, which must not reuse the parent's connections;
* ``close_backend()`` is called once after each successful ``open()`` that is
  not followed by a fork, when the connection is dropped or the engine stops;
* every text an adapter gives back (exception messages, reasons in a
  :class:`BatchResult`) goes through ``mask()`` before it reaches
  ``stats()["last_error"]``, a warning or the dead-letter file.

``send_batch`` gets the events of one batch (at most ``max_batch_events`` and
``max_batch_bytes``, see :class:`DeliveryOptions`) and answers with None (all
acknowledged), a :class:`BatchResult` naming the events that failed, or raises
:class:`PermanentError` / :class:`RetryableError` / any exception for the whole
batch (any other exception is retried).  Adapters that send a batch as several
requests build them with :mod:`telemetry_sinks.delivery.toolkit`
(``error_for_status`` classifies a failed HTTP answer).

Refused credentials or permissions are one case for every backend: the adapter
raises :class:`AuthError` (a :class:`RetryableError`) for the whole batch, or marks
events with ``BatchResult.retry(event_id, reason, auth=True)``.  The engine retries
them with backoff like any outage, never dead-letters them, counts the refusals in
``stats()["auth_failures"]`` and warns once per ``drop_report_interval``, ending
with the adapter's optional ``credentials_help`` (what an operator should check).
Both are compatible additions: an adapter without them works as before.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .envelope import BatchResult, Envelope


@runtime_checkable
class Adapter(Protocol):
    """What the delivery engine calls (see the module doc for the contract)."""

    @property
    def label(self) -> str:
        """This adapter's name in warnings, dead letters and metrics."""
        ...

    def open(self) -> None:
        """Connect to the backend."""
        ...

    def send_batch(self, batch: list[Envelope]) -> BatchResult | None:
        """Send ``batch``; None if every event was acknowledged, else a :class:`BatchResult`."""
        ...

    def close_backend(self) -> None:
        """Disconnect from the backend."""
        ...

    def mask(self, text: str) -> str:
        """``text`` with every secret of this adapter replaced by ``***``."""
        ...


__all__ = ["Adapter"]
