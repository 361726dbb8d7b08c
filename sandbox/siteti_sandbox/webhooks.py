"""Outbound webhooks: Siteti -> the bridge's receipts endpoint.

Each accepted message gets `message.sent`, `message.delivered` and `message.read` events
(or `message.sent` then `message.failed` when a delivery failure was injected for it), each
sent from its own asyncio task after its delay; customer replies (`message.received`) and
`conversation.state` go the same way. Delivery is at least once: a non-2xx
answer or a connection error is retried with exponential backoff, and every attempt is
logged in `state.webhook_log`. The URL and secrets are read at each attempt, so a config
change (or secret rotation) applies to events already queued.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import orjson

from bridge.signing import sign_siteti_webhook

from .messaging import reply_data
from .metrics import Metrics
from .state import Message, SandboxState, iso


class WebhookSender:
    def __init__(self, state: SandboxState, metrics: Metrics) -> None:
        self.state = state
        self.metrics = metrics
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def client(self) -> httpx.AsyncClient:
        # Created lazily too, in case the app runs without its lifespan (e.g. a bare ASGI test).
        if self._client is None:
            self._client = httpx.AsyncClient()
        return self._client

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def schedule_statuses(self, message: Message) -> None:
        """Queue the webhooks that follow a message just accepted: sent/delivered/read, or
        sent/failed when a delivery failure rule matches it, then the auto-reply if any."""
        cfg = self.state.config
        failure = self.state.messaging.failure_for(message.to, message.template_id)
        if failure is not None:
            message.error = failure.error()  # decided (and `times` spent) even without webhooks
        if not cfg.webhook_url:
            return
        delays = {"sent": cfg.delay_sent_seconds}
        if failure is not None:
            # Meta reports a failure where the delivery receipt would have come; no read.
            delays["failed"] = cfg.delay_delivered_seconds
        else:
            delays["delivered"] = cfg.delay_delivered_seconds
            delays["read"] = cfg.delay_read_seconds
            if cfg.shuffle_webhooks:  # the contract allows read before delivered
                delays["delivered"], delays["read"] = delays["read"], delays["delivered"]
        for status, delay in delays.items():
            data: dict[str, Any] = {
                "message_id": message.message_id,
                "contact_id": message.contact_id,
                "to": message.to,
                "reference": message.reference,
                "status": status,
            }
            if status == "failed":
                data["error"] = message.error
            self.emit(f"message.{status}", data, delay)

        auto = self.state.messaging.auto_reply_for(message.template_id, message.to)
        if auto is not None and failure is None:  # nobody answers a message never delivered
            reply = reply_data(
                sender=message.to,
                contact_id=message.contact_id,
                text=auto.text,
                button_payload=auto.button_payload,
                context_message_id=message.message_id,
                reference=message.reference,
                bsuid=None,
            )
            self.schedule_reply(reply, auto.delay_seconds)

    def emit(self, event_type: str, data: dict[str, Any], delay: float) -> str:
        """Queue one webhook, sent after `delay` seconds; returns its event id."""
        event_id = "evt_" + secrets.token_hex(12)
        self._spawn(self._emit(event_id, event_type, data, delay))
        return event_id

    def schedule_reply(self, data: dict[str, Any], delay: float) -> str:
        """Queue a customer's `message.received`; the reply opens their 24 h service window
        when it is sent, as an inbound message does on WhatsApp."""
        event_id = "evt_" + secrets.token_hex(12)

        async def reply() -> None:
            await asyncio.sleep(delay)
            self.state.note_inbound(data["contact_id"], data["from"])
            await self._emit(event_id, "message.received", data, 0)

        self._spawn(reply())
        return event_id

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _emit(
        self, event_id: str, event_type: str, data: dict[str, Any], delay: float
    ) -> None:
        await asyncio.sleep(delay)
        # Built once: every redelivery (retry or duplicate) carries the very same bytes and id.
        body = orjson.dumps(
            {
                "id": event_id,
                "type": event_type,
                "created_at": iso(self.state.now(), "seconds"),
                "data": data,
            }
        )
        copies = 2 if self.state.config.duplicate_webhooks else 1
        await asyncio.gather(
            *(self._deliver(event_id, event_type, data, body, copy) for copy in range(copies))
        )

    async def _deliver(
        self, event_id: str, event_type: str, data: dict[str, Any], body: bytes, copy: int
    ) -> None:
        attempt = 0
        while True:
            attempt += 1
            cfg = self.state.config
            if not cfg.webhook_url:
                return  # webhooks were switched off while this one waited
            headers = {
                "Content-Type": "application/json",
                "X-Siteti-Event-Id": event_id,
                "X-Siteti-Signature": sign_siteti_webhook(
                    cfg.webhook_secrets, int(self.state.now()), body
                ),
            }
            status_code: int | None = None
            error: str | None = None
            try:
                response = await self.client.post(
                    cfg.webhook_url,
                    content=body,
                    headers=headers,
                    # Waiting for one of the sender's own connections is queueing, not the
                    # receiver failing: only connecting, writing and the answer are timed.
                    timeout=httpx.Timeout(cfg.webhook_timeout_seconds, pool=None),
                )
                status_code = response.status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            ok = status_code is not None and 200 <= status_code < 300
            gave_up = not ok and attempt >= cfg.webhook_max_attempts
            self.state.webhook_log.append(
                {
                    "event_id": event_id,
                    "type": event_type,
                    "message_id": data.get("message_id"),
                    "reference": data.get("reference"),
                    "url": cfg.webhook_url,
                    "status_code": status_code,
                    "error": error,
                    "attempt": attempt,
                    "copy": copy + 1,
                    "gave_up": gave_up,
                    "at": iso(self.state.now()),
                }
            )
            self.metrics.webhooks.labels(type=event_type, outcome="ok" if ok else "failed").inc()
            if ok or gave_up:
                return
            await asyncio.sleep(cfg.webhook_backoff_seconds * 2 ** (attempt - 1))

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        self.cancel_all()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
