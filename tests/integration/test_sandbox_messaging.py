"""The sandbox's customer side over real HTTP (issue 12): replies, auto-replies, injected Meta
delivery failures and conversation-state webhooks, each checked as the signed webhook the
bridge's receipts endpoint would get. Needs no Kafka, Redis or PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
import pytest_asyncio
from fastapi import Request, Response

from bridge.signing import verify_siteti_webhook
from siteti_sandbox.state import contact_id_for
from siteti_sandbox.testing import serve_app
from tests.integration import test_sandbox as base
from tests.integration.test_sandbox import PHONE, VARS, WEBHOOK_SECRETS, Api, Receiver, wait_until

# The sandbox, client and receiver fixtures of test_sandbox.py (a sandbox per module); the
# receiver is this module's own, below, which the sandbox fixture picks up by name.
http, sandbox_url, api, hooks = base.http, base.sandbox_url, base.api, base.hooks

OTHER_PHONE = "2348099998888"
REFERENCE = "moniepoint:MNP-889900"


class SignedReceiver(Receiver):
    """Also keeps each accepted delivery's signature header, to check it against each secret."""

    async def hook(self, request: Request) -> Response:
        response = await super().hook(request)
        if response.status_code == 200:
            self.events[-1]["signature"] = request.headers["x-siteti-signature"]
        return response


@pytest_asyncio.fixture(scope="module")
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    signed = SignedReceiver()
    async with serve_app(signed.app) as url:
        yield signed, url + "/hooks"


async def settled(api: Api) -> None:
    """Every queued webhook has been sent (or given up): nothing more can arrive."""

    async def idle() -> bool:
        return bool((await api.control("GET", "/stats"))["webhooks_pending"] == 0)

    await wait_until(idle)


def of_type(hooks: Receiver, event_type: str) -> list[dict[str, Any]]:
    return [e for e in hooks.events if e["body"]["type"] == event_type]


def assert_signed_with_every_secret(event: dict[str, Any]) -> None:
    for secret in WEBHOOK_SECRETS:  # one v1= value per secret, as during a rotation
        verify_siteti_webhook(event["signature"], event["raw"], [secret], now=time.time())


async def trigger(api: Api, template: str, to: str = PHONE, reference: str = REFERENCE) -> str:
    variables = VARS if template != "tpl_confirm_number" else {"customer_name": "Ada Obi"}
    response = await api.call(
        "POST",
        f"/templates/{template}/trigger",
        {"to": to, "variables": variables, "reference": reference},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["message_id"])


# --- replies ------------------------------------------------------------------------------


async def test_reply_to_a_message_carries_its_reference(api: Api, hooks: Receiver) -> None:
    message_id = await trigger(api, "tpl_confirm_number")
    answer = await api.control(
        "POST",
        "/replies",
        {
            "from": PHONE,
            "button_payload": "confirm_number:yes",
            "context_message_id": message_id,
        },
    )
    await settled(api)

    [reply] = of_type(hooks, "message.received")
    assert reply["event_id"] == reply["body"]["id"] == answer["event_id"]
    data = reply["body"]["data"]
    assert data == {
        "message_id": data["message_id"],
        "contact_id": contact_id_for(PHONE),  # created by the trigger
        "from": PHONE,
        "text": None,
        "button_payload": "confirm_number:yes",
        "context": {"message_id": message_id},
        "reference": REFERENCE,
        "bsuid": None,
    }
    assert data["message_id"].startswith("msg_in_")
    assert answer["data"] == data
    assert_signed_with_every_secret(reply)

    log = await api.control("GET", "/webhooks?type=message.received")
    assert [(w["event_id"], w["reference"], w["status_code"]) for w in log] == [
        (answer["event_id"], REFERENCE, 200)
    ]


