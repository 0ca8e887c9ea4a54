"""A lease in the experiments database: which one process acts for everyone.

The rollout controller runs in every gateway worker and replica, but only the holder of
the `rollout` lease acts. A lease is one row (name, holder, expires_at); its holder
renews it on every tick, and any process takes it once it has expired (its holder
stopped or hung). Taking and renewing are one conditional write each, so of several
processes trying at once exactly one succeeds, on SQLite and PostgreSQL alike:

1. `INSERT ... ON CONFLICT (name) DO NOTHING` (the first holder ever);
2. else `UPDATE ... WHERE name = ? AND (holder = ? OR expires_at < now)`.

Clocks: `expires_at` is compared with the caller's clock, so replicas' clocks must agree
to well within the lease's duration (NTP does; leases last seconds).
"""

from __future__ import annotations

from typing import Any

from gateway.control.database import Database

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS leases (
        name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)""",
)


def acquire(db: Database, cursor: Any, name: str, holder: str, now: float, ttl_s: float) -> bool:
    """Take or renew lease `name` for `holder` until `now + ttl_s`; False if another
    holder's lease has not expired (run inside a transaction)."""
    p = db.placeholder
    cursor.execute(
        f"INSERT INTO leases (name, holder, expires_at) VALUES ({db.marks(3)})"
        " ON CONFLICT (name) DO NOTHING",
        (name, holder, now + ttl_s),
    )
    if cursor.rowcount == 1:
        return True
    cursor.execute(
        f"UPDATE leases SET holder = {p}, expires_at = {p}"
        f" WHERE name = {p} AND (holder = {p} OR expires_at < {p})",
        (holder, now + ttl_s, name, holder, now),
    )
    return bool(cursor.rowcount == 1)


def release(db: Database, cursor: Any, name: str, holder: str) -> None:
    """Give the lease up (on shutdown) so another process takes it at its next tick."""
    p = db.placeholder
    cursor.execute(
        f"UPDATE leases SET expires_at = 0 WHERE name = {p} AND holder = {p}", (name, holder)
    )


def holder(db: Database, name: str) -> tuple[str, float] | None:
    """(holder, expires_at) of lease `name`, None if nobody ever took it."""
    rows = db.fetch(f"SELECT holder, expires_at FROM leases WHERE name = {db.placeholder}", (name,))
    return (str(rows[0][0]), float(rows[0][1])) if rows else None
