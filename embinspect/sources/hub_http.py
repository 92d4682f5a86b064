"""HTTP to the Hub, bounded in time and size, for every request embinspect makes or has
huggingface_hub make (``HubRepo`` runs each inside ``bounded``).

One number, ``EMBINSPECT_HTTP_TIMEOUT`` seconds (T), bounds every wait:

- connecting, and each read: T seconds (a stalled body ends there);
- a metadata answer (the model API, a HEAD, a header range, a small JSON file) has an
  overall deadline of T seconds from its request, and at most ``METADATA_MAX_BYTES``;
- a request that got no answer at all (a timeout, a dropped connection) is not sent
  again in the same call: huggingface_hub would, for half a minute;
- a file or tensor body has no overall deadline, so a large download finishes, but it
  must bring at least ``MIN_RATE`` bytes a second over each T-second window: a server
  that trickles a byte every two seconds never stalls a read, and is stopped here.

A 408, 429 or 5xx answer is raised as ``ServerBusy`` (with its ``Retry-After``) before
huggingface_hub sees it, and every guard raises a ``Tripped`` error that huggingface_hub
does not retry: ``with_retries`` is the one place that retries, a bounded number of
times, so the whole command stays bounded. The guard lives in the shared session's event
hooks and does nothing outside ``bounded``, so other users of huggingface_hub in the same
process are unaffected.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TypeVar

import httpx2
from huggingface_hub.utils import get_session

from embinspect.text import brief

# A body slower than this, averaged over a window of T seconds, is a trickle.
MIN_RATE = 1024  # bytes per second
# The largest metadata answer read (the file list of a repo of thousands of files is a few MB).
METADATA_MAX_BYTES = 64 << 20
# Small files fetched whole under the metadata deadline (config.json and the like).
SMALL_FILE_BYTES = 1 << 20
# Attempts at one request answered 408, 429 or 5xx, with a backoff between them.
ATTEMPTS = 5
# Test-only: the first backoff in seconds (doubling, capped at T); the suite sets it small.
BACKOFF_VARIABLE = "EMBINSPECT_HTTP_BACKOFF"
_RETRY_STATUSES = frozenset({408, 429})
_STARTED = "embinspect.started"
_INSTALLING = threading.Lock()

T = TypeVar("T")


class Tripped(httpx2.TransportError):
    """A guard stopped the request; huggingface_hub retries none of these."""


class Stalled(Tripped):
    """No byte came for T seconds."""


class NoAnswer(Tripped):
    """A request sent again after its last try got no answer at all (a timeout, a refused
    or dropped connection): huggingface_hub retries those itself, for half a minute."""


class Trickle(Tripped):
    """A body came slower than MIN_RATE over a T-second window."""


class DeadlinePassed(Tripped):
    """A metadata answer took longer than T seconds in all."""


class TooLong(Tripped):
    """A metadata answer larger than METADATA_MAX_BYTES."""


class Compressed(Tripped):
    """A range answered with a Content-Encoding: its length says nothing about the range."""


class ServerBusy(Tripped):
    """A 408, 429 or 5xx answer; ``retry_after`` is the server's wait, capped at T, or None."""

    def __init__(self, status: int, retry_after: float | None, request: httpx2.Request) -> None:
        super().__init__(f"the server answered {status}", request=request)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Policy:
    timeout: float
    metadata: bool  # an overall deadline and a size cap, rather than the trickle guard
    limit: int | None  # the most bytes a successful answer may bring (a file's listed size)
    # Requests (method, URL) sent and not answered yet, in this block.
    unanswered: set[tuple[str, str]] = field(default_factory=set)


_policy: ContextVar[_Policy | None] = ContextVar("embinspect_http_policy", default=None)


@contextmanager
def bounded(timeout: float, *, metadata: bool, limit: int | None = None) -> Iterator[None]:
    """Every request made in this thread inside the block is bounded as the module says;
    ``limit``: the most bytes of a successful answer (a whole file's size, when known)."""
    _install(get_session())
    token = _policy.set(_Policy(timeout, metadata, limit))
    try:
        yield
    finally:
        _policy.reset(token)


def with_retries(call: Callable[[], T], timeout: float) -> T:
    """``call()``, again after a backoff while it fails with ServerBusy, ATTEMPTS times at most."""
    wait = _first_backoff()
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return call()
        except Exception as err:
            busy = busy_in(err)
            if busy is None or attempt == ATTEMPTS:
                raise
            pause = busy.retry_after if busy.retry_after is not None else wait
            time.sleep(min(pause, timeout))
            wait = min(wait * 2, timeout)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def busy_in(err: BaseException) -> ServerBusy | None:
    """The ServerBusy behind ``err`` (huggingface_hub wraps it in its own errors), if any."""
    return next((e for e in causes(err) if isinstance(e, ServerBusy)), None)


