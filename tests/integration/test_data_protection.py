"""Numbers, e-mails and names sealed at rest; look-ups by keyed hash; `bridge keys rotate`
re-sealing under a new key while values stay usable (real PostgreSQL and Redis)."""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from bridge.config import Settings
from bridge.events import Customer, EventData, new_event
from bridge.protect import DataKeys, data_keys, new_key_entry, sealed_by, sealed_record
from dispatcher import rekey
from dispatcher.directory import Directory, import_csv
from dispatcher.dlq import put
from dispatcher.outcomes import DeadLettered

ROOT = Path(__file__).resolve().parents[2]


def digits() -> str:
    """A fresh valid Nigerian mobile number, as Siteti writes it."""
    return "234803" + str(uuid.uuid4().int)[:7]


async def import_one(
    pool: asyncpg.Pool, redis: Redis, keys: DataKeys, tmp_path: Path, phone: str
) -> tuple[str, str]:
    account, email = f"ACC{uuid.uuid4().hex[:10]}", f"{uuid.uuid4().hex[:8]}@Example.com"
    csv = tmp_path / f"{account}.csv"
    csv.write_text(
        "account_number,email,phone,name,tier,late_payments\n"
        f"{account},{email},+{phone},Ada Obi,returning,0\n"
    )
    report = await import_csv(pool, redis, keys, csv, "NG")
    assert report.imported == 1, report.rejected
    return account, email


async def test_the_directory_stores_sealed_values_and_finds_by_keyed_hash(
    pg_pool: asyncpg.Pool, redis_client: Redis, settings: Settings, tmp_path: Path
) -> None:
    keys = data_keys(settings)
    phone = digits()
    account, email = await import_one(pg_pool, redis_client, keys, tmp_path, phone)
    row = await pg_pool.fetchrow("SELECT * FROM customers WHERE account_number = $1", account)
    assert row is not None
    for column in ("phone", "email", "name"):
        assert sealed_by(row[column]) == keys.current_id
    stored = " ".join(str(v) for v in row.values())
    assert phone[3:] not in stored and "Ada" not in stored and email.lower() not in stored.lower()
    assert row["phone_index"] == keys.phone_index(phone)

    directory = Directory(pg_pool, redis_client, keys, 300, "NG")
    by_account = await directory.find(Customer(account_number=account))
    assert by_account is not None and by_account.phone == phone and by_account.name == "Ada Obi"
    # The cache holds the row as stored: sealed.
    cached = await redis_client.get(f"bridge:customer:acct:{account}")
    assert cached is not None and phone[3:].encode() not in cached
    by_email = await directory.find(Customer(email=email.upper()))
    assert by_email is not None and by_email.account_number == account
    assert not await redis_client.keys(f"bridge:customer:email:*{email.lower()}*")
    # An event that gives only the (sealed) number finds the directory's record.
    event = new_event(
        EventData(
            provider="openmarket",
            transaction_reference=uuid.uuid4().hex,
            amount=Decimal(1),
            customer=Customer(phone=keys.seal("0" + phone[3:], "phone")),
        ),
        "payment.successful",
    )
    by_phone = await directory.find(event.data.customer)
    assert by_phone is not None and by_phone.account_number == account


