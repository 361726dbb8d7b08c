"""Siteti API key rotation over real HTTP: the sandbox served by uvicorn, keys added and
revoked through its control API, and the dispatcher's own client stack (`runtime.siteti_http`:
the shared governor in the real Redis, metrics, the signer at the slot) built from settings."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from bridge.config import Settings
from dispatcher.runtime import siteti_http, siteti_keys
from dispatcher.siteti import SitetiClient, SitetiError, SitetiKeys
from siteti_sandbox import SandboxConfig, create_app
from tests.serving import running

ACCOUNT = "acc_keys"
SECRET = "signing_secret_keys"
OLD, NEW = "sk_keys_old", "sk_keys_new"
PHONE = "2348031234567"
VARS = {"customer_name": "Ada Obi", "amount": "₦5,000.00", "trans_ref": "MNP-1"}


@dataclass
class Rig:
    sandbox: str
    control: httpx.AsyncClient
    siteti: SitetiClient
    keys: SitetiKeys

    async def add_key(self, key: str) -> None:
        answer = await self.control.post("/_sandbox/api-keys", json={"key": key})
        answer.raise_for_status()

    async def revoke_key(self, key: str) -> None:
        answer = await self.control.request("DELETE", "/_sandbox/api-keys", json={"key": key})
        answer.raise_for_status()

    async def calls(self, **params: str) -> list[dict[str, Any]]:
        answer = await self.control.get("/_sandbox/calls", params=params)
        return list(answer.json())

    async def trigger(self, reference: str) -> str:
        answer = await self.siteti.trigger_template(
            "tpl_first_time",
            to=PHONE,
            contact_id=None,
            variables=VARS,
            reference=reference,
            idempotency_key=f"idem-{reference}",
        )
        return str(answer.body["message_id"])


def switches() -> float:
    return REGISTRY.get_sample_value("bridge_siteti_api_key_switches_total") or 0.0


@pytest.fixture
async def rig(settings: Settings, redis_client: Redis) -> AsyncIterator[Rig]:
    """A sandbox that knows OLD only; a client configured with SITETI_API_KEYS=new,old."""
    config = SandboxConfig(
        account_id=ACCOUNT,
        api_keys=(OLD,),
        signing_secrets=(SECRET,),
        rate_limit_per_minute=100_000,
    )
    async with running(create_app(config)) as url:
        configured = settings.model_copy(
            update={
                "siteti_base_url": f"{url}/v2.6/accounts/{ACCOUNT}",
                "siteti_api_key": "",
                "siteti_api_keys": [NEW, OLD],
                "siteti_signing_secret": SECRET,
                # A schedule of its own (the governor's key follows the base URL), and fast.
                "siteti_rate_limit_per_minute": 100_000,
            }
        )
        keys = siteti_keys(configured)
        http = siteti_http(configured, redis_client, keys, max_connections=32)
        siteti = SitetiClient(http, configured.siteti_base_url, keys, SECRET)
        async with http, httpx.AsyncClient(base_url=url, timeout=10) as control:
            yield Rig(url, control, siteti, keys)


def statuses(calls: list[dict[str, Any]]) -> list[int]:
    return [c["status"] for c in calls]


async def test_the_sandbox_adds_and_revokes_keys(rig: Rig) -> None:
    added = await rig.control.post("/_sandbox/api-keys", json={"key": NEW})
    assert added.json() == {"active_keys": 2}
    again = await rig.control.post("/_sandbox/api-keys", json={"key": NEW})
    assert again.json() == {"active_keys": 2}  # adding an active key is a no-op
    revoked = await rig.control.request("DELETE", "/_sandbox/api-keys", json={"key": OLD})
    assert revoked.json() == {"active_keys": 1}
    unknown = await rig.control.request("DELETE", "/_sandbox/api-keys", json={"key": OLD})
    assert unknown.status_code == 404
    assert (await rig.control.post("/_sandbox/api-keys", json={"key": ""})).status_code == 422
    await rig.control.post("/_sandbox/reset")
    assert (await rig.control.get("/_sandbox/config")).json()["api_keys"] == [OLD]


async def test_a_rotation_without_a_failed_call(rig: Rig) -> None:
    before = switches()
    # Rolled out before the new key exists at Siteti: the first call falls back to the old key.
    await rig.trigger("ref-1")
    assert statuses(await rig.calls(reference="ref-1")) == [401, 202]
    assert rig.keys.current() == (1, OLD)

    # The new key created, the old one revoked: the old key's refusal wraps round to the new.
    await rig.add_key(NEW)
    await rig.revoke_key(OLD)
    await rig.trigger("ref-2")
    assert statuses(await rig.calls(reference="ref-2")) == [401, 202]
    assert rig.keys.current() == (0, NEW)

    await rig.trigger("ref-3")
    assert statuses(await rig.calls(reference="ref-3")) == [202]
    assert switches() - before == 2


async def test_calls_in_flight_at_the_revocation_switch_once_and_all_land(rig: Rig) -> None:
    await rig.add_key(NEW)
    await rig.trigger("warm-up")
    assert rig.keys.current() == (0, NEW)
    await rig.revoke_key(NEW)
    before = switches()
    references = [f"burst-{uuid.uuid4().hex[:8]}" for _ in range(30)]
    await asyncio.gather(*(rig.trigger(r) for r in references))
    # The new key's refusals move the client once, to the old key (next in the list).
    assert switches() - before == 1
    assert rig.keys.current() == (1, OLD)
    messages = (await rig.control.get("/_sandbox/messages")).json()
    sent = [m["reference"] for m in messages]
    assert sorted(r for r in sent if r in references) == sorted(references)  # each once


async def test_when_every_key_is_refused_the_call_fails_as_before(rig: Rig) -> None:
    await rig.revoke_key(OLD)
    with pytest.raises(SitetiError) as caught:
        await rig.trigger("ref-none")
    assert (caught.value.status, caught.value.code, caught.value.transient) == (
        401,
        "invalid_api_key",
        False,
    )
    assert statuses(await rig.calls(reference="ref-none")) == [401, 401]  # each key once
    assert (await rig.control.get("/_sandbox/messages")).json() == []
