"""``NetworkSink``: the base class of every sink that sends events over the network.

A network sink is the traitlets front end of the delivery core
(:mod:`telemetry_sinks.delivery`), and the core's adapter at the same time:

* as a :class:`~telemetry_sinks.sinks.base.Sink` its options are traits, set by
  keyword, ``c.<SinkClass>.<option>`` or ``dictConfig``; ``emit()`` only encodes
  the payload and queues it in the sink's :class:`DeliveryEngine`;
* as the engine's :class:`~telemetry_sinks.delivery.adapter.Adapter` a subclass
  implements the backend's part and nothing else::

    class MySink(NetworkSink):
        sink_name = "my"                      # the registry name

        url = Unicode(None, allow_none=True).tag(config=True, destination=("URL host", "url"))

        def open(self):                       # connect (in the worker; retried until it works)
            self.client = make_client(self.url)

        def send_batch(self, batch):          # send one batch, classify the answer
            ...

        def close_backend(self):              # disconnect
            self.client.close()

  ``label`` and ``mask`` (secret masking) come from here: every trait tagged
  ``secret=True`` is masked, and so are the strings ``secret_fragments()``
  returns (encoded forms of secrets, e.g. basic-auth headers).

The delivery options (batching, queue bounds, spool, retries, dead letters,
close) are the fields of :class:`~telemetry_sinks.delivery.options.DeliveryOptions`;
each is a trait here with the field's name, default and help text, and the engine
gets them as one ``DeliveryOptions`` built at construction.

The engine's worker starts only once the sink is fully built (its subclass's
``__init__`` included), so an adapter never sees a half-initialised ``self``.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from typing import Any

from traitlets import Bool, CaselessStrEnum, Float, Int, TraitError, TraitType, Unicode, validate
from traitlets.traitlets import MetaHasTraits

from ..capsule import encode
from ..delivery.engine import DeliveryEngine
from ..delivery.envelope import BatchResult, Envelope
from ..delivery.options import OPTION_NAMES, DeliveryOptions, OptionError
from ..errors import SinkConfigError
from ..masking import mask, strings_in
from .base import Sink

_OWN_LOGGER = "telemetry_sinks.delivery"
_FIELDS = {option.name: option for option in fields(DeliveryOptions)}


def delivery_trait(name: str) -> Any:
    """The trait of the delivery option ``name``: its type, default and help from DeliveryOptions."""
    option = _FIELDS[name]
    default, help_text = option.default, option.metadata["help"]
    trait: TraitType
    if option.metadata.get("choices"):
        trait = CaselessStrEnum(
            list(option.metadata["choices"]), default_value=default, allow_none=True, help=help_text
        )
    elif isinstance(default, bool):
        trait = Bool(default, help=help_text)
    elif isinstance(default, int):
        trait = Int(default, help=help_text)
    elif isinstance(default, float):
        trait = Float(default, help=help_text)
    else:
        trait = Unicode(default, allow_none=True, help=help_text)
    return trait.tag(config=True)


class _StartsWhenBuilt(MetaHasTraits):
    """Starts a network sink's delivery worker after the whole ``__init__`` chain ran."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        sink = super().__call__(*args, **kwargs)
        if sink._engine is not None:
            sink._engine.start()
        return sink


