"""Erasing one customer (`bridge erase`, POST /erasures) and retrying Siteti's deletions.

An erasure is asked for by account number or by number. `find` reads what the bridge holds
about the customer; `plan` (pure) decides what goes; `apply` removes it:

- the directory records (and their Siteti contacts: `DELETE /contacts/{id}`);
- the dead letters of the customer's events (deleted) and unrelayed outbox rows;
- the `detail` of every audit row of the customer's transactions (scrubbed to `ERASED`);
- the dedupe and directory-cache keys in Redis;
- the rows of file-drop copies (FILEDROP_DIR/processed and failed) with the customer's
  account number or number: the files are rewritten without them (erasure_files.py).

The customer's rows are found by keyed hash (`customer_hash`: the events' Kafka key) of every
identifier the directory knows for them, then by the references of those rows (receipts'
audit rows carry only a reference). One `erasures` row logs each request: who, when, and
what went, as counts and keyed hashes only. It stays `pending` until Siteti confirmed every
contact's deletion (404 counts: already gone); `erasure_contacts.retry_pending` runs on the
retrier's schedule.
A second erasure of the same subject finds nothing more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncpg
from pydantic import ValidationError
from redis.asyncio import Redis

from bridge.config import Settings
from bridge.events import EVENT_TYPES, Customer, describe
from bridge.logs import get_logger
from bridge.phones import to_siteti
from bridge.protect import DataKeys, SealError, data_keys
from bridge.retry import RetryPolicy
from ingest.sources.filedrop_reader import FiledropConfig

from .confirmation_requests import FORGET_CANDIDATE
from .dedupe import Dedupe
from .directory import cache_keys
from .erasure_contacts import CLAIM_LEASE, attempt
from .erasure_files import FileRewrite, Wanted, find_rewrites, rewrite
from .sent import forget_sent
from .siteti import SitetiClient

log = get_logger("dispatcher.erasure")

SubjectKind = Literal["account", "phone"]
ERASED: dict[str, Any] = {"erased": True}  # what a scrubbed audit row's detail becomes


class SubjectError(ValueError):
    """The account number or number cannot name a customer."""


@dataclass(frozen=True)
class Subject:
    kind: SubjectKind
    value: str  # the account number or the normalised number: matched, never stored or logged
    hash: str


def subject_of(kind: SubjectKind, raw: str, keys: DataKeys, region: str) -> Subject:
    value = raw.strip()
    if kind == "phone":
        phone = to_siteti(value, region, trusted=True)
        if phone is None:
            raise SubjectError("not a phone number")
        return Subject("phone", phone, keys.phone_index(phone))
    if not value or len(value) > 64:
        raise SubjectError("an account number is 1 to 64 characters")
    try:
        # The events' own rule: what no event can carry names no customer.
        Customer(account_number=value)
    except ValidationError as exc:
        raise SubjectError(f"not an account number: {describe(exc)}") from None
    return Subject("account", value, keys.index(value, "account"))


@dataclass(frozen=True)
class DirectoryRow:
    id: int
    account_number: str | None
    phone: str | None  # opened (Siteti's form)
    phone_index: str | None
    email_index: str | None
    contact_id: str | None


def customer_hashes(subject: Subject, rows: Iterable[DirectoryRow], keys: DataKeys) -> list[str]:
    """Every Kafka key the customer's events may carry (bridge.protect.customer_key)."""
    hashes = {subject.hash}
    for row in rows:
        if row.account_number:
            hashes.add(keys.index(row.account_number, "account"))
        hashes.update(h for h in (row.phone_index, row.email_index) if h)
        if row.phone:
            hashes.add(keys.phone_index(row.phone))
    return sorted(hashes)


def wanted_of(subject: Subject, rows: Iterable[DirectoryRow], region: str) -> Wanted:
    """The clear identifiers to match in files and payloads."""
    rows = list(rows)
    accounts = {r.account_number for r in rows if r.account_number}
    phones = {r.phone for r in rows if r.phone}
    (accounts if subject.kind == "account" else phones).add(subject.value)
    return Wanted(frozenset(accounts), frozenset(phones), region)


def redis_candidates(
    rows: Iterable[DirectoryRow], dedupe_keys: Iterable[str], references: Iterable[str]
) -> list[str]:
    """The dedupe keys of the customer's events (each type, as the audit rows give only the
    reference) and the directory-cache keys of their records (dispatcher.directory)."""
    keys = {Dedupe.key(k) for k in dedupe_keys}
    keys.update(
        Dedupe.key(f"{ref}:{event_type}") for ref in references for event_type in EVENT_TYPES
    )
    for row in rows:
        keys.update(cache_keys(row.account_number, row.email_index))
    return sorted(keys)


# --- the plan (pure) --------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """What the bridge holds about the subject."""

    customers: tuple[DirectoryRow, ...] = ()
    hashes: tuple[str, ...] = ()
    dead_letters: tuple[int, ...] = ()
    audit_rows: tuple[int, ...] = ()  # not scrubbed yet
    outbox_rows: tuple[int, ...] = ()
    redis_keys: tuple[str, ...] = ()  # present now
    files: tuple[FileRewrite, ...] = ()
    unreadable_files: int = 0
    earlier_pending: tuple[int, ...] = ()  # erasures of the subject still waiting for Siteti


