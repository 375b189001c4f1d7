"""Transaction-scoped advisory locks (PostgreSQL; a no-op on SQLite).

SQLite's write transactions are serialised already (``BEGIN IMMEDIATE``). On PostgreSQL, a lookup
that must see the commit of a writer inserting the same thing right now (no row exists yet, so
``FOR UPDATE`` locks nothing) first takes ``pg_advisory_xact_lock(namespace, key)``; the lock is
held until the transaction ends. Each user has a namespace of its own (the two-int form, a lock
space apart from the one-bigint form), so keys never meet another namespace's: the band keys of
:mod:`storage.dedup_store` (64-bit hashes folded to 32 bits) and the alerts' string keys (hashed to
32 bits, :func:`lock_keys`). A rare collision inside one namespace only makes two writers wait for
each other.

One call locks its keys in ONE statement in sorted order. A transaction that takes several keys
should take them all in one call at its start: two transactions locking overlapping keys one by
one in different orders can deadlock; sorted acquisition cannot. The keys a transaction holds are
remembered (in ``session.info``, per transaction), so asking again for them, as the per-document
and per-match lookups do after a batch took them all, costs no round trip. Keys first taken inside
a savepoint are not remembered: rolling back to it would release them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.orm import Session

ALERTS = 0x5357_414C  # "SWAL": alerts' (rule, evidence) and (rule, develops_on key) locks
_LOCK_SQL = text("SELECT count(pg_advisory_xact_lock(:ns, k)) FROM unnest(CAST(:keys AS integer[])) AS k")
_TRY_SQL = text(
    "SELECT k FROM unnest(CAST(:keys AS integer[])) AS k WHERE NOT pg_try_advisory_xact_lock(:ns, k)"
)
_HELD = "storywatch.locks"


def lock_ints(session: Session, namespace: int, keys: Iterable[int]) -> None:
    """PostgreSQL: lock every signed 32-bit key in ``namespace`` until the transaction ends, sorted,
    at once (waiting for other transactions that hold one)."""
    todo = _not_held(session, namespace, keys)
    if todo:
        session.execute(_LOCK_SQL, {"ns": namespace, "keys": todo})
        _remember(session, namespace, todo)


def try_lock_ints(session: Session, namespace: int, keys: Iterable[int]) -> set[int]:
    """PostgreSQL: lock, without waiting, every key that no other transaction holds; returns the keys
    another transaction holds (never waits, so its order cannot deadlock). SQLite: none."""
    todo = _not_held(session, namespace, keys)
    if not todo:
        return set()
    taken = set(session.execute(_TRY_SQL, {"ns": namespace, "keys": todo}).scalars())
    _remember(session, namespace, [k for k in todo if k not in taken])
    return taken


def lock_keys(session: Session, namespace: int, keys: Iterable[str]) -> None:
    """:func:`lock_ints` for string keys."""
    lock_ints(session, namespace, (key_int4(k) for k in keys))


def key_int4(key: str) -> int:
    """The signed 32-bit lock key of a string."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big", signed=True)


def _held(session: Session) -> set[tuple[int, int]]:
    kept = session.info.get(_HELD)
    current = session.get_transaction()
    if kept is None or kept[0] is not current:
        kept = session.info[_HELD] = (current, set())
    held: set[tuple[int, int]] = kept[1]
    return held


def _not_held(session: Session, namespace: int, keys: Iterable[int]) -> list[int]:
    """The keys to ask PostgreSQL for, sorted; none on SQLite."""
    if session.get_bind().dialect.name != "postgresql":
        return []
    held = _held(session)
    return sorted({k for k in keys if (namespace, k) not in held})


def _remember(session: Session, namespace: int, keys: Iterable[int]) -> None:
    if not session.in_nested_transaction():
        _held(session).update((namespace, k) for k in keys)


__all__ = ["ALERTS", "key_int4", "lock_ints", "lock_keys", "try_lock_ints"]
