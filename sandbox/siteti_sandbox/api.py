"""The Siteti v2.6 endpoints as plain synchronous functions over the in-memory state.

Authentication, rate limiting, failure injection and idempotency happen before these run
(see `pipeline.py`); a handler only validates its input and changes state.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .state import SESSION_WINDOW_SECONDS, Contact, Message, SandboxState, contact_id_for, iso
from .webhooks import WebhookSender


@dataclass
class ApiResult:
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def result(self, headers: dict[str, str] | None = None) -> ApiResult:
        error = {"code": self.code, "message": self.message, **self.extra}
        return ApiResult(self.status, {"error": error}, headers or {})


@dataclass
class ApiContext:
    state: SandboxState
    sender: WebhookSender


Handler = Callable[[ApiContext, dict[str, str], Any], ApiResult]

# International format without "+": no leading 0 (no country code starts with 0), 10-15
# digits; Nigerian numbers are 234 + a 10-digit mobile number starting 7, 8 or 9.
_PHONE = re.compile(r"[1-9][0-9]{9,14}")
_NIGERIA = re.compile(r"234[789][0-9]{9}")


def valid_phone(value: object) -> bool:
    if not isinstance(value, str) or not _PHONE.fullmatch(value):
        return False
    return not value.startswith("234") or bool(_NIGERIA.fullmatch(value))


def _invalid(message: str, **extra: Any) -> ApiError:
    return ApiError(422, "validation_error", message, **extra)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _invalid("the body must be a JSON object")
    return body


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise _invalid(f"{name} must be a string", field=name)
    return value


def _new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def _ensure_contact(state: SandboxState, phone: str) -> Contact:
    existing = state.contacts_by_phone.get(phone)
    if existing is not None:
        return state.contacts[existing]
    now = iso(state.now())
    contact = Contact(contact_id_for(phone), phone, None, {}, [], now, now)
    state.contacts[contact.contact_id] = contact
    state.contacts_by_phone[phone] = contact.contact_id
    return contact


# --- handlers -----------------------------------------------------------------------------


def upsert_contact(ctx: ApiContext, params: dict[str, str], body: Any) -> ApiResult:
    body = _object(body)
    phone = body.get("phone")
    if not valid_phone(phone):
        raise ApiError(
            422, "invalid_phone", "phone must be international digits without +", phone=phone
        )
    assert isinstance(phone, str)
    name = _optional_str(body, "name")
    attributes = body.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        raise _invalid("attributes must be an object", field="attributes")
    segments = body.get("segments")
    if segments is not None and not (
        isinstance(segments, list) and all(isinstance(s, str) for s in segments)
    ):
        raise _invalid("segments must be a list of strings", field="segments")

    created = phone not in ctx.state.contacts_by_phone
    contact = _ensure_contact(ctx.state, phone)
    # Fields left out keep their stored value; fields sent replace it.
    if name is not None:
        contact.name = name
    if attributes is not None:
        contact.attributes = dict(attributes)
    if segments is not None:
        contact.segments = list(segments)
    contact.updated_at = iso(ctx.state.now())
    return ApiResult(200, {"contact_id": contact.contact_id, "phone": phone, "created": created})


def delete_contact(ctx: ApiContext, params: dict[str, str], body: Any) -> ApiResult:
    contact = ctx.state.contacts.pop(params["contact_id"], None)
    if contact is None:
        raise ApiError(404, "contact_not_found", f"no contact {params['contact_id']}")
    ctx.state.contacts_by_phone.pop(contact.phone, None)
    ctx.state.sessions.pop(contact.contact_id, None)
    ctx.state.bsuids.pop(contact.contact_id, None)
    return ApiResult(204, None)


def trigger_template(ctx: ApiContext, params: dict[str, str], body: Any) -> ApiResult:
    template = ctx.state.templates.get(params["template_id"])
    if template is None:
        raise ApiError(404, "template_not_found", f"no template {params['template_id']}")
    if template.status != "APPROVED":
        raise ApiError(
            404,
            "template_not_approved",
            f"template {template.id} is {template.status}",
            template_status=template.status,
        )
    body = _object(body)
    to = body.get("to")
    if not valid_phone(to):
        raise _invalid("to must be an international phone number without +", field="to")
    assert isinstance(to, str)
    variables = body.get("variables", {})
    if not isinstance(variables, dict):
        raise _invalid("variables must be an object", field="variables")
    missing = [v for v in template.required if variables.get(v) in (None, "")]
    if missing:
        raise _invalid(f"missing template variables: {', '.join(missing)}", missing=missing)
    wrong = [k for k, v in variables.items() if v is not None and not isinstance(v, str)]
    if wrong:
        raise _invalid(f"template variables must be strings: {', '.join(wrong)}", fields=wrong)
    reference = _optional_str(body, "reference")
    # The client's contact_id is echoed as given; without one, the contact of `to` is used
    # (created if needed, as a messaging platform does on first send).
    contact_id = _optional_str(body, "contact_id") or _ensure_contact(ctx.state, to).contact_id

    message = Message(
        message_id=_new_message_id(),
        template_id=template.id,
        to=to,
        contact_id=contact_id,
        variables=dict(variables),
        text=None,
        reference=reference,
        at=iso(ctx.state.now()),
    )
    ctx.state.messages.append(message)
    ctx.sender.schedule_statuses(message)
    return ApiResult(
        202, {"message_id": message.message_id, "status": "queued", "reference": reference}
    )


def send_message(ctx: ApiContext, params: dict[str, str], body: Any) -> ApiResult:
    body = _object(body)
    to = body.get("to")
    if not valid_phone(to):
        raise _invalid("to must be an international phone number without +", field="to")
    assert isinstance(to, str)
    text = body.get("text")
    if not isinstance(text, str) or not text:
        raise _invalid("text must be a non-empty string", field="text")
    reference = _optional_str(body, "reference")
    contact_id = ctx.state.contacts_by_phone.get(to)
    if ctx.state.session_opened_at(contact_id, to) is None:
        raise ApiError(
            422, "outside_session_window", "no open 24-hour service window; use a template"
        )
    message = Message(
        message_id=_new_message_id(),
        template_id=None,
        to=to,
        contact_id=contact_id or _ensure_contact(ctx.state, to).contact_id,
        variables=None,
        text=text,
        reference=reference,
        at=iso(ctx.state.now()),
    )
    ctx.state.messages.append(message)
    ctx.sender.schedule_statuses(message)
    return ApiResult(202, {"message_id": message.message_id, "status": "queued"})


def get_conversation(ctx: ApiContext, params: dict[str, str], body: Any) -> ApiResult:
    contact = ctx.state.contacts.get(params["contact_id"])
    if contact is None:
        raise ApiError(404, "contact_not_found", f"no contact {params['contact_id']}")
    opened = ctx.state.session_opened_at(contact.contact_id, contact.phone)
    return ApiResult(
        200,
        {
            "contact_id": contact.contact_id,
            "state": "open" if opened is not None else "closed",
            "window_expires_at": iso(opened + SESSION_WINDOW_SECONDS) if opened else None,
            "last_inbound_at": iso(opened) if opened is not None else None,
            "bsuid": ctx.state.bsuids.get(contact.contact_id),
        },
    )


def get_template(ctx: ApiContext, params: dict[str, str], body: Any) -> ApiResult:
    template = ctx.state.templates.get(params["template_id"])
    if template is None:
        raise ApiError(404, "template_not_found", f"no template {params['template_id']}")
    return ApiResult(200, template.public())


# --- routing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    template: str  # for metrics labels
    handler: Handler


def _route(method: str, template: str, handler: Handler) -> Route:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return Route(method, re.compile(regex), template, handler)


ROUTES = [
    _route("PUT", "/contacts", upsert_contact),
    _route("DELETE", "/contacts/{contact_id}", delete_contact),
    _route("POST", "/templates/{template_id}/trigger", trigger_template),
    _route("GET", "/templates/{template_id}", get_template),
    _route("POST", "/messages", send_message),
    _route("GET", "/conversations/{contact_id}", get_conversation),
]


def match(method: str, subpath: str) -> tuple[Route, dict[str, str]]:
    """The route for a path relative to the account base; ApiError 404/405 otherwise."""
    allowed = False
    for route in ROUTES:
        found = route.pattern.fullmatch(subpath)
        if found:
            if route.method == method:
                return route, found.groupdict()
            allowed = True
    if allowed:
        raise ApiError(405, "method_not_allowed", f"{method} is not allowed on this path")
    raise ApiError(404, "not_found", "no such endpoint")
