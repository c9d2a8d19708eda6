"""Detectors that turn a stream of readings into a trigger that fires once per episode.

They are pure: every reading comes with the monotonic time it was taken at, so tests drive
time themselves. Each fires (``observe`` returns True) once when its condition is met, and
then stays :attr:`~Detector.tripped` while the condition lasts; the monitor retries a
failed request only while that is so.

SustainedPressure   a gauge at or over a threshold for a while (hysteresis, cooldown)
ConsecutiveFailures a check failing so many times in a row (cooldown)
CounterGrowth       an error counter grown by so much since the last time it fired
RisingEdge          a flag that went up (an operator's drain)
"""

import math
from dataclasses import dataclass
from typing import Protocol


class Detector(Protocol):
    @property
    def tripped(self) -> bool:
        """Has it fired, with the condition still on?"""
        ...


def _check_duration(name: str, seconds: float) -> None:
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, not {seconds}")


@dataclass(frozen=True)
class Limit:
    """At or over ``threshold`` for ``for_s`` seconds fires; re-armed under ``clear_below``."""

    threshold: float
    clear_below: float
    for_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold) and self.threshold >= 0):
            raise ValueError(f"threshold must be a finite number >= 0, not {self.threshold}")
        if not (math.isfinite(self.clear_below) and 0 <= self.clear_below <= self.threshold):
            raise ValueError(
                f"clear_below must be between 0 and the threshold ({self.threshold}), "
                f"not {self.clear_below}"
            )
        _check_duration("for_s", self.for_s)


class _Cooldown:
    def __init__(self, cooldown_s: float) -> None:
        _check_duration("cooldown_s", cooldown_s)
        self._cooldown_s = cooldown_s
        self._fired_at: float | None = None

    def _cooling(self, at: float) -> bool:
        return self._fired_at is not None and at - self._fired_at < self._cooldown_s


class SustainedPressure(_Cooldown):
    """Fires when the value stays at or over ``threshold`` for ``for_s`` seconds.

    A reading under the threshold starts the wait again, so short blips fire nothing. After
    firing it fires again only once the value went under ``clear_below`` (a load hovering
    around the threshold does not fire on every crossing), and not within ``cooldown_s`` of
    the last time (one long overload does not ask for a migration every few seconds).
    """

    def __init__(
        self, threshold: float, clear_below: float, for_s: float, *, cooldown_s: float = 0.0
    ) -> None:
        super().__init__(cooldown_s)
        self.limit = Limit(threshold, clear_below, for_s)
        self.over_since: float | None = None
        """When the current run of readings at or over the threshold began."""
        self._armed = True

    @property
    def tripped(self) -> bool:
        return not self._armed

    def observe(self, at: float, value: float) -> bool:
        """Take a reading; True when it fires."""
        if value < self.limit.clear_below:
            self._armed = True
        if value < self.limit.threshold:
            self.over_since = None
            return False
        if self.over_since is None:
            self.over_since = at
        if not self._armed or at - self.over_since < self.limit.for_s or self._cooling(at):
            return False
        self._armed, self._fired_at = False, at
        return True


class ConsecutiveFailures(_Cooldown):
    """Fires when a check has failed ``limit`` times in a row; a success re-arms it."""

    def __init__(self, limit: int, *, cooldown_s: float = 0.0) -> None:
        super().__init__(cooldown_s)
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit = limit
        self.streak = 0
        self._armed = True

    @property
    def tripped(self) -> bool:
        return not self._armed

    def observe(self, at: float, ok: bool) -> bool:
        if ok:
            self.streak, self._armed = 0, True
            return False
        self.streak += 1
        if not self._armed or self.streak < self.limit or self._cooling(at):
            return False
        self._armed, self._fired_at = False, at
        return True


class CounterGrowth(_Cooldown):
    """Fires when a cumulative error counter grew by ``limit`` since its first reading or
    since it last fired. Errors do not heal: once fired it stays tripped."""

    def __init__(self, limit: int, *, cooldown_s: float = 0.0) -> None:
        super().__init__(cooldown_s)
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit = limit
        self.baseline: int | None = None
        self._fired = False

    @property
    def tripped(self) -> bool:
        return self._fired

    def observe(self, at: float, count: int) -> bool:
        # Errors from before the agent started were already there: only growth counts. A
        # counter that went down was reset (a new device, a reboot): it is the new baseline.
        if self.baseline is None or count < self.baseline:
            self.baseline = count
            return False
        if count - self.baseline < self.limit or self._cooling(at):
            return False
        self.baseline, self._fired, self._fired_at = count, True, at
        return True


class RisingEdge:
    """Fires when a flag goes up (also when it is up at the first reading); tripped while
    it stays up."""

    def __init__(self) -> None:
        self._up = False

    @property
    def tripped(self) -> bool:
        return self._up

    def observe(self, up: bool) -> bool:
        fired = up and not self._up
        self._up = up
        return fired