async def test_reply_without_context_from_an_unknown_number(api: Api, hooks: Receiver) -> None:
    answer = await api.control(
        "POST", "/replies", {"from": OTHER_PHONE, "text": "YES", "bsuid": "NG.ada_obi"}
    )
    [reply] = await hooks.wait_for(1)
    assert reply["event_id"] == answer["event_id"]
    assert reply["body"]["type"] == "message.received"
    assert reply["body"]["data"] == {
        "message_id": answer["data"]["message_id"],
        "contact_id": None,
        "from": OTHER_PHONE,
        "text": "YES",
        "button_payload": None,
        "context": None,
        "reference": None,
        "bsuid": "NG.ada_obi",
    }
    assert_signed_with_every_secret(reply)


async def test_reply_by_context_alone_comes_from_the_recipient(api: Api, hooks: Receiver) -> None:
    message_id = await trigger(api, "tpl_first_time", to=OTHER_PHONE)
    await api.control("POST", "/replies", {"context_message_id": message_id, "text": "thanks"})
    await settled(api)
    [reply] = of_type(hooks, "message.received")
    assert reply["body"]["data"]["from"] == OTHER_PHONE
    assert reply["body"]["data"]["contact_id"] == contact_id_for(OTHER_PHONE)
    assert reply["body"]["data"]["reference"] == REFERENCE


async def test_a_reply_opens_the_service_window(api: Api, hooks: Receiver) -> None:
    send = {"to": PHONE, "text": "Your receipt is on its way"}
    closed = await api.call("POST", "/messages", send)
    assert closed.json()["error"]["code"] == "outside_session_window"

    await api.control("POST", "/replies", {"from": PHONE, "text": "hello", "delay_seconds": 0.05})
    await hooks.wait_for(1)
    assert (await api.call("POST", "/messages", send)).status_code == 202


# --- auto-replies -------------------------------------------------------------------------


async def test_auto_reply_on_trigger_only_for_listed_numbers(api: Api, hooks: Receiver) -> None:
    rule = {"button_payload": "confirm_number:yes", "delay_seconds": 0.05, "numbers": [PHONE]}
    await api.control("PUT", "/auto-replies/tpl_confirm_number", rule)
    assert await api.control("GET", "/auto-replies") == [
        {"template_id": "tpl_confirm_number", "text": None, **rule}
    ]

    mine = await trigger(api, "tpl_confirm_number", reference="confirm:1")
    await trigger(api, "tpl_confirm_number", to=OTHER_PHONE, reference="confirm:2")
    await trigger(api, "tpl_first_time", reference="payment:1")  # no rule for this template
    await settled(api)

    [reply] = of_type(hooks, "message.received")
    assert reply["body"]["data"] == {
        "message_id": reply["body"]["data"]["message_id"],
        "contact_id": contact_id_for(PHONE),
        "from": PHONE,
        "text": None,
        "button_payload": "confirm_number:yes",
        "context": {"message_id": mine},
        "reference": "confirm:1",
        "bsuid": None,
    }
    assert_signed_with_every_secret(reply)
    assert len(of_type(hooks, "message.read")) == 3  # the replies come on top of the statuses

    assert await api.control("DELETE", "/auto-replies") == {"cleared": 1}
    assert await api.control("GET", "/auto-replies") == []


async def test_auto_reply_for_every_recipient_by_default(api: Api, hooks: Receiver) -> None:
    await api.control("PUT", "/auto-replies/tpl_confirm_number", {"text": "NO"})
    for to in (PHONE, OTHER_PHONE):
        await trigger(api, "tpl_confirm_number", to=to)
    await settled(api)
    replies = of_type(hooks, "message.received")
    assert sorted(r["body"]["data"]["from"] for r in replies) == sorted([PHONE, OTHER_PHONE])
    assert {r["body"]["data"]["text"] for r in replies} == {"NO"}


# --- delivery failures --------------------------------------------------------------------


