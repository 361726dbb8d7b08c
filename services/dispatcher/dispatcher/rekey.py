"""Re-sealing stored values under the current data key (`bridge keys rotate`).

Every sealed value names the key that sealed it, so the work left is exactly the values not
sealed by the current key: a run picks those up batch by batch, and a run stopped half-way
(or two runs at once) leaves nothing wrong: the next run finds what is left. Each update
checks the value is still the one read, so a row the services changed meanwhile (they seal
under the current key already) is left alone. Values stored in clear before encryption
existed are sealed the same way, and the keyed hashes recomputed from the opened values.

Stored values: the directory's number, e-mail and name, and the number inside each dead
letter's event. Kafka topics cannot be rewritten: keep an old key listed until the topics'
retention has passed (docs/data-protection.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bridge.protect import DataKeys, Kind, SealError, sealed_by

ProgressFn = Callable[[int], None]

_CUSTOMER_KINDS: tuple[Kind, ...] = ("phone", "email", "name")
_EVENT_PHONE = "payload #>> '{data,customer,phone}'"
# The one value in it is fixed text.
_RESEAL_LETTER = (
    "UPDATE dead_letters SET payload = jsonb_set(payload, '{data,customer,phone}',"  # noqa: S608
    f" to_jsonb($2::text)) WHERE id = $1 AND {_EVENT_PHONE} = $3"
)


@dataclass
class RotationReport:
    customers: int = 0
    dead_letters: int = 0
    skipped: int = 0  # changed by a service between read and write: sealed by it already
    # Sealed under keys BRIDGE_DATA_KEYS does not list (by key id): left as they are.
    unreadable: dict[str, int] = field(default_factory=dict)


def _stale(column: str) -> str:
    # Not sealed by the current key ($1 is its prefix): older keys and clear legacy values.
    return f"({column} IS NOT NULL AND {column} NOT LIKE $1)"


def _customers_filter(reindex: bool) -> str:
    if reindex:
        return "TRUE"
    return " OR ".join(_stale(kind) for kind in _CUSTOMER_KINDS)


def resealed_customer(row: dict[str, Any], keys: DataKeys) -> dict[str, Any]:
    """A directory row's sealed values and keyed hashes under the current keys."""
    clear = {kind: keys.open(row[kind], kind) if row[kind] else None for kind in _CUSTOMER_KINDS}
    return {
        "phone": keys.reseal(row["phone"], "phone") if row["phone"] else None,
        "email": keys.reseal(row["email"], "email") if row["email"] else None,
        "name": keys.reseal(row["name"], "name") if row["name"] else None,
        "phone_index": keys.phone_index(clear["phone"]) if clear["phone"] else None,
        "email_index": keys.email_index(clear["email"]) if clear["email"] else None,
    }


async def pending(pool: asyncpg.Pool, keys: DataKeys, *, reindex: bool = False) -> int:
    """How many rows a rotation has left to do."""
    prefix = f"enc:{keys.current_id}:%"
    customers = await pool.fetchval(
        f"SELECT count(*) FROM customers WHERE {_customers_filter(reindex)}",  # noqa: S608
        *(() if reindex else (prefix,)),
    )
    letters = await pool.fetchval(
        f"SELECT count(*) FROM dead_letters WHERE {_stale(_EVENT_PHONE)}",  # noqa: S608
        prefix,
    )
    return int(customers) + int(letters)


async def rotate(
    pool: asyncpg.Pool,
    keys: DataKeys,
    *,
    batch_size: int = 500,
    reindex: bool = False,
    progress: ProgressFn = lambda _: None,
) -> RotationReport:
    """Re-seal every stored value under `keys.current_id`; `reindex` also recomputes the
    keyed hashes of rows already sealed (after BRIDGE_INDEX_KEY changed)."""
    report = RotationReport()
    prefix = f"enc:{keys.current_id}:%"
    after = 0
    while True:
        rows = await pool.fetch(
            "SELECT id, phone, email, name, phone_index, email_index FROM customers"  # noqa: S608
            f" WHERE id > ${1 if reindex else 2} AND ({_customers_filter(reindex)})"
            f" ORDER BY id LIMIT {int(batch_size)}",
            *((after,) if reindex else (prefix, after)),
        )
        if not rows:
            break
        after = rows[-1]["id"]
        done = await _update_customers(pool, rows, keys, report)
        report.customers += done
        progress(len(rows))
    after = 0
    while True:
        rows = await pool.fetch(
            f"SELECT id, {_EVENT_PHONE} AS phone FROM dead_letters"  # noqa: S608
            f" WHERE id > $2 AND {_stale(_EVENT_PHONE)} ORDER BY id LIMIT {int(batch_size)}",
            prefix,
            after,
        )
        if not rows:
            break
        after = rows[-1]["id"]
        done = await _update_letters(pool, rows, keys, report)
        report.dead_letters += done
        progress(len(rows))
    return report


def _unreadable(report: RotationReport, row: asyncpg.Record, kinds: Sequence[str]) -> None:
    ids = {sealed_by(row[kind]) for kind in kinds if row[kind]} - {None}
    for key_id in ids or {"?"}:
        report.unreadable[str(key_id)] = report.unreadable.get(str(key_id), 0) + 1


async def _update_customers(
    pool: asyncpg.Pool, rows: Sequence[asyncpg.Record], keys: DataKeys, report: RotationReport
) -> int:
    done = 0
    async with pool.acquire() as conn, conn.transaction():
        for row in rows:
            try:
                new = resealed_customer(dict(row), keys)
            except SealError:
                _unreadable(report, row, _CUSTOMER_KINDS)
                continue
            status = await conn.execute(
                "UPDATE customers SET phone = $2, email = $3, name = $4, phone_index = $5,"
                " email_index = $6, updated_at = now() WHERE id = $1"
                " AND phone IS NOT DISTINCT FROM $7 AND email IS NOT DISTINCT FROM $8"
                " AND name IS NOT DISTINCT FROM $9",
                row["id"],
                new["phone"],
                new["email"],
                new["name"],
                new["phone_index"],
                new["email_index"],
                row["phone"],
                row["email"],
                row["name"],
            )
            done += status.endswith(" 1")
            report.skipped += not status.endswith(" 1")
    return done


async def _update_letters(
    pool: asyncpg.Pool, rows: Sequence[asyncpg.Record], keys: DataKeys, report: RotationReport
) -> int:
    done = 0
    async with pool.acquire() as conn, conn.transaction():
        for row in rows:
            try:
                resealed = keys.reseal(row["phone"], "phone")
            except SealError:
                _unreadable(report, row, ("phone",))
                continue
            status = await conn.execute(_RESEAL_LETTER, row["id"], resealed, row["phone"])
            done += status.endswith(" 1")
            report.skipped += not status.endswith(" 1")
    return done
