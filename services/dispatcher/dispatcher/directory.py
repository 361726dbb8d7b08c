"""The customer directory: PostgreSQL, with a Redis cache in front of look-ups."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path

import asyncpg
import orjson
from redis.asyncio import Redis

from bridge.events import Customer

from .customers import TIERS, CustomerRecord
from bridge.phones import to_siteti

_COLUMNS = "id, account_number, email, phone, name, tier, late_payments, contact_id"


def _cache_keys(customer: Customer) -> list[tuple[str, str, str]]:
    """(cache key, column, value) for each identifier the event carries, best first."""
    keys = []
    if customer.account_number:
        keys.append(
            (
                f"bridge:customer:acct:{customer.account_number}",
                "account_number",
                customer.account_number,
            )
        )
    if customer.email:
        email = customer.email.lower()
        keys.append((f"bridge:customer:email:{email}", "lower(email)", email))
    return keys


class Directory:
    def __init__(
        self, pool: asyncpg.Pool, redis: Redis, cache_ttl_seconds: int, region: str
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._ttl = cache_ttl_seconds
        self._region = region

    async def find(self, customer: Customer) -> CustomerRecord | None:
        """The directory's record for this customer, or one built from the event's own phone.

        Only hits are cached: a miss may be the database a moment behind the payment.
        """
        for cache_key, column, value in _cache_keys(customer):
            cached = await self._redis.get(cache_key)
            if cached is not None:
                return CustomerRecord(**orjson.loads(cached))
            row = await self._pool.fetchrow(
                f"SELECT {_COLUMNS} FROM customers WHERE {column} = $1",  # noqa: S608 - fixed columns
                value,
            )
            if row is not None:
                record = CustomerRecord(**dict(row))
                await self._redis.set(cache_key, orjson.dumps(asdict(record)), ex=self._ttl)
                return record
        phone = to_siteti(customer.phone, self._region, trusted=True)
        if phone is None:
            return None
        # Sources that give the number (WasaaPay, Open Market): the directory may still know more.
        row = await self._pool.fetchrow(f"SELECT {_COLUMNS} FROM customers WHERE phone = $1", phone)  # noqa: S608
        if row is not None:
            return CustomerRecord(**dict(row))
        return CustomerRecord(
            None, None, customer.email, phone, customer.name, "first_time", 0, None
        )

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
        keys = _cache_keys(Customer(account_number=record.account_number, email=record.email))
        if keys:
            await self._redis.delete(*(k for k, _, _ in keys))


@dataclass
class ImportReport:
    imported: int = 0
    without_phone: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)


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
    return {
        "account_number": account,
        "email": email,
        "phone": phone,
        "name": (row.get("name") or "").strip() or None,
        "tier": tier,
        "late_payments": int(late_text),
    }, None


_UPSERT_BY_ACCOUNT = """
INSERT INTO customers (account_number, email, phone, name, tier, late_payments)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (account_number) DO UPDATE SET
  email = EXCLUDED.email, phone = EXCLUDED.phone, name = EXCLUDED.name, tier = EXCLUDED.tier,
  late_payments = EXCLUDED.late_payments,
  contact_id = CASE WHEN customers.phone IS DISTINCT FROM EXCLUDED.phone THEN NULL
                    ELSE customers.contact_id END,
  updated_at = now()
"""
_UPSERT_BY_EMAIL = _UPSERT_BY_ACCOUNT.replace(
    "ON CONFLICT (account_number)", "ON CONFLICT (lower(email)) WHERE email IS NOT NULL"
)


async def import_csv(pool: asyncpg.Pool, redis: Redis, path: Path, region: str) -> ImportReport:
    report = ImportReport()
    rows: list[dict[str, object]] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for line_number, row in enumerate(csv.DictReader(handle), start=2):
            values, problem = parse_row(row, region)
            if values is None:
                report.rejected.append((line_number, problem or "invalid"))
                continue
            rows.append(values)
    async with pool.acquire() as conn, conn.transaction():
        for values in rows:
            statement = _UPSERT_BY_ACCOUNT if values["account_number"] else _UPSERT_BY_EMAIL
            await conn.execute(statement, *values.values())
    for values in rows:
        report.imported += 1
        report.without_phone += values["phone"] is None
        keys = _cache_keys(Customer(account_number=values["account_number"], email=values["email"]))  # type: ignore[arg-type]
        if keys:
            await redis.delete(*(k for k, _, _ in keys))
    return report
