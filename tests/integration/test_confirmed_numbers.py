"""The directory's `phone_confirmed` flag (real PostgreSQL and Redis): the import accepts it,
look-ups carry it, and a customer's confirmation makes a candidate their confirmed number."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from bridge.config import Settings
from bridge.events import Customer
from bridge.protect import data_keys
from dispatcher.directory import Directory, import_csv


def digits() -> str:
    return "234803" + str(uuid.uuid4().int)[:7]


async def test_the_import_accepts_the_flag_and_a_confirmation_settles_it(
    pg_pool: asyncpg.Pool, redis_client: Redis, settings: Settings, tmp_path: Path
) -> None:
    keys = data_keys(settings)
    directory = Directory(pg_pool, redis_client, keys, 300, "NG")
    tag = uuid.uuid4().hex[:8]
    phones = [digits() for _ in range(6)]
    flags = ["false", "no", "0", "TRUE", "", "maybe"]
    csv = tmp_path / "customers.csv"
    csv.write_text(
        "account_number,phone,name,phone_confirmed\n"
        + "".join(
            f"{tag}{i},+{phone},Ada,{flag}\n"
            for i, (phone, flag) in enumerate(zip(phones, flags, strict=True))
        )
        + f"{tag}none,,Bola,false\n"
    )
    report = await import_csv(pg_pool, redis_client, keys, csv, "NG")
    assert report.rejected == [(7, "phone_confirmed must be true or false (yes/no, 1/0)")]
    found = [await directory.find(Customer(account_number=f"{tag}{i}")) for i in range(5)]
    assert [c.phone_confirmed for c in found if c] == [False, False, False, True, True]
    # A file without the column: every number confirmed (and re-importing sets the flag).
    plain = tmp_path / "plain.csv"
    plain.write_text(f"account_number,phone,name\n{tag}0,+{phones[0]},Ada\n")
    await import_csv(pg_pool, redis_client, keys, plain, "NG")
    again = await directory.find(Customer(account_number=f"{tag}0"))
    assert again is not None and again.phone_confirmed

    # The customer confirms the unconfirmed number: cached as unconfirmed until then.
    unconfirmed = found[1]
    assert unconfirmed is not None and unconfirmed.id is not None
    sealed, index = directory.sealed_phone(phones[1])
    async with pg_pool.acquire() as conn:
        stale = await directory.mark_confirmed(conn, unconfirmed.id, sealed, index)
    assert stale == [f"bridge:customer:acct:{tag}1"]
    await directory.drop_cached(stale)
    confirmed = await directory.find(Customer(account_number=f"{tag}1"))
    assert confirmed is not None and confirmed.phone_confirmed and confirmed.phone == phones[1]

    # A number the directory lacked (the event gave it) becomes the customer's.
    nobody = await directory.find(Customer(account_number=f"{tag}none"))
    assert nobody is not None and nobody.id is not None and nobody.phone is None
    candidate = digits()
    sealed, index = directory.sealed_phone(candidate)
    async with pg_pool.acquire() as conn:
        await directory.drop_cached(await directory.mark_confirmed(conn, nobody.id, sealed, index))
    filled = await directory.find(Customer(account_number=f"{tag}none"))
    assert filled is not None and filled.phone == candidate and filled.phone_confirmed
    row = await pg_pool.fetchrow("SELECT phone_index FROM customers WHERE id = $1", nobody.id)
    assert row["phone_index"] == keys.phone_index(candidate)

    # A confirmation of a number the directory no longer has changes nothing.
    sealed, index = directory.sealed_phone(digits())
    async with pg_pool.acquire() as conn:
        assert await directory.mark_confirmed(conn, found[0].id or 0, sealed, index) == []
