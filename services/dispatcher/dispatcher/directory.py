"""The customer directory: PostgreSQL, with a Redis cache in front of look-ups."""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis

from bridge.events import CanonicalEvent, Customer
from bridge.phones import to_siteti
from bridge.protect import DataKeys, Kind, customer_key

from .customers import TIERS, CustomerRecord

_COLUMNS = (
    "id, account_number, email, phone, name, tier, late_payments, contact_id, phone_confirmed"
)
_CACHE = "bridge:customer"
_SEALED: tuple[Kind, ...] = ("phone", "email", "name")


def cache_keys(account_number: str | None, email_index: str | None) -> list[str]:
    """The Redis keys a customer's cached record may sit under (e-mails by keyed hash)."""
    keys = [f"{_CACHE}:acct:{account_number}"] if account_number else []
    if email_index:
        keys.append(f"{_CACHE}:email:{email_index}")
    return keys


def _opened(row: Mapping[str, Any], keys: DataKeys) -> CustomerRecord:
    """A directory row (sealed values, as stored and cached) as a record in clear."""
    values = dict(row)
    for kind in _SEALED:
        if values[kind] is not None:
            values[kind] = keys.open(values[kind], kind)
    return CustomerRecord(**values)


class Directory:
    """Look-ups by account number, or by keyed hash of the e-mail or the number. Rows and the
    Redis cache hold sealed values only; records are opened in memory, for one event."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: Redis,
        keys: DataKeys,
        cache_ttl_seconds: int,
        region: str,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._keys = keys
        self._ttl = cache_ttl_seconds
        self._region = region

    def customer_hash(self, event: CanonicalEvent) -> str:
        """Whose event this is, as a keyed hash (its Kafka key): dead letters and audit rows
        carry it so that an erasure finds them."""
        return customer_key(event, self._keys, self._region)

    def _lookups(self, customer: Customer) -> list[tuple[str, str, str]]:
        """(cache key, column, value) for each identifier the event carries, best first."""
        found = []
        if customer.account_number:
            found.append(
                (
                    cache_keys(customer.account_number, None)[0],
                    "account_number",
                    customer.account_number,
                )
            )
        if customer.email:
            index = self._keys.email_index(customer.email)
            found.append((cache_keys(None, index)[0], "email_index", index))
        return found

    async def find(self, customer: Customer) -> CustomerRecord | None:
        """The directory's record for this customer, or one built from the event's own phone.

        Only hits are cached: a miss may be the database a moment behind the payment.
        """
        for cache_key, column, value in self._lookups(customer):
            cached = await self._redis.get(cache_key)
            if cached is not None:
                return _opened(orjson.loads(cached), self._keys)
            row = await self._pool.fetchrow(
                f"SELECT {_COLUMNS} FROM customers WHERE {column} = $1",  # noqa: S608 - fixed columns
                value,
            )
            if row is not None:
                await self._redis.set(cache_key, orjson.dumps(dict(row)), ex=self._ttl)
                return _opened(row, self._keys)
        phone = self.supplied_phone(customer)
        if phone is None:
            return None
        # Sources that give the number (WasaaPay, Open Market): the directory may still know more.
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM customers WHERE phone_index = $1",  # noqa: S608
            self._keys.phone_index(phone),
        )
        if row is not None:
            return _opened(row, self._keys)
        return CustomerRecord(
            None, None, customer.email, phone, customer.name, "first_time", 0, None
        )

    def supplied_phone(self, customer: Customer) -> str | None:
        """The number the event itself gives (WasaaPay, Open Market), in Siteti's form."""
        given = self._keys.open(customer.phone, "phone") if customer.phone else None
        return to_siteti(given, self._region, trusted=True)

    def sealed_phone(self, phone: str) -> tuple[str, str]:
        """A number as stored: sealed, and its keyed hash."""
        return self._keys.seal(phone, "phone"), self._keys.phone_index(phone)

    def phone_index(self, phone: str) -> str:
        """A number's keyed hash (what flagged numbers and sent messages are kept by)."""
        return self._keys.phone_index(phone)

    async def mark_confirmed(
        self, conn: asyncpg.Connection, customer_id: int, phone: str, phone_index: str
    ) -> list[str]:
        """The customer confirmed `phone` (sealed) as theirs: it becomes their confirmed number
        when they have none or it is the one they have. Returns the cache keys to drop once the
        caller's transaction is committed (none when the directory has another number now)."""
        row = await conn.fetchrow(_CONFIRM, customer_id, phone, phone_index)
        return cache_keys(row["account_number"], row["email_index"]) if row else []

    async def drop_cached(self, keys: list[str]) -> None:
        if keys:
            await self._redis.delete(*keys)

    async def remember_contact(self, record: CustomerRecord, contact_id: str) -> None:
        if record.id is None:
            return
        await self._pool.execute(
            "UPDATE customers SET contact_id = $2, updated_at = now() WHERE id = $1",
            record.id,
            contact_id,
        )
        await self.forget(record)

    async def forget(self, record: CustomerRecord) -> None:
        email_index = self._keys.email_index(record.email) if record.email else None
        stale = cache_keys(record.account_number, email_index)
        if stale:
            await self._redis.delete(*stale)


