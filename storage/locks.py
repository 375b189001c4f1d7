"""Transaction-scoped advisory locks on string keys (PostgreSQL; a no-op on SQLite).

SQLite's write transactions are serialised already (``BEGIN IMMEDIATE``). On PostgreSQL, a lookup
that must see the commit of a writer inserting the same thing right now (no row exists yet, so
``FOR UPDATE`` locks nothing) first takes ``pg_advisory_xact_lock(namespace, key)``; the lock is
held until the transaction ends. Keys are strings folded to 32 bits under a namespace of their
own (the two-int form, a lock space apart from the one-bigint form), so they never meet another
namespace's keys; a rare collision inside one namespace only makes two writers wait for each other.

One call locks its keys in ONE statement in sorted order. A transaction that takes several keys
should take them all in one call at its start: two transactions locking overlapping keys one by
one in different orders can deadlock; sorted acquisition cannot. Advisory locks are re-entrant, so
taking a key again later in the same transaction never waits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.orm import Session

ALERTS = 0x5357_414C  # "SWAL": alerts' (rule, evidence) and (rule, develops_on key) locks
_LOCK_SQL = text("SELECT count(pg_advisory_xact_lock(:ns, k)) FROM unnest(CAST(:keys AS integer[])) AS k")


def lock_keys(session: Session, namespace: int, keys: Iterable[str]) -> None:
    """PostgreSQL: lock every key in ``namespace`` until the transaction ends, sorted, at once."""
    if session.get_bind().dialect.name != "postgresql":
        return
    ints = sorted({key_int4(k) for k in keys})
    if ints:
        session.execute(_LOCK_SQL, {"ns": namespace, "keys": ints})


def key_int4(key: str) -> int:
    """The signed 32-bit lock key of a string."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big", signed=True)


__all__ = ["ALERTS", "key_int4", "lock_keys"]
