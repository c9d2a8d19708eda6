"""Trying a transfer's request again after the network or the gateway failed it, with a
growing pause between tries."""

from collections.abc import Callable
from time import sleep

from .client import NO_ANSWER, ApiError

RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
"""The pause before each try after a failure: a minute in all, enough to ride out a gateway
restart or a short network outage. When they are used up the error stands (and an upload
says how to resume it)."""
MAX_RETRY_AFTER_S = 30.0
TRANSIENT_NO_ANSWER = frozenset({"unreachable", "timeout", "stream_ended"})


def transient(err: ApiError) -> bool:
    """Whether ``err`` may pass by itself: no answer (refused, cut off, timed out) or a 5xx
    from the gateway or a proxy. A 501 never does."""
    if err.status == NO_ANSWER:
        return err.code in TRANSIENT_NO_ANSWER
    return err.status >= 500 and err.status != 501


class Retries:
    """The tries left for one transfer; :meth:`reset` once it has made progress again."""

    def __init__(self, delays: tuple[float, ...] | None = None) -> None:
        self._delays = RETRY_DELAYS_S if delays is None else delays
        self._used = 0

    @property
    def used(self) -> int:
        return self._used

    @property
    def allowed(self) -> int:
        return len(self._delays)

    def reset(self) -> None:
        self._used = 0

    def pause(self, err: ApiError, *, announce: Callable[[float], None] | None = None) -> None:
        """Wait before trying again after ``err`` (``announce`` is told how long first);
        raise ``err`` itself when it will not pass or the tries are used up."""
        if not transient(err) or self._used >= len(self._delays):
            raise err
        delay = max(self._delays[self._used], _retry_after(err))
        self._used += 1
        if announce is not None:
            announce(delay)
        sleep(delay)


def _retry_after(err: ApiError) -> float:
    """A ``Retry-After`` in seconds (a 503 while the database reconnects), within reason."""
    value = (err.retry_after or "").strip()
    return min(float(value), MAX_RETRY_AFTER_S) if value.isdigit() else 0.0
