"""Login throttling, per account and per address, shared by every gateway replica.

A few failures are free. After that each further failure makes the subject wait twice
as long before the next attempt (1 s, 2 s, 4 s, ...), and past a limit it is locked for a
while. While a subject waits, its attempts are refused without checking the password, so
guessing gets no faster by trying harder. A success clears the account's record.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_servicekit.db import utcnow
from edgecloud_servicekit.problems import TooManyRequests

from .models import LoginThrottle


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free_failures: int
    lock_after: int
    window: timedelta
    lock_for: timedelta

    def blocked_until(self, failures: int, now: datetime) -> datetime | None:
        if failures >= self.lock_after:
            return now + self.lock_for
        if failures > self.free_failures:
            return now + timedelta(seconds=2 ** (failures - self.free_failures - 1))
        return None


def subjects(username: str, address: str) -> dict[str, str]:
    return {"account": f"user:{username.lower()}", "address": f"addr:{address}"}


async def check(
    *, session: AsyncSession, username: str, address: str, policies: dict[str, ThrottlePolicy]
) -> None:
    """Refuse the attempt (429) while the account or the address has to wait."""
    now = utcnow()
    for kind, subject in subjects(username, address).items():
        row = await session.get(LoginThrottle, subject)
        if row is None or row.blocked_until is None or row.blocked_until <= now:
            continue
        wait = max(1, int((row.blocked_until - now).total_seconds() + 0.999))
        locked = row.failures >= policies[kind].lock_after
        what = "this account" if kind == "account" else "this address"
        if locked:
            raise TooManyRequests(
                f"too many failed sign-ins for {what}: locked, try again in {wait} s",
                retry_after=wait,
                code="login_locked",
            )
        raise TooManyRequests(
            f"too many failed sign-ins for {what}: slow down, try again in {wait} s",
            retry_after=wait,
            code="login_throttled",
        )


async def record_failure(
    *, session: AsyncSession, username: str, address: str, policies: dict[str, ThrottlePolicy]
) -> None:
    now = utcnow()
    for kind, subject in subjects(username, address).items():
        policy = policies[kind]
        row = await session.get(LoginThrottle, subject, with_for_update=True)
        if row is None:
            row = LoginThrottle(subject=subject, failures=0, window_started_at=now)
            session.add(row)
        elif now - row.window_started_at > policy.window and (
            row.blocked_until is None or row.blocked_until <= now
        ):
            row.failures, row.window_started_at = 0, now
        row.failures += 1
        row.blocked_until = policy.blocked_until(row.failures, now)


async def clear_account(*, session: AsyncSession, username: str) -> None:
    await session.execute(
        delete(LoginThrottle).where(LoginThrottle.subject == f"user:{username.lower()}")
    )


async def prune(*, session: AsyncSession, older_than: datetime) -> None:
    stale = select(LoginThrottle.subject).where(
        LoginThrottle.window_started_at < older_than,
        (LoginThrottle.blocked_until.is_(None)) | (LoginThrottle.blocked_until < older_than),
    )
    await session.execute(delete(LoginThrottle).where(LoginThrottle.subject.in_(stale)))
