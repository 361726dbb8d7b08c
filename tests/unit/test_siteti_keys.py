"""API key rotation in the Siteti client: which keys are listed, where a refusal moves the key
in use (pure), and the client sending again at once under the next key (httpx.MockTransport).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from dispatcher.siteti import (
    KEY_POSITION,
    SitetiAuth,
    SitetiClient,
    SitetiError,
    SitetiKeys,
    key_after_refusal,
    listed_keys,
)

BASE = "https://api.siteti.test/v2.6"
SECRET = "secret_1"
OLD, NEW, SPARE = "sk_old", "sk_new", "sk_spare"
REFUSED = {"error": {"code": "invalid_api_key", "message": "unknown or revoked API key"}}


def switches() -> float:
    return REGISTRY.get_sample_value("bridge_siteti_api_key_switches_total") or 0.0


def bearer(request: httpx.Request) -> str:
    return request.headers["authorization"].removeprefix("Bearer ")


def siteti_accepting(accepted: set[str], keys: SitetiKeys, seen: list[str]) -> SitetiClient:
    """A client whose Siteti accepts only the keys in `accepted` (the set may change)."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(bearer(request))
        if bearer(request) not in accepted:
            return httpx.Response(401, json=REFUSED)
        return httpx.Response(200, json={"status": "APPROVED"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return SitetiClient(http, BASE, keys, SECRET)


# --- Pure ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_keys", "api_key", "expected"),
    [
        ([], "sk_single", ("sk_single",)),
        ([NEW, OLD], "sk_single", (NEW, OLD)),
        ([" sk_new ", "", OLD, "sk_new"], "", (NEW, OLD)),
        ([], "", ("",)),  # unconfigured: Siteti refuses it, as before
    ],
)
def test_listed_keys(api_keys: list[str], api_key: str, expected: tuple[str, ...]) -> None:
    assert listed_keys(api_keys, api_key) == expected


@pytest.mark.parametrize(
    ("active", "refused", "count", "expected"),
    [
        (0, 0, 2, 1),  # the key in use refused: the next one
        (1, 1, 2, 0),  # the last refused: round to the first
        (1, 0, 2, 1),  # a call signed before another moved on: stay
        (2, 1, 3, 2),
        (0, 0, 1, 0),  # a single key: nowhere to go
    ],
)
def test_key_after_refusal(active: int, refused: int, count: int, expected: int) -> None:
    assert key_after_refusal(active, refused, count) == expected


def test_keys_move_only_from_the_key_in_use_and_log_positions_only() -> None:
    keys = SitetiKeys((NEW, OLD))
    assert keys.current() == (0, NEW)
    before = switches()
    with capture_logs() as logs:
        assert keys.refused(0) == 1
        assert keys.refused(0) == 1  # a late refusal of the old key changes nothing
    assert keys.current() == (1, OLD)
    assert switches() - before == 1
    assert logs == [
        {
            "event": "siteti_api_key_switched",
            "log_level": "warning",
            "from_position": 1,
            "to_position": 2,
            "keys": 2,
        }
    ]
    with pytest.raises(ValueError):
        SitetiKeys(())


def test_auth_signs_with_the_key_in_use_and_says_which() -> None:
    keys = SitetiKeys((NEW, OLD))
    auth = SitetiAuth(keys, SECRET)
    request = httpx.Request("GET", f"{BASE}/templates/tpl")
    auth.sign(request)
    assert (bearer(request), request.extensions[KEY_POSITION]) == (NEW, 0)
    keys.refused(0)
    auth.sign(request)  # the governor's re-sign at the slot picks up the switch
    assert (bearer(request), request.extensions[KEY_POSITION]) == (OLD, 1)


# --- The client ------------------------------------------------------------------------------


async def test_a_refused_key_is_replaced_and_the_call_sent_again_at_once() -> None:
    """The reverse of a rotation: still on the old key when it is revoked."""
    seen: list[str] = []
    keys = SitetiKeys((OLD, NEW))
    siteti = siteti_accepting({NEW}, keys, seen)
    before = switches()
    assert await siteti.template_status("tpl") == "APPROVED"
    assert await siteti.template_status("tpl") == "APPROVED"
    assert seen == [OLD, NEW, NEW]
    assert switches() - before == 1


async def test_a_new_key_not_yet_created_falls_back_to_the_old_one() -> None:
    seen: list[str] = []
    siteti = siteti_accepting({OLD}, SitetiKeys((NEW, OLD)), seen)
    assert await siteti.template_status("tpl") == "APPROVED"
    assert seen == [NEW, OLD]


async def test_when_every_key_is_refused_the_error_is_the_permanent_one() -> None:
    seen: list[str] = []
    siteti = siteti_accepting(set(), SitetiKeys((NEW, OLD, SPARE)), seen)
    with pytest.raises(SitetiError) as caught:
        await siteti.template_status("tpl")
    assert (caught.value.status, caught.value.code, caught.value.transient) == (
        401,
        "invalid_api_key",
        False,
    )
    assert seen == [NEW, OLD, SPARE]  # each key once, then give up

    single: list[str] = []
    with pytest.raises(SitetiError):
        await siteti_accepting(set(), SitetiKeys((OLD,)), single).template_status("tpl")
    assert single == [OLD]


async def test_other_401s_are_not_a_key_problem() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401, json={"error": {"code": "invalid_signature"}})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    keys = SitetiKeys((NEW, OLD))
    with pytest.raises(SitetiError) as caught:
        await SitetiClient(http, BASE, keys, SECRET).template_status("tpl")
    assert caught.value.code == "invalid_signature"
    assert len(seen) == 1 and keys.current() == (0, NEW)


async def test_calls_in_flight_when_the_key_is_revoked_switch_once() -> None:
    """Twenty calls signed with the old key are all refused together: the first refusal moves
    to the new key, the others only follow it (no ping-pong back to the old one)."""
    in_flight = 20
    arrived: list[str] = []
    all_arrived = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        key = bearer(request)
        if key == OLD:
            arrived.append(key)
            if len(arrived) == in_flight:
                all_arrived.set()
            await all_arrived.wait()  # every call is on the wire before any answer
            return httpx.Response(401, json=REFUSED)
        return httpx.Response(200, json={"status": "APPROVED"})

    keys = SitetiKeys((OLD, NEW))
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    siteti = SitetiClient(http, BASE, keys, SECRET)
    before = switches()
    statuses = await asyncio.gather(*(siteti.template_status("tpl") for _ in range(in_flight)))
    assert statuses == ["APPROVED"] * in_flight
    assert switches() - before == 1
    assert keys.current() == (1, NEW)