@dataclass(frozen=True)
class Plan:
    subject_kind: SubjectKind
    subject_hash: str
    customer_ids: tuple[int, ...]
    contact_ids: tuple[str, ...]
    dead_letters: tuple[int, ...]
    audit_rows: tuple[int, ...]
    outbox_rows: tuple[int, ...]
    redis_keys: tuple[str, ...]
    files: tuple[FileRewrite, ...]
    removed: dict[str, Any] = field(default_factory=dict)  # the log's summary

    @property
    def nothing(self) -> bool:
        return not (
            self.customer_ids
            or self.dead_letters
            or self.audit_rows
            or self.outbox_rows
            or self.redis_keys
            or self.files
        )


def plan(subject: Subject, found: Found) -> Plan:
    contact_ids = tuple(sorted({c.contact_id for c in found.customers if c.contact_id}))
    dedupe = [k for k in found.redis_keys if k.startswith("bridge:dedupe:")]
    removed = {
        "directory_records": len(found.customers),
        "siteti_contacts": len(contact_ids),
        "dead_letters": len(found.dead_letters),
        "audit_rows_scrubbed": len(found.audit_rows),
        "outbox_rows": len(found.outbox_rows),
        "dedupe_keys": len(dedupe),
        "cache_keys": len(found.redis_keys) - len(dedupe),
        "files_rewritten": len(found.files),
        "file_rows": sum(f.rows for f in found.files),
        "files_unreadable": found.unreadable_files,
        "customer_hashes": list(found.hashes),
    }
    return Plan(
        subject.kind,
        subject.hash,
        tuple(c.id for c in found.customers),
        contact_ids,
        found.dead_letters,
        found.audit_rows,
        found.outbox_rows,
        found.redis_keys,
        found.files,
        removed,
    )


# --- reading what there is --------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    pool: asyncpg.Pool
    redis: Redis
    keys: DataKeys
    region: str
    filedrop_dir: Path
    filedrop: FiledropConfig

    @classmethod
    def from_settings(cls, settings: Settings, pool: asyncpg.Pool, redis: Redis) -> Context:
        filedrop = FiledropConfig.from_settings(settings)
        inbox = Path(settings.filedrop_dir)
        return cls(pool, redis, data_keys(settings), settings.default_country, inbox, filedrop)


def _opened(keys: DataKeys, phone: str | None) -> str | None:
    try:
        return keys.open(phone, "phone") if phone else None
    except SealError:  # under a key no longer listed: its index still finds the rows
        return None


async def _directory(ctx: Context, subject: Subject) -> tuple[DirectoryRow, ...]:
    columns = "id, account_number, phone, phone_index, email_index, contact_id"
    if subject.kind == "account":
        where, args = "account_number = $1", [subject.value]
    else:  # by index; rows from before sealing hold the clear number
        where, args = "phone_index = $1 OR phone = $2", [subject.hash, subject.value]
    rows = await ctx.pool.fetch(f"SELECT {columns} FROM customers WHERE {where}", *args)  # noqa: S608 - fixed text
    return tuple(DirectoryRow(**{**dict(r), "phone": _opened(ctx.keys, r["phone"])}) for r in rows)


async def find(ctx: Context, subject: Subject) -> Found:
    customers = await _directory(ctx, subject)
    hashes = customer_hashes(subject, customers, ctx.keys)
    wanted = wanted_of(subject, customers, ctx.region)
    dead = await ctx.pool.fetch(
        "SELECT id, reference, dedupe_key FROM dead_letters WHERE customer_hash = ANY($1::text[])"
        " OR payload #>> '{data,customer,account_number}' = ANY($2::text[])",
        hashes,
        sorted(wanted.accounts),
    )
    references = {r["reference"] for r in dead}
    references.update(
        r["reference"]
        for r in await ctx.pool.fetch(
            "SELECT DISTINCT reference FROM audit_log WHERE customer_hash = ANY($1::text[])", hashes
        )
    )
    audit = await ctx.pool.fetch(
        "SELECT id FROM audit_log WHERE (customer_hash = ANY($1::text[])"
        " OR reference = ANY($2::text[])) AND detail IS DISTINCT FROM $3::jsonb ORDER BY id",
        hashes,
        sorted(references),
        ERASED,
    )
    outbox_keys = [*references, *hashes, *(Customer(account_number=a).key for a in wanted.accounts)]
    outbox = await ctx.pool.fetch(
        "SELECT id FROM outbox WHERE key = ANY($1::text[]) ORDER BY id", outbox_keys
    )
    candidates = redis_candidates(customers, [r["dedupe_key"] for r in dead], references)
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for key in candidates:
            pipe.exists(key)
        present = await pipe.execute()
    files, unreadable = await asyncio.to_thread(
        find_rewrites, ctx.filedrop_dir, ctx.filedrop, wanted
    )
    pending = await ctx.pool.fetch(
        "SELECT id FROM erasures WHERE subject_hash = $1 AND status = 'pending' ORDER BY id",
        subject.hash,
    )
    return Found(
        customers,
        tuple(hashes),
        tuple(sorted(r["id"] for r in dead)),
        tuple(r["id"] for r in audit),
        tuple(r["id"] for r in outbox),
        tuple(k for k, n in zip(candidates, present, strict=True) if n),
        tuple(files),
        unreadable,
        tuple(r["id"] for r in pending),
    )