async def test_failure_code_once_then_normal_delivery(api: Api, hooks: Receiver) -> None:
    rule = await api.control(
        "POST", "/delivery-failures", {"code": 131026, "to": PHONE, "times": 1}
    )
    assert rule == {
        "id": rule["id"],
        "code": 131026,
        "title": "Message undeliverable",
        "to": PHONE,
        "template_id": None,
        "remaining": 1,
    }
    await api.control("PUT", "/auto-replies/tpl_first_time", {"text": "ok"})

    failed_id = await trigger(api, "tpl_first_time", reference="payment:1")
    await settled(api)
    delivered_id = await trigger(api, "tpl_first_time", reference="payment:2")
    await settled(api)

    def story(reference: str) -> list[str]:
        events = hooks.events
        return sorted(
            e["body"]["type"] for e in events if e["body"]["data"]["reference"] == reference
        )

    # No delivered or read after a failure, and nobody replies to a message that never arrived.
    assert story("payment:1") == ["message.failed", "message.sent"]
    assert story("payment:2") == [
        "message.delivered",
        "message.read",
        "message.received",
        "message.sent",
    ]
    [failed] = of_type(hooks, "message.failed")
    assert failed["body"]["data"] == {
        "message_id": failed_id,
        "contact_id": contact_id_for(PHONE),
        "to": PHONE,
        "reference": "payment:1",
        "status": "failed",
        "error": {"code": 131026, "title": "Message undeliverable"},
    }
    assert_signed_with_every_secret(failed)

    [used] = await api.control("GET", "/delivery-failures")
    assert used["remaining"] == 0
    errors = {m["message_id"]: m["error"] for m in await api.control("GET", "/messages")}
    assert errors == {
        failed_id: {"code": 131026, "title": "Message undeliverable"},
        delivered_id: None,
    }
    log = await api.control("GET", "/webhooks?type=message.failed")
    assert [(w["message_id"], w["status_code"]) for w in log] == [(failed_id, 200)]


async def test_failure_by_template_with_its_own_title(api: Api, hooks: Receiver) -> None:
    await api.control(
        "POST",
        "/delivery-failures",
        {"code": 131056, "template_id": "tpl_first_time", "title": "Pair limit (test)"},
    )
    for reference in ("payment:1", "payment:2"):
        await trigger(api, "tpl_first_time", reference=reference)
    await trigger(api, "tpl_failed_generic", reference="payment:3")
    await settled(api)

    failed = of_type(hooks, "message.failed")
    assert sorted(e["body"]["data"]["reference"] for e in failed) == ["payment:1", "payment:2"]
    assert {str(e["body"]["data"]["error"]) for e in failed} == {
        str({"code": 131056, "title": "Pair limit (test)"})
    }
    assert [e["body"]["data"]["reference"] for e in of_type(hooks, "message.read")] == ["payment:3"]
    assert await api.control("DELETE", "/delivery-failures") == {"cleared": 1}


# --- conversation state -------------------------------------------------------------------


async def test_conversation_state_with_bsuid(api: Api, hooks: Receiver) -> None:
    contact_id = (await api.call("PUT", "/contacts", {"phone": PHONE})).json()["contact_id"]
    before = time.time()
    opened = await api.control(
        "POST", "/conversations", {"from": PHONE, "state": "open", "bsuid": "NG.ada_obi"}
    )
    [event] = await hooks.wait_for(1)
    assert event["event_id"] == opened["event_id"]
    assert event["body"]["type"] == "conversation.state"
    data = event["body"]["data"]
    assert data == {
        "contact_id": contact_id,
        "from": PHONE,
        "state": "open",
        "window_expires_at": data["window_expires_at"],
        "bsuid": "NG.ada_obi",
    }
    expires = datetime.fromisoformat(data["window_expires_at"]).timestamp()
    assert before + 24 * 3600 - 1 <= expires <= time.time() + 24 * 3600
    assert_signed_with_every_secret(event)
    seen = (await api.call("GET", f"/conversations/{contact_id}")).json()
    assert seen["state"] == "open"
    assert seen["bsuid"] == "NG.ada_obi"
    assert seen["window_expires_at"] == data["window_expires_at"]

    await api.control("POST", "/conversations", {"contact_id": contact_id, "state": "closed"})
    events = await hooks.wait_for(2)
    assert events[1]["body"]["data"] == {
        "contact_id": contact_id,
        "from": PHONE,
        "state": "closed",
        "window_expires_at": None,
        "bsuid": None,
    }
    assert (await api.call("GET", f"/conversations/{contact_id}")).json()["state"] == "closed"