async def test_rotation_reseals_everything_resumably_and_values_stay_usable(
    pg_pool: asyncpg.Pool, redis_client: Redis, settings: Settings, tmp_path: Path
) -> None:
    old = data_keys(settings)
    phones = [digits() for _ in range(3)]
    accounts = [(await import_one(pg_pool, redis_client, old, tmp_path, p))[0] for p in phones]
    # A row from before encryption (clear), and a dead letter whose event holds a sealed number.
    legacy_phone, legacy_account = digits(), f"LEG{uuid.uuid4().hex[:8]}"
    await pg_pool.execute(
        "INSERT INTO customers (account_number, phone, name) VALUES ($1, $2, 'Legacy Name')",
        legacy_account,
        legacy_phone,
    )
    event = new_event(
        EventData(
            provider="openmarket",
            transaction_reference=uuid.uuid4().hex,
            amount=Decimal(1),
            customer=Customer(phone="0" + phones[0][3:]),
        ),
        "payment.successful",
    )
    key, value = sealed_record(event, old, "NG")
    sealed_event = type(event).from_json(value)
    letter = await put(
        pg_pool,
        sealed_event,
        DeadLettered("missing_contact", "manual_review", "no number"),
        key.decode(),
    )

    fresh = DataKeys.parse(
        [new_key_entry(f"n{uuid.uuid4().hex[:6]}")], base64.b64encode(old.index_key).decode()
    )
    new = DataKeys(fresh.keys + old.keys, old.index_key)
    assert await rekey.pending(pg_pool, new) >= 5

    # Stopped after its first batch (a crash, Ctrl-C): the next run finishes the work.
    class Stop(Exception):
        pass

    def stop(_: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        await rekey.rotate(pg_pool, new, batch_size=1, progress=stop)
    assert 0 < await rekey.pending(pg_pool, new)
    report = await rekey.rotate(pg_pool, new, batch_size=2)
    assert await rekey.pending(pg_pool, new) == 0
    assert report.resealed["dead_letters"] >= 1

    rows = await pg_pool.fetch(
        "SELECT phone, email, name, phone_index FROM customers WHERE account_number = ANY($1)",
        [*accounts, legacy_account],
    )
    for row in rows:
        for column in ("phone", "name"):
            assert sealed_by(row[column]) == new.current_id
    legacy = next(r for r in rows if r["phone_index"] == new.phone_index(legacy_phone))
    assert new.open(legacy["name"], "name") == "Legacy Name"
    stored = await pg_pool.fetchval("SELECT payload FROM dead_letters WHERE id = $1", letter)
    assert sealed_by(stored["data"]["customer"]["phone"]) == new.current_id

    # With only the new key, every value still opens and every look-up still works.
    only_new = DataKeys(new.keys[:1], new.index_key)
    await redis_client.delete(*[f"bridge:customer:acct:{a}" for a in accounts])
    directory = Directory(pg_pool, redis_client, only_new, 300, "NG")
    for account, phone in zip(accounts, phones, strict=True):
        found = await directory.find(Customer(account_number=account))
        assert found is not None and found.phone == phone
    assert only_new.open(stored["data"]["customer"]["phone"], "phone") == "0" + phones[0][3:]

    # Back to the session's key (rotating the other way): later tests read these rows.
    await rekey.rotate(pg_pool, DataKeys(old.keys + fresh.keys, old.index_key))
    assert await rekey.pending(pg_pool, old) == 0


def test_the_cli_rotates_with_a_progress_bar(settings: Settings) -> None:
    current, cli_key = settings.bridge_data_keys, new_key_entry("cli")
    env = {
        **os.environ,
        "BRIDGE_DATA_KEYS": ",".join([cli_key, *current]),
        "BRIDGE_INDEX_KEY": settings.bridge_index_key,
    }
    bridge = [str(ROOT / ".venv/bin/bridge")]
    dry = subprocess.run(
        [*bridge, "keys", "rotate", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert dry.returncode == 0, dry.stderr
    assert "to re-seal under key 'cli'" in dry.stdout
    done = subprocess.run(
        [*bridge, "keys", "rotate", "--batch-size", "50"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    again = subprocess.run(
        [*bridge, "keys", "rotate"], env=env, capture_output=True, text=True, check=False
    )
    assert again.returncode == 0 and "0 stored values" in again.stdout
    # A value sealed under a key the configuration lost is reported, not a crash.
    alone = {**env, "BRIDGE_DATA_KEYS": new_key_entry("lost")}
    lost = subprocess.run(
        [*bridge, "keys", "rotate"], env=alone, capture_output=True, text=True, check=False
    )
    assert lost.returncode == 1 and "does not list" in lost.stderr, lost.stderr
    assert "Traceback" not in lost.stderr
    # Back to the session's key: later tests read these rows.
    back = {**env, "BRIDGE_DATA_KEYS": ",".join([*current, cli_key])}
    subprocess.run([*bridge, "keys", "rotate"], env=back, capture_output=True, check=True)
    bad = subprocess.run(
        [*bridge, "keys", "rotate"],
        env={**env, "BRIDGE_DATA_KEYS": "k1:" + base64.b64encode(b"short").decode()},
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "AES-256 needs 32" in bad.stderr
    assert "Traceback" not in bad.stderr
