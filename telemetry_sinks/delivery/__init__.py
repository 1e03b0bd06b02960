"""The delivery core shared by every network sink.

A backend adapter subclasses :class:`NetworkSink` and implements ``send_batch``;
batching, bounded queueing, retries, the disk spool, dead letters, flush/close,
fork safety and self-metrics live here once.

Modules: ``sink`` (the base class and its options), ``engine`` (queue and
worker), ``spool`` (the write-ahead log and its format), ``retry`` (backoff and
failure classification), ``deadletter``, ``metrics``, ``envelope`` (the adapter
contract's data types).
"""

from .envelope import BatchResult, Envelope, PermanentError, RetryableError
from .retry import Backoff, is_retryable_status, parse_retry_after
from .sink import NetworkSink

__all__ = [
    "Backoff",
    "BatchResult",
    "Envelope",
    "NetworkSink",
    "PermanentError",
    "RetryableError",
    "is_retryable_status",
    "parse_retry_after",
]
