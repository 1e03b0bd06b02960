"""The request toolkit: what adapters that send one batch as several requests share.

A backend's API takes requests of bounded size, and answers for a request as a
whole or per event.  An adapter built on this module is left with three jobs:
encode a request, send it, classify the answer.  The rest is here, once:

* :func:`split_requests` cuts a sequence of items into requests of at most
  ``max_count`` items and ``max_bytes`` bytes, and optionally within a time
  window (CloudWatch Logs takes at most 24 hours per request);
* :func:`send_requests` sends requests in order through the adapter's
  ``send(request)`` and merges the outcomes into one :class:`BatchResult`.  What
  ``send`` raises decides what happens to the request:

  ===========================  ===========================================================
  ``send`` ...                 outcome
  ===========================  ===========================================================
  returns None                 every item acknowledged
  returns a BatchResult        the items it names failed (retryably or for good)
  raises RetryableError        the request, and every request after it, retried later
                               (a backend in trouble is not sent the rest of the batch);
                               an AuthError (credentials or permissions refused) also
                               marks the result's ``auth_error``
  raises PermanentError        every item of the request rejected for good
  raises RequestRefused        the request is bisected to isolate what was refused
  ===========================  ===========================================================

  Any other exception propagates (the engine retries the whole batch).

:func:`error_for_status` is the one rule for an HTTP answer that failed: what a
401/403, a 413, a 429/5xx or another 4xx means, for every adapter that talks HTTP
(or maps its backend's codes to HTTP statuses).

Items are anything with an ``event_id`` (and, for :func:`split_requests`, a
``size`` unless another ``size`` function is given): envelopes, or an adapter's
own per-event objects (a log entry, a bulk action) that carry one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import attrgetter
from typing import Any, Protocol, TypeVar

from .envelope import AuthError, BatchResult, PermanentError, RetryableError
from .retry import is_auth_status, is_retryable_status


class Item(Protocol):
    """One event in a request: anything with the id of its envelope."""

    @property
    def event_id(self) -> str: ...


T = TypeVar("T")
I = TypeVar("I", bound=Item)  # noqa: E741 - the conventional name of an item type variable

_SIZE: Callable[[Any], int] = attrgetter("size")


def split_requests(
    items: Iterable[T],
    max_count: int,
    max_bytes: int,
    size: Callable[[T], int] = _SIZE,
    *,
    time: Callable[[T], float] | None = None,
    max_span: float | None = None,
) -> Iterator[list[T]]:
    """``items`` in order, cut into requests within the limits.

    A request holds at most ``max_count`` items whose ``size(item)`` adds up to at
    most ``max_bytes`` (an item larger than that alone is a request of its own),
    and, with ``time`` and ``max_span``, items whose times lie less than
    ``max_span`` after the first item's.  ``items`` is read lazily: a caller that
    wants only the first request takes ``next()`` of the result.
    """
    request: list[T] = []
    total = 0
    first = 0.0
    for item in items:
        item_size = size(item)
        if request and (
            len(request) >= max_count
            or total + item_size > max_bytes
            or (time is not None and max_span is not None and time(item) - first >= max_span)
        ):
            yield request
            request, total = [], 0
        if not request and time is not None:
            first = time(item)
        request.append(item)
        total += item_size
    if request:
        yield request


class RequestRefused(Exception):
    """Raised by ``send``: the backend refused the request as a whole, and parts of it may pass.

    ``too_large``: the request is too big (e.g. HTTP 413), so each half is sent on
    its own, down to single items.  Otherwise something inside the request is bad
    (e.g. CloudWatch's InvalidParameterException): the halves are tried, the
    refused one is searched further, and if both halves are refused the request
    itself (its destination, or several of its events) is at fault and all of it is
    rejected.  A single refused item is rejected with ``reason``.
    """

    def __init__(self, reason: str, *, too_large: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.too_large = too_large


Send = Callable[[list[I]], "BatchResult | None"]


def send_requests(requests: Iterable[list[I]], send: Send[I]) -> BatchResult:
    """Send ``requests`` in order through ``send`` and merge the outcomes (see the module doc)."""
    result = BatchResult()
    blocked: RetryableError | None = None
    for request in requests:
        if blocked is not None:
            _retry_all(result, request, blocked)
        else:
            blocked = _attempt(request, send, result)
    return result


def error_for_status(status: int, reason: str, *, retry_after: float | None = None) -> Exception:
    """What a failed HTTP answer means for the events of its request, as an exception to raise.

    ==================  =====================================================================
    status              exception
    ==================  =====================================================================
    401, 403            :class:`AuthError`: credentials or permissions refused; retried with
                        backoff, warned about, never dead-lettered
    408, 425, 429, 5xx  :class:`RetryableError` (``retry_after`` honoured)
    413                 :class:`RequestRefused` (too large): the request is halved
    any other           :class:`PermanentError`: the events are dead-lettered
    ==================  =====================================================================
    """
    if is_auth_status(status):
        return AuthError(reason, retry_after=retry_after)
    if is_retryable_status(status):
        return RetryableError(reason, retry_after=retry_after)
    if status == 413:
        return RequestRefused(reason, too_large=True)
    return PermanentError(reason)


def _retry_all(result: BatchResult, items: Sequence[Item], error: RetryableError) -> None:
    reason = str(error)
    auth = isinstance(error, AuthError)
    for item in items:
        result.retry(item.event_id, reason, error.retry_after, auth=auth)


def _reject_all(result: BatchResult, items: Sequence[Item], reason: str) -> None:
    for item in items:
        result.reject(item.event_id, reason)


def _attempt(request: list[I], send: Send[I], result: BatchResult) -> RetryableError | None:
    """Send one request and settle its items; return the error that stops sending, if any."""
    try:
        outcome = send(request)
    except RetryableError as exc:
        _retry_all(result, request, exc)
        return exc
    except PermanentError as exc:
        _reject_all(result, request, str(exc))
        return None
    except RequestRefused as refusal:
        return _bisect(request, refusal, send, result)
    result.merge(outcome)
    return None


def _bisect(
    request: list[I], refusal: RequestRefused, send: Send[I], result: BatchResult
) -> RetryableError | None:
    """Settle a refused request by sending its halves (see :class:`RequestRefused`)."""
    if len(request) == 1:
        _reject_all(result, request, refusal.reason)
        return None
    middle = len(request) // 2
    halves = (request[:middle], request[middle:])
    if refusal.too_large:
        for index, half in enumerate(halves):
            blocked = _attempt(half, send, result)
            if blocked is not None:
                if index == 0:
                    _retry_all(result, halves[1], blocked)
                return blocked
        return None
    refused: list[tuple[list[I], RequestRefused]] = []
    for index, half in enumerate(halves):
        try:
            result.merge(send(half))
        except RequestRefused as exc:
            refused.append((half, exc))
        except RetryableError as exc:  # the backend is in trouble: retry what is unsettled
            unsettled = [*(h for h, _ in refused), *halves[index:]]
            for part in unsettled:
                _retry_all(result, part, exc)
            return exc
        except PermanentError as exc:
            _reject_all(result, half, str(exc))
    if len(refused) == 2:  # the request itself is at fault
        _reject_all(result, request, refused[0][1].reason)
        return None
    if refused:
        ((half, refusal),) = refused
        return _bisect(half, refusal, send, result)
    return None


__all__ = ["Item", "RequestRefused", "error_for_status", "send_requests", "split_requests"]