# --- removing it ------------------------------------------------------------------------------


async def apply(ctx: Context, p: Plan, requested_by: str) -> int:
    """Remove what `p` names and log it; returns the erasure's id. The database first (so no
    look-up re-fills the cache from a record about to go), then Redis and the files."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        erasure_id: int = await conn.fetchval(
            "INSERT INTO erasures (subject_hash, subject_kind, requested_by, status, contact_ids,"
            " removed, next_attempt_at, completed_at) VALUES ($1, $2, $3, $4, $5, $6,"
            " CASE WHEN $4 = 'pending' THEN now() + $7::interval END,"
            " CASE WHEN $4 = 'done' THEN now() END) RETURNING id",
            p.subject_hash,
            p.subject_kind,
            requested_by,
            "pending" if p.contact_ids else "done",
            list(p.contact_ids),
            p.removed,
            CLAIM_LEASE,  # this process tries Siteti first; the retrier after the lease
        )
        await conn.execute("DELETE FROM customers WHERE id = ANY($1::bigint[])", p.customer_ids)
        # Requests go with their customer (ON DELETE CASCADE); a candidate number by its hash.
        await conn.execute(FORGET_CANDIDATE, p.subject_hash, p.subject_kind)
        await conn.execute("DELETE FROM dead_letters WHERE id = ANY($1::bigint[])", p.dead_letters)
        await conn.execute(
            "UPDATE audit_log SET detail = $2 WHERE id = ANY($1::bigint[])", p.audit_rows, ERASED
        )
        await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", p.outbox_rows)
        await forget_sent(conn, p.removed["customer_hashes"])
    if p.redis_keys:
        await ctx.redis.delete(*p.redis_keys)
    for change in p.files:
        await asyncio.to_thread(rewrite, change)
    counts = {k: v for k, v in p.removed.items() if k != "customer_hashes"}
    log.info("erasure_applied", id=erasure_id, kind=p.subject_kind, by=requested_by, **counts)
    return erasure_id


# --- the whole request ------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    erasure_id: int | None  # None for a dry run
    status: str  # "done", "pending" or "dry_run"
    removed: dict[str, Any]
    contacts_left: int
    nothing: bool
    earlier_pending: tuple[int, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.erasure_id,
            "status": self.status,
            "nothing_found": self.nothing,
            "removed": self.removed,
            "siteti_contacts_left": self.contacts_left,
            "earlier_pending": list(self.earlier_pending),
        }

    def describe(self) -> list[str]:
        head = "dry run: would remove" if self.status == "dry_run" else "removed"
        if self.nothing:
            head = "nothing (more) to erase for this subject; " + head
        lines = [f"{head}:"]
        lines += [f"  {k}: {v}" for k, v in self.removed.items() if k != "customer_hashes"]
        if self.erasure_id is not None:
            lines.append(f"erasure {self.erasure_id}: {self.status}")
        if self.contacts_left:
            lines.append(
                f"  {self.contacts_left} Siteti contact(s) not deleted yet: the dispatcher retries"
            )
        if self.earlier_pending:
            ids = ", ".join(map(str, self.earlier_pending))
            lines.append(f"earlier erasure(s) {ids} still wait for Siteti; the dispatcher retries")
        if self.removed.get("files_unreadable"):
            lines.append("  unreadable file-drop copies were not searched: check them by hand")
        return lines


async def erase(
    ctx: Context,
    siteti: SitetiClient,
    subject: Subject,
    *,
    requested_by: str,
    dry_run: bool = False,
    policy: RetryPolicy,
) -> Result:
    """Find, plan, remove, log; then delete the Siteti contacts once under `policy` (what
    fails stays pending for `retry_pending`)."""
    found = await find(ctx, subject)
    p = plan(subject, found)
    if dry_run:
        return Result(
            None, "dry_run", p.removed, len(p.contact_ids), p.nothing, found.earlier_pending
        )
    erasure_id = await apply(ctx, p, requested_by)
    left = []
    if p.contact_ids:
        left = await attempt(ctx.pool, siteti, erasure_id, p.contact_ids, 0, policy=policy)
    status = "pending" if left else "done"
    return Result(erasure_id, status, p.removed, len(left), p.nothing, found.earlier_pending)


async def get(pool: asyncpg.Pool, erasure_id: int) -> dict[str, Any] | None:
    """The log entry, as the admin API shows it (contact ids as a count only)."""
    row = await pool.fetchrow(
        "SELECT id, subject_hash, subject_kind, requested_by, status, cardinality(contact_ids)"
        " AS contacts_left, removed, attempts, last_error, next_attempt_at, created_at,"
        " updated_at, completed_at FROM erasures WHERE id = $1",
        erasure_id,
    )
    if row is None:
        return None
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in dict(row).items()}