class NetworkSink(Sink, metaclass=_StartsWhenBuilt):
    """A sink that queues events and delivers them from a background thread (see module doc)."""

    per_process_options = {"spool_dir": "directory"}

    # --- batching
    max_batch_events = delivery_trait("max_batch_events")
    max_batch_bytes = delivery_trait("max_batch_bytes")
    flush_interval = delivery_trait("flush_interval")
    # --- memory bounds
    max_queue_events = delivery_trait("max_queue_events")
    max_queue_bytes = delivery_trait("max_queue_bytes")
    overflow = delivery_trait("overflow")
    block_timeout = delivery_trait("block_timeout")
    # --- disk spool
    spool_dir = delivery_trait("spool_dir")
    max_spool_bytes = delivery_trait("max_spool_bytes")
    spool_segment_bytes = delivery_trait("spool_segment_bytes")
    spool_fsync = delivery_trait("spool_fsync")
    # --- retries and failures
    retry_initial_backoff = delivery_trait("retry_initial_backoff")
    retry_max_backoff = delivery_trait("retry_max_backoff")
    max_retry_time = delivery_trait("max_retry_time")
    dead_letter_file = delivery_trait("dead_letter_file")
    # --- lifecycle and reporting
    close_timeout = delivery_trait("close_timeout")
    drop_report_interval = delivery_trait("drop_report_interval")

    @validate("request_timeout", "connect_timeout", "read_timeout", "ack_timeout")
    def _more_than_zero(self, proposal: Any) -> float:
        """The backends' timeouts (each adapter declares those it has): 0 would never wait."""
        if proposal.value <= 0:
            name = proposal.trait.name
            raise TraitError(f"The '{name}' trait must be more than 0, not {proposal.value}.")
        return proposal.value

    #: None until __init__ succeeds (logging may still call flush/close on a failed sink).
    _engine: DeliveryEngine | None = None

    #: What to check when the backend refuses the sink's credentials or permissions (the
    #: engine's warning ends with it): the options and the backend's access rules.
    credentials_help = "the sink's credentials and the backend's access rules"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        try:
            delivery = DeliveryOptions(**{name: getattr(self, name) for name in OPTION_NAMES})
        except OptionError as exc:
            raise SinkConfigError(f"{type(self).__name__} option {exc.option!r} {exc.problem}") from None
        self._engine = DeliveryEngine(self, delivery)

    @property
    def delivery_options(self) -> DeliveryOptions:
        """The delivery options in force (read once, at construction)."""
        if self._engine is None:
            raise RuntimeError(f"{type(self).__name__} failed to start: it has no delivery options")
        return self._engine.options

    @property
    def effective_overflow(self) -> str:
        """The overflow policy in force (``overflow`` or its default)."""
        return self.delivery_options.effective_overflow

    # ------------------------------------------------------------------ the adapter contract

    @property
    def label(self) -> str:
        """This sink's name in warnings, dead letters and metrics: its handler name or type."""
        return self.name or self.sink_name or type(self).__name__

    def open(self) -> None:
        """Connect to the backend; called in the worker before the first send (optional)."""

    def send_batch(self, batch: list[Envelope]) -> BatchResult | None:
        """Send ``batch``; return None if all were acknowledged, else a ``BatchResult``.

        Raise ``PermanentError`` if the backend will never take the batch,
        ``RetryableError`` (optionally with ``retry_after``) or any other exception
        if it may take it later.  See :mod:`telemetry_sinks.delivery.adapter`.
        """
        raise NotImplementedError

    def close_backend(self) -> None:
        """Disconnect from the backend; called in the worker (optional)."""

    def secret_fragments(self) -> list[str]:
        """Forms of the secrets that may show in text besides their values (none here)."""
        return []

    def mask(self, text: str) -> str:
        """``text`` with secret option values, their fragments and URL passwords as ``***``.

        Strings inside secret dict or list options (headers, producer_config, ...) count
        too, and so do their repr and JSON escapes (a client's error may quote a value).
        """
        secrets = [value for name in self.trait_names(secret=True)
                   for value in strings_in(getattr(self, name, None))]
        return mask(text, [*secrets, *self.secret_fragments()])

    # ------------------------------------------------------------------ logging.Handler

    def emit(self, record: logging.LogRecord) -> None:
        # Our own warnings and whatever the worker thread logs (e.g. the backend client)
        # are not fed back into this sink: that could loop forever.
        engine = self._engine
        if engine is None or record.name.startswith(_OWN_LOGGER):
            return
        if record.thread == engine.worker_ident:
            return
        super().emit(record)

    def write_payload(self, payload: dict[str, Any]) -> None:
        self._engine.put(encode(payload))  # type: ignore[union-attr]  # set once __init__ ran

    def resend(self, data: str, event_id: str) -> None:
        """Queue an already encoded event again under its own id (dead-letter replay)."""
        self._engine.put(data, event_id)  # type: ignore[union-attr]  # set once __init__ ran

    @property
    def dead_letter_path(self) -> str | None:
        """The dead-letter file in force (``dead_letter_file``, or the one in ``spool_dir``)."""
        return self._engine.dead_letter_path if self._engine is not None else None

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]  # adds a timeout and a result
        """Wait until everything emitted so far is acknowledged by the backend or dead-lettered.

        A retry waiting out its backoff is tried at once (a backend's Retry-After is still
        honoured).  Returns False if ``timeout`` (seconds) passed first; with a
        ``spool_dir`` the events are safe on disk then.
        Without a timeout it waits at most ``close_timeout``: ``logging`` itself calls
        ``flush()`` while holding its module lock (``dictConfig``, ``logging.shutdown``),
        and must never hang on a backend that is down.  Pass ``float("inf")`` to wait
        for good.
        """
        if self._engine is None:
            return True
        if timeout is None:
            timeout = self._engine.options.close_timeout
        return self._engine.flush(None if timeout == float("inf") else timeout)

    def close(self) -> None:
        """Deliver within ``close_timeout`` what is queued and spooled, then stop the worker.

        What is left stays in the spool (without a ``spool_dir``: the dead-letter file).
        """
        try:
            if self._engine is not None:
                self._engine.close()
        finally:
            super().close()

    def backpressure(self) -> bool:
        """True when new events would soon be dropped or block: memory (and spool) nearly full.

        The collector answers 503 with Retry-After while any of its sinks says so.
        """
        return self._engine is not None and self._engine.backpressure()

    def stats(self) -> dict[str, Any]:
        """Counters: emitted, sent, retried, spooled, replayed, dead_lettered, dropped,
        auth_failures; levels: queue_events, queue_bytes, spool_bytes; and last_error (a
        string or None)."""
        if self._engine is None:
            raise RuntimeError(f"{type(self).__name__} failed to start: it has no stats")
        return self._engine.stats()


__all__ = ["NetworkSink", "delivery_trait"]