async def test_conversation_of_a_bsuid_only_contact(api: Api, hooks: Receiver) -> None:
    body = {"bsuid": "NG.nameless", "state": "open", "window_expires_at": "2030-01-02T03:04:05Z"}
    await api.control("POST", "/conversations", body)
    [event] = await hooks.wait_for(1)
    assert event["body"]["data"] == {
        "contact_id": None,
        "from": None,
        "state": "open",
        "window_expires_at": "2030-01-02T03:04:05.000Z",
        "bsuid": "NG.nameless",
    }


# --- reset and validation -----------------------------------------------------------------


async def test_reset_clears_auto_replies_and_failures(api: Api, hooks: Receiver) -> None:
    await api.control("PUT", "/auto-replies/tpl_confirm_number", {"text": "YES"})
    await api.control("POST", "/delivery-failures", {"code": 131048})
    await api.control("POST", "/reset")
    assert await api.control("GET", "/auto-replies") == []
    assert await api.control("GET", "/delivery-failures") == []

    templates = {t["id"]: t for t in await api.control("GET", "/templates")}
    assert templates["tpl_confirm_number"] == {
        "id": "tpl_confirm_number",
        "status": "APPROVED",
        "variables": ["customer_name"],
    }
    await trigger(api, "tpl_confirm_number")
    await settled(api)
    assert [e["body"]["type"] for e in hooks.events] == [
        "message.sent",
        "message.delivered",
        "message.read",
    ]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/replies", {"from": PHONE, "text": ""}),
        ("/replies", {"from": PHONE, "text": "   "}),
        ("/replies", {"from": PHONE}),
        ("/replies", {"text": "YES"}),
        ("/replies", {"from": "08031234567", "text": "YES"}),
        ("/replies", {"from": PHONE, "text": "YES", "delay_seconds": -1}),
        ("/replies", {"from": PHONE, "text": "YES", "context": "msg_1"}),
        ("/delivery-failures", {"code": "131026"}),
        ("/delivery-failures", {"code": "undeliverable"}),
        ("/delivery-failures", {"code": 131026.5}),
        ("/delivery-failures", {"code": True}),
        ("/delivery-failures", {"code": 131026, "times": 0}),
        ("/delivery-failures", {"code": 131026, "to": "+2348031234567"}),
        ("/delivery-failures", {}),
        ("/conversations", {"from": PHONE, "state": "maybe"}),
        ("/conversations", {"state": "open"}),
        ("/conversations", {"from": PHONE, "state": "open", "window_expires_at": "tomorrow"}),
        ("/conversations", {"from": PHONE, "state": "open", "window_expires_at": "2030-01-02"}),
    ],
)
async def test_bad_control_bodies_are_422(api: Api, path: str, body: dict[str, Any]) -> None:
    response = await api.http.post(f"{api.base_url}/_sandbox{path}", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [{}, {"text": ""}, {"text": "YES", "numbers": []}, {"text": "YES", "numbers": ["0803"]}],
)
async def test_bad_auto_reply_is_422(api: Api, body: dict[str, Any]) -> None:
    response = await api.http.put(f"{api.base_url}/_sandbox/auto-replies/tpl_x", json=body)
    assert response.status_code == 422, response.text
    assert await api.control("GET", "/auto-replies") == []