# A number the customer confirmed; a number the directory lacked is filled in (and the Siteti
# contact, upserted without it, is upserted again).
_CONFIRM = """
UPDATE customers SET
  phone = COALESCE(phone, $2), phone_index = COALESCE(phone_index, $3),
  contact_id = CASE WHEN phone IS NULL THEN NULL ELSE contact_id END,
  phone_confirmed = true, updated_at = now()
WHERE id = $1 AND (phone IS NULL OR phone_index = $3)
RETURNING account_number, email_index
"""

_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


@dataclass
class ImportReport:
    """What an import did (a dry run: would do), by the CSV file's line numbers."""

    dry_run: bool = False
    inserted: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    without_phone: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)

    @property
    def imported(self) -> int:
        return len(self.inserted) + len(self.updated)

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "inserted": self.inserted,
            "updated": self.updated,
            "without_phone": self.without_phone,
            "rejected": [{"line": line, "reason": why} for line, why in self.rejected],
        }


@dataclass(frozen=True)
class CsvRows:
    """A CSV file read and checked: the rows to upsert and the lines refused, by line number."""

    rows: list[tuple[int, dict[str, Any]]]
    rejected: list[tuple[int, str]]


def read_csv(path: Path, region: str) -> CsvRows:
    rows: list[tuple[int, dict[str, Any]]] = []
    rejected: list[tuple[int, str]] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for line_number, row in enumerate(csv.DictReader(handle), start=2):
            values, problem = parse_row(row, region)
            if values is None:
                rejected.append((line_number, problem or "invalid"))
            else:
                rows.append((line_number, values))
    return CsvRows(rows, rejected)


def parse_row(row: dict[str, str], region: str) -> tuple[dict[str, object] | None, str | None]:
    """One CSV row as column values, or the reason it cannot be imported."""
    account = (row.get("account_number") or "").strip() or None
    email = (row.get("email") or "").strip().lower() or None
    if not account and not email:
        return None, "needs an account_number or an email"
    raw_phone = (row.get("phone") or "").strip()
    phone = to_siteti(raw_phone, region) if raw_phone else None
    if raw_phone and phone is None:
        return None, "phone is not a valid mobile number"
    tier = (row.get("tier") or "first_time").strip() or "first_time"
    if tier not in TIERS:
        return None, f"tier must be one of {', '.join(TIERS)}"
    late_text = (row.get("late_payments") or "0").strip() or "0"
    if not late_text.isdigit():
        return None, "late_payments must be a whole number"
    # Absent or empty: confirmed (the directory's numbers are, unless it says otherwise).
    confirmed_text = (row.get("phone_confirmed") or "").strip().lower() or "true"
    if confirmed_text not in _TRUE + _FALSE:
        return None, "phone_confirmed must be true or false (yes/no, 1/0)"
    return {
        "account_number": account,
        "email": email,
        "phone": phone,
        "name": (row.get("name") or "").strip() or None,
        "tier": tier,
        "late_payments": int(late_text),
        "phone_confirmed": confirmed_text in _TRUE,
    }, None


