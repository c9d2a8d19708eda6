"""Login throttling that slows guessing without letting anyone lock someone else out.

Shared by every gateway replica (the counts are rows in the database), and built after
OWASP's authentication guidance: throttle the *guesser*, not the *account*, because a
lockout keyed on the account alone is a denial of service anyone can aim at anyone
(``admin`` included) by typing wrong passwords.

Three budgets are kept, each a row keyed by its subject:

``pair``    one account from one client (its address; an IPv6 client by its /64, which
            one machine can fill). A few failures are free, then each further one makes
            this client wait twice as long for this account (1 s, 2 s, 4 s, ... up to a
            ceiling). This is what stops a single guesser.
``address`` one client across every account: a higher budget, the same growing waits.
            Stops spraying one common password over many accounts.
``account`` one account across every client: a much higher budget, and waits with a low
            ceiling. It slows a guesser spread over many addresses, but is *never applied
            to a client with a clean record for the account* (no failure for it in the
            window): the owner signing in from their own machine is not stopped by
            strangers' failures elsewhere. A botnet gets one guess per fresh address while
            the account is hot, then waits like anyone else.

None of them locks: every wait is bounded, and the wait is only ever the guesser's own,
or (account budget) of clients that are guessing too.

Check-then-act would let a burst of parallel guesses through before the first failure is
written. Here an attempt is *counted before its password is checked*, in the statement
that reads the count (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``, which holds the
row's lock until the counting transaction commits, on PostgreSQL and on SQLite alike).
An attempt the count refuses is rolled back (it is not counted, and its password is
never checked); an attempt that turns out right is forgiven afterwards (:func:`forgive`).
So of N parallel guesses at most the budget reach the password check.

Refusals are 429 ``login_throttled`` with ``Retry-After``.
"""

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_servicekit.db import upsert, utcnow
from edgecloud_servicekit.problems import TooManyRequests

from .models import LoginThrottle

PAIR, ADDRESS, ACCOUNT = "pair", "address", "account"


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free_failures: int
    """Failures in a window that cost nothing."""
    max_delay: timedelta
    """The longest a subject is made to wait after one failure."""
    window: timedelta
    """Counting starts again from zero this long after the first failure counted (once no
    wait is running)."""

    def blocked_until(self, failures: int, now: datetime) -> datetime | None:
        """When the next attempt may come, after the ``failures``-th failure."""
        if failures <= self.free_failures:
            return None
        doublings = min(failures - self.free_failures - 1, 40)
        return now + min(timedelta(seconds=2**doublings), self.max_delay)


def client_of(address: str) -> str:
    """The client an address stands for: an IPv6 host by its /64 (one machine is given
    a whole /64 and may use any address in it), anything else as it is."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:100]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def subjects(username: str, address: str) -> dict[str, str]:
    account, client = username.lower(), client_of(address)
    return {
        PAIR: f"pair:{account}|{client}",
        ADDRESS: f"addr:{client}",
        ACCOUNT: f"user:{account}",
    }


_WHAT = {PAIR: "this account from here", ADDRESS: "this address", ACCOUNT: "this account"}


async def _count(
    session: AsyncSession, subject: str, policy: ThrottlePolicy, now: datetime
) -> tuple[int, datetime | None]:
    """Count one attempt against ``subject``; its count and the wait it was under before."""
    table = LoginThrottle.__table__
    row = LoginThrottle
    restart = (row.window_started_at < now - policy.window) & (
        row.blocked_until.is_(None) | (row.blocked_until <= now)
    )
    statement = upsert(
        session,
        table,  # type: ignore[arg-type]
        index_elements=["subject"],
        update={
            "failures": case((restart, 1), else_=row.failures + 1),
            "window_started_at": case((restart, now), else_=row.window_started_at),
        },
    ).values(subject=subject, failures=1, window_started_at=now, blocked_until=None)
    result = await session.execute(
        statement.returning(table.c.failures, table.c.blocked_until),
        execution_options={"synchronize_session": False},
    )
    failures, blocked_until = result.one()
    return int(failures), blocked_until


async def admit(
    *, session: AsyncSession, username: str, address: str, policies: dict[str, ThrottlePolicy]
) -> None:
    """Count this attempt against each budget, or refuse it (429) while this client has to
    wait. Run it in a transaction of its own, committed before the password is checked:
    raising rolls the counts back, so a refused attempt is not counted."""
    now = utcnow()
    counted: dict[str, tuple[int, datetime | None]] = {}
    for kind, subject in subjects(username, address).items():
        counted[kind] = await _count(session, subject, policies[kind], now)
    clean_client = counted[PAIR][0] == 1  # no earlier failure of this client for the account
    waits = []
    for kind, (_, blocked_until) in counted.items():
        if kind == ACCOUNT and clean_client:
            continue
        if blocked_until is not None and blocked_until > now:
            waits.append((blocked_until, kind))
    if waits:
        until, kind = max(waits)
        wait = max(1, int((until - now).total_seconds() + 0.999))
        raise TooManyRequests(
            f"too many failed sign-ins for {_WHAT[kind]}: slow down, try again in {wait} s",
            retry_after=wait,
            code="login_throttled",
        )
    for kind, subject in subjects(username, address).items():
        blocked_until = policies[kind].blocked_until(counted[kind][0], now)
        if blocked_until is not None:
            await session.execute(
                update(LoginThrottle)
                .where(LoginThrottle.subject == subject)
                .values(blocked_until=blocked_until)
            )


async def forgive(*, session: AsyncSession, username: str, address: str) -> None:
    """The attempt was right: this client's record for the account is cleared, and the
    attempt is taken off the address's and the account's counts (their waits stay: a
    guesser signing in to an account of its own must not reset them)."""
    names = subjects(username, address)
    await session.execute(delete(LoginThrottle).where(LoginThrottle.subject == names[PAIR]))
    await session.execute(
        update(LoginThrottle)
        .where(
            LoginThrottle.subject.in_([names[ADDRESS], names[ACCOUNT]]),
            LoginThrottle.failures > 0,
        )
        .values(failures=LoginThrottle.failures - 1)
    )


async def prune(*, session: AsyncSession, older_than: datetime) -> None:
    stale = select(LoginThrottle.subject).where(
        LoginThrottle.window_started_at < older_than,
        (LoginThrottle.blocked_until.is_(None)) | (LoginThrottle.blocked_until < older_than),
    )
    await session.execute(delete(LoginThrottle).where(LoginThrottle.subject.in_(stale)))
