"""The delivery core shared by every network sink, at the bottom of the import graph.

An engine (:class:`DeliveryEngine`) is built from an adapter (any object with
``label``, ``open``, ``send_batch``, ``close_backend`` and ``mask``: the
:class:`Adapter` protocol) and plain options (:class:`DeliveryOptions`).
Batching, bounded queueing, retries, the disk spool, dead letters, flush/close,
fork safety and self-metrics live here once; adapters that split a batch into
several requests share the request toolkit (:mod:`.toolkit`).

Nothing here imports traitlets, the sinks or the EventLog: the traitlets front
end of network sinks is :class:`telemetry_sinks.sinks.network.NetworkSink`.

Modules: ``adapter`` (the contract), ``options``, ``engine`` (queue and worker),
``envelope`` (the contract's data types and event ids), ``toolkit`` (request
splitting, bisection, sending a list of requests), ``spool`` (the write-ahead
log and its format), ``retry`` (backoff and failure classification),
``deadletter``, ``replay``, ``metrics``, ``shutdown`` (the opt-in signal hook that
closes the sinks).
"""

from .adapter import Adapter
from .engine import DeliveryEngine
from .envelope import AuthError, BatchResult, Envelope, PermanentError, RetryableError
from .options import DeliveryOptions, OptionError
from .retry import Backoff, is_retryable_status, parse_retry_after
from .toolkit import RequestRefused, error_for_status, send_requests, split_requests

__all__ = [
    "Adapter",
    "AuthError",
    "Backoff",
    "BatchResult",
    "DeliveryEngine",
    "DeliveryOptions",
    "Envelope",
    "OptionError",
    "PermanentError",
    "RequestRefused",
    "RetryableError",
    "error_for_status",
    "is_retryable_status",
    "parse_retry_after",
    "send_requests",
    "split_requests",
]
