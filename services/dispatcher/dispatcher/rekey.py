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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bridge.protect import DataKeys, Kind, SealError, sealed_by

ProgressFn = Callable[[int], None]

_CUSTOMER_KINDS: tuple[Kind, ...] = ("phone", "email", "name")
_EVENT_PHONE = "payload #>> '{data,customer,phone}'"


@dataclass
class RotationReport:
    resealed: dict[str, int] = field(default_factory=dict)  # by table
    skipped: int = 0  # changed by a service between read and write: sealed by it already
    # Sealed under keys BRIDGE_DATA_KEYS does not list (by key id): left as they are.
    unreadable: dict[str, int] = field(default_factory=dict)


def _stale(column: str) -> str:
    # Not sealed by the current key ($1 is its prefix): older keys and clear legacy values.
    return f"({column} IS NOT NULL AND {column} NOT LIKE $1)"


def _customers_filter(reindex: bool) -> str:
    if reindex:
        return "$1::text IS NOT NULL"  # every row ($1 still bound: one query shape)
    return " OR ".join(_stale(kind) for kind in _CUSTOMER_KINDS)


def resealed_customer(row: Mapping[str, Any], keys: DataKeys) -> dict[str, Any]:
    """A directory row's sealed values and keyed hashes under the current keys."""
    clear = {kind: keys.open(row[kind], kind) if row[kind] else None for kind in _CUSTOMER_KINDS}
    return {
        "phone": keys.reseal(row["phone"], "phone") if row["phone"] else None,
        "email": keys.reseal(row["email"], "email") if row["email"] else None,
        "name": keys.reseal(row["name"], "name") if row["name"] else None,
        "phone_index": keys.phone_index(clear["phone"]) if clear["phone"] else None,
        "email_index": keys.email_index(clear["email"]) if clear["email"] else None,
    }


def _customer_update(row: Mapping[str, Any], keys: DataKeys) -> tuple[Any, ...]:
    new = resealed_customer(row, keys)
    return (row["id"], *new.values(), row["phone"], row["email"], row["name"])


def _letter_update(row: Mapping[str, Any], keys: DataKeys) -> tuple[Any, ...]:
    return (row["id"], keys.reseal(row["phone"], "phone"), row["phone"])


@dataclass(frozen=True)
class _Table:
    """Where sealed values are stored, and how to re-seal one row of it. The selects take
    $1 (the current key's prefix) and $2 (the id to continue after); each update checks the
    row still holds what was read."""

    name: str
    where: str
    select: str
    update: str
    new_values: Callable[[Mapping[str, Any], DataKeys], tuple[Any, ...]]
    kinds: tuple[Kind, ...]


def _tables(reindex: bool) -> tuple[_Table, ...]:
    customers = _customers_filter(reindex)
    return (
        _Table(
            "customers",
            customers,
            f"SELECT id, phone, email, name FROM customers WHERE id > $2 AND ({customers})",  # noqa: S608
            "UPDATE customers SET phone = $2, email = $3, name = $4, phone_index = $5,"
            " email_index = $6, updated_at = now() WHERE id = $1"
            " AND phone IS NOT DISTINCT FROM $7 AND email IS NOT DISTINCT FROM $8"
            " AND name IS NOT DISTINCT FROM $9",
            _customer_update,
            _CUSTOMER_KINDS,
        ),
        _Table(
            "dead_letters",
            _stale(_EVENT_PHONE),
            f"SELECT id, {_EVENT_PHONE} AS phone FROM dead_letters"  # noqa: S608
            f" WHERE id > $2 AND {_stale(_EVENT_PHONE)}",
            "UPDATE dead_letters SET payload = jsonb_set(payload, '{data,customer,phone}',"  # noqa: S608
            f" to_jsonb($2::text)) WHERE id = $1 AND {_EVENT_PHONE} = $3",
            _letter_update,
            ("phone",),
        ),
    )


async def pending(pool: asyncpg.Pool, keys: DataKeys, *, reindex: bool = False) -> int:
    """How many rows a rotation has left to do."""
    prefix = f"enc:{keys.current_id}:%"
    total = 0
    for table in _tables(reindex):
        query = f"SELECT count(*) FROM {table.name} WHERE {table.where}"  # noqa: S608 - fixed
        total += int(await pool.fetchval(query, prefix))
    return total


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
    for table in _tables(reindex):
        report.resealed[table.name] = 0
        after = 0
        while rows := await pool.fetch(
            f"{table.select} ORDER BY id LIMIT {int(batch_size)}", prefix, after
        ):
            after = rows[-1]["id"]
            report.resealed[table.name] += await _update(pool, table, rows, keys, report)
            progress(len(rows))
    return report


async def _update(
    pool: asyncpg.Pool,
    table: _Table,
    rows: Sequence[asyncpg.Record],
    keys: DataKeys,
    report: RotationReport,
) -> int:
    done = 0
    async with pool.acquire() as conn, conn.transaction():
        for row in rows:
            try:
                values = table.new_values(row, keys)
            except SealError:
                ids = {sealed_by(row[kind]) for kind in table.kinds if row[kind]} - {None}
                for key_id in ids or {"?"}:
                    report.unreadable[str(key_id)] = report.unreadable.get(str(key_id), 0) + 1
                continue
            changed = (await conn.execute(table.update, *values)).endswith(" 1")
            done += changed
            report.skipped += not changed
    return done
