"""The `/_sandbox/` control API for tests and demos. No auth: the sandbox is a loopback tool."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from .state import SandboxState, Template, TemplateStatus
from .webhooks import WebhookSender


class ConfigUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate_limit_per_minute: int | None = Field(default=None, ge=0)
    delay_sent_seconds: float | None = Field(default=None, ge=0)
    delay_delivered_seconds: float | None = Field(default=None, ge=0)
    delay_read_seconds: float | None = Field(default=None, ge=0)
    webhook_url: str | None = None  # "" or null: no webhooks
    webhook_secrets: list[str] | None = None
    duplicate_webhooks: bool | None = None
    shuffle_webhooks: bool | None = None
    webhook_max_attempts: int | None = Field(default=None, ge=1)
    webhook_backoff_seconds: float | None = Field(default=None, ge=0)
    webhook_timeout_seconds: float | None = Field(default=None, gt=0)
    api_keys: list[str] | None = None
    signing_secrets: list[str] | None = None
    open_session_for: list[str] | None = None  # contact ids (or phones); replaces the set


class TemplateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: TemplateStatus
    variables: list[str] | None = None  # a trailing "?" marks an optional variable


class FailureSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["error_5xx", "rate_limit_storm", "maintenance", "timeout"]
    share: float = Field(default=1.0, ge=0, le=1)
    duration_seconds: float | None = Field(default=None, gt=0)
    count: int | None = Field(default=None, ge=1)
    retry_after: int = Field(default=5, ge=0)
    status: int = Field(default=500, ge=500, le=599)
    timeout_seconds: float = Field(default=30.0, ge=0)
    paths: str | list[str] | None = None  # substrings of the request path; any one matches
    seed: int | None = None  # makes a `share` below 1 reproducible
    # Run the call for real first (message accepted, idempotency stored, webhooks queued),
    # then answer with the failure: the "answer lost" case that idempotency keys exist for.
    after_processing: bool = False


class ApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # In the body, not the path: a key stays out of access logs.
    key: str = Field(min_length=1)


def config_view(state: SandboxState) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(state.config):
        if f.name == "clock":
            continue
        value = getattr(state.config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    out["open_session_for"] = sorted(state.sessions)
    return out


def _matches_reference(call: dict[str, Any], reference: str) -> bool:
    return any(
        isinstance(part, dict) and part.get("reference") == reference
        for part in (call["body"], call["response"])
    )


def control_router(state: SandboxState, sender: WebhookSender) -> APIRouter:
    router = APIRouter(prefix="/_sandbox", tags=["sandbox control"])

    @router.post("/reset")
    async def reset() -> dict[str, str]:
        sender.cancel_all()
        state.reset()
        return {"status": "ok"}

    @router.get("/calls")
    async def calls(
        reference: str | None = None, path_contains: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            c
            for c in state.calls
            if (reference is None or _matches_reference(c, reference))
            and (path_contains is None or path_contains in c["path"])
        ]

    @router.get("/messages")
    async def messages(reference: str | None = None) -> list[dict[str, Any]]:
        return [m.public() for m in state.messages if reference is None or m.reference == reference]

    @router.get("/contacts")
    async def contacts() -> list[dict[str, Any]]:
        return [c.public() for c in state.contacts.values()]

    @router.get("/webhooks")
    async def webhooks(
        reference: str | None = None, type: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            w
            for w in state.webhook_log
            if (reference is None or w["reference"] == reference)
            and (type is None or w["type"] == type)
        ]

    @router.get("/config")
    async def get_config() -> dict[str, Any]:
        return config_view(state)

    @router.put("/config")
    async def put_config(update: ConfigUpdate) -> dict[str, Any]:
        changes = update.model_dump(exclude_unset=True)
        sessions = changes.pop("open_session_for", None)
        if "webhook_url" in changes:
            changes["webhook_url"] = (changes["webhook_url"] or "").strip()
        for name, value in list(changes.items()):
            if value is None:
                del changes[name]  # null means "leave as is" for the non-nullable settings
            elif isinstance(value, list):
                changes[name] = tuple(value)
        state.update_config(**changes)
        if sessions is not None:
            state.open_sessions(sessions)
        return config_view(state)

    @router.post("/api-keys")
    async def add_api_key(body: ApiKey) -> dict[str, int]:
        state.add_api_key(body.key)
        return {"active_keys": len(state.config.api_keys)}

    @router.delete("/api-keys")
    async def revoke_api_key(body: ApiKey) -> dict[str, int]:
        if not state.revoke_api_key(body.key):
            raise HTTPException(404, "no such active API key")
        return {"active_keys": len(state.config.api_keys)}

    @router.get("/templates")
    async def templates() -> list[dict[str, Any]]:
        return [
            {"id": t.id, "status": t.status, "variables": t.variables}
            for t in state.templates.values()
        ]

    @router.put("/templates/{template_id}")
    async def put_template(template_id: str, update: TemplateUpdate) -> dict[str, Any]:
        current = state.templates.get(template_id)
        variables = update.variables
        if variables is None:
            variables = current.variables if current else []
        template = Template(template_id, update.status, list(variables))
        state.templates[template_id] = template
        return {"id": template.id, "status": template.status, "variables": template.variables}

    @router.delete("/templates/{template_id}")
    async def delete_template(template_id: str) -> dict[str, str]:
        if state.templates.pop(template_id, None) is None:
            raise HTTPException(404, "no such template")
        return {"status": "deleted"}

    @router.get("/failures")
    async def failures() -> list[dict[str, Any]]:
        return [r.public() for r in state.failures.rules]

    @router.post("/failures")
    async def add_failure(spec: FailureSpec) -> dict[str, Any]:
        return state.failures.add(state.now(), spec.model_dump()).public()

    @router.delete("/failures")
    async def clear_failures() -> dict[str, int]:
        cleared = len(state.failures.rules)
        state.failures.clear()
        return {"cleared": cleared}

    @router.get("/stats")
    async def stats() -> dict[str, Any]:
        return {**state.stats(), "webhooks_pending": sender.pending}

    return router