def causes(err: BaseException) -> Iterator[BaseException]:
    """``err`` and what it was raised from (or during), outermost first."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_backoff() -> float:
    try:
        return max(0.0, float(os.environ.get(BACKOFF_VARIABLE, "") or 1.0))
    except ValueError:
        return 1.0


# --- the session's hooks ----------------------------------------------------------------


def _install(session: httpx2.Client) -> None:
    """Add the hooks to huggingface_hub's shared session (once; it may be recreated)."""
    with _INSTALLING:  # header reads run in threads
        hooks = session.event_hooks
        if _on_request in hooks["request"] and _on_response in hooks["response"]:
            return
        if _on_request not in hooks["request"]:
            hooks["request"].append(_on_request)
        if _on_response not in hooks["response"]:
            hooks["response"].append(_on_response)
        session.event_hooks = hooks


def _on_request(request: httpx2.Request) -> None:
    policy = _policy.get()
    if policy is None:
        return
    seconds = policy.timeout
    request.extensions["timeout"] = {
        "connect": seconds,
        "read": seconds,
        "write": seconds,
        "pool": seconds,
    }
    request.extensions.setdefault(_STARTED, time.monotonic())
    key = (request.method, str(request.url))
    if key in policy.unanswered:
        raise NoAnswer(f"no answer within {seconds:g} s", request=request)
    policy.unanswered.add(key)
    if "range" in request.headers:
        request.headers["Accept-Encoding"] = "identity"


def _on_response(response: httpx2.Response) -> None:
    policy = _policy.get()
    if policy is None:
        return
    request = response.request
    policy.unanswered.discard((request.method, str(request.url)))
    status = response.status_code
    if status in _RETRY_STATUSES or 500 <= status <= 599:
        retry_after = _retry_after(response.headers.get("Retry-After"), policy.timeout)
        response.close()
        raise ServerBusy(status, retry_after, request)
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if "range" in request.headers and encoding not in ("", "identity"):
        response.close()
        raise Compressed(
            f"a range answered with Content-Encoding {brief(encoding)}", request=request
        )
    metadata = policy.metadata or request.method == "HEAD" or request.url.path.startswith("/api/")
    # A range's length is checked against the range by its reader; any other answer's here.
    limit = None
    if "range" not in request.headers and 200 <= status <= 299:
        limit = policy.limit if policy.limit is not None else METADATA_MAX_BYTES
        if not metadata and policy.limit is None:
            limit = None  # a body of unknown size: the trickle guard only
    length = response.headers.get("Content-Length", "").strip()
    if limit is not None and length.isdigit() and int(length) > limit:
        response.close()
        raise TooLong(f"an answer of {int(length):,} bytes (at most {limit:,})")
    started = request.extensions.get(_STARTED, time.monotonic())
    response.stream = _GuardedStream(response.stream, policy.timeout, metadata, started, limit)


def _retry_after(value: str | None, cap: float) -> float | None:
    """The seconds of a ``Retry-After: SECONDS`` header, capped (a date is ignored)."""
    if value is None or not value.strip().isdigit():
        return None
    return min(float(value.strip()), cap)


class _GuardedStream(httpx2.SyncByteStream):
    """A response body that raises a Tripped error as soon as a bound is passed."""

    def __init__(
        self,
        inner: httpx2.SyncByteStream,
        timeout: float,
        metadata: bool,
        started: float,
        limit: int | None,
    ) -> None:
        self._inner = inner
        self._limit = limit
        self._timeout = timeout
        self._metadata = metadata
        self._started = started

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._inner)
        total, window, window_start = 0, 0, time.monotonic()
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except httpx2.ReadTimeout as err:
                raise Stalled(f"no byte for {self._timeout:g} s") from err
            now = time.monotonic()
            total += len(chunk)
            if self._limit is not None and total > self._limit:
                raise TooLong(f"more than {self._limit:,} bytes")
            if self._metadata:
                if now - self._started > self._timeout:
                    raise DeadlinePassed(f"not answered within {self._timeout:g} s")
            else:
                window += len(chunk)
                if now - window_start >= self._timeout:
                    if window < MIN_RATE * (now - window_start):
                        raise Trickle(
                            f"{window:,} bytes in {now - window_start:.1f} s, under "
                            f"{MIN_RATE:,} bytes a second"
                        )
                    window, window_start = 0, now
            yield chunk

    def close(self) -> None:
        self._inner.close()