def sealed_row(values: Mapping[str, Any], keys: DataKeys) -> dict[str, Any]:
    """`parse_row`'s values as stored: number, e-mail and name sealed, with keyed hashes of
    the number and the e-mail for look-ups."""
    phone, email, name = values["phone"], values["email"], values["name"]
    return {
        "account_number": values["account_number"],
        "email": keys.seal(email, "email") if email else None,
        "email_index": keys.email_index(email) if email else None,
        "phone": keys.seal(phone, "phone") if phone else None,
        "phone_index": keys.phone_index(phone) if phone else None,
        "name": keys.seal(name, "name") if name else None,
        "tier": values["tier"],
        "late_payments": values["late_payments"],
        "phone_confirmed": values["phone_confirmed"],
    }


# A changed number (by keyed hash) makes Siteti's contact id stale: it is upserted again.
# xmax is 0 only on a row this statement inserted (an update locks the row it replaces).
_UPSERT_BY_ACCOUNT = """
INSERT INTO customers
  (account_number, email, email_index, phone, phone_index, name, tier, late_payments,
   phone_confirmed)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (account_number) DO UPDATE SET
  email = EXCLUDED.email, email_index = EXCLUDED.email_index, phone = EXCLUDED.phone,
  phone_index = EXCLUDED.phone_index, name = EXCLUDED.name, tier = EXCLUDED.tier,
  late_payments = EXCLUDED.late_payments,
  phone_confirmed = EXCLUDED.phone_confirmed,
  contact_id = CASE WHEN customers.phone_index IS DISTINCT FROM EXCLUDED.phone_index THEN NULL
                    ELSE customers.contact_id END,
  updated_at = now()
RETURNING (xmax = 0) AS inserted
"""
_UPSERT_BY_EMAIL = _UPSERT_BY_ACCOUNT.replace(
    "ON CONFLICT (account_number)", "ON CONFLICT (email_index) WHERE email_index IS NOT NULL"
)


async def import_rows(
    pool: asyncpg.Pool,
    redis: Redis,
    keys: DataKeys,
    parsed: CsvRows,
    *,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Upsert the rows in one transaction; a row PostgreSQL refuses (an e-mail another
    customer has) is rejected alone, under a savepoint. A dry run runs the same statements
    and rolls them back, so it reports exactly what an import would do, and changes nothing.
    `progress` is called with 1 after each row."""
    report = ImportReport(dry_run=dry_run, rejected=list(parsed.rejected))
    written: list[dict[str, Any]] = []
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            for line_number, values in parsed.rows:
                sealed = sealed_row(values, keys)
                statement = _UPSERT_BY_ACCOUNT if sealed["account_number"] else _UPSERT_BY_EMAIL
                try:
                    async with conn.transaction():
                        inserted = await conn.fetchval(statement, *sealed.values())
                except asyncpg.UniqueViolationError:
                    report.rejected.append((line_number, "its email belongs to another customer"))
                else:
                    (report.inserted if inserted else report.updated).append(line_number)
                    report.without_phone += sealed["phone"] is None
                    written.append(sealed)
                if progress is not None:
                    progress(1)
        except BaseException:
            await transaction.rollback()
            raise
        await (transaction.rollback() if dry_run else transaction.commit())
    report.rejected.sort()
    if not dry_run:
        for sealed in written:
            stale = cache_keys(sealed["account_number"], sealed["email_index"])
            if stale:
                await redis.delete(*stale)
    return report


async def import_csv(
    pool: asyncpg.Pool, redis: Redis, keys: DataKeys, path: Path, region: str
) -> ImportReport:
    return await import_rows(pool, redis, keys, read_csv(path, region))
