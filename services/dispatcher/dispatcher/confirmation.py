"""Number confirmation (pending enrichment), the pure part: which number needs confirming,
what a customer's reply means, and what becomes of an event waiting on a confirmation.

When the directory's number is marked unconfirmed (`phone_confirmed` false), or the directory
knows the customer without a number and the event gives one, the event does not go out and
does not go to manual review: it waits (`awaiting_number_confirmation`, pending) while a
confirmation template goes once to the candidate number. The customer's reply releases every
event that waits (sent once each, in order) or declines them; without a reply within
NUMBER_CONFIRMATION_TIMEOUT they go to manual review. `confirmation_requests` does the I/O;
`replies` reads the replies topic.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from .customers import CustomerRecord

Intent = Literal["confirm", "decline"]
RequestStatus = Literal["requested", "confirmed", "declined", "expired"]

# The confirmation template's quick-reply buttons (the sandbox's and the guide's payloads).
CONFIRM_PAYLOAD = "confirm_number:yes"
DECLINE_PAYLOAD = "confirm_number:no"

# Whole replies, once normalised (`_normalise`). Replies are matched whole, or by their
# first word when nothing after it says the opposite: "yes, this is Ada" confirms, "yes no"
# means nothing.
_CONFIRM_PHRASES = frozenset(
    {
        "yes",
        "y",
        "yeah",
        "yep",
        "yes its me",
        "yes it is me",
        "its me",
        "it is me",
        "this is me",
        "thats me",
        "1",
        "confirm",
        "confirmed",
        "correct",
    }
)
_DECLINE_PHRASES = frozenset(
    {
        "no",
        "n",
        "nope",
        "not me",
        "no not me",
        "its not me",
        "it is not me",
        "no its not me",
        "wrong number",
        "wrong",
        "2",
        "decline",
        "not mine",
    }
)
_CONFIRM_WORDS = frozenset({"yes", "yeah", "yep", "confirm", "confirmed", "correct"})
_DECLINE_WORDS = frozenset({"no", "nope", "not", "wrong", "decline"})
_NOT_WORDS = re.compile(r"[^\w\s]")


def _normalise(text: str) -> str:
    """Lower case, compatibility forms (full-width letters), no punctuation or apostrophes
    ("it's" is "its"), single spaces."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NOT_WORDS.sub("", folded).split())


def reply_intent(text: str | None, button_payload: str | None) -> Intent | None:
    """Whether a customer's reply confirms or declines the number, or says neither.

    A quick-reply button decides when it is one of ours; otherwise the text does.
    """
    payload = (button_payload or "").strip().casefold()
    if payload == CONFIRM_PAYLOAD:
        return "confirm"
    if payload == DECLINE_PAYLOAD:
        return "decline"
    said = _normalise(text or "")
    if said in _CONFIRM_PHRASES:
        return "confirm"
    if said in _DECLINE_PHRASES:
        return "decline"
    words = said.split()
    if not words:
        return None
    rest = set(words[1:])
    if words[0] in _CONFIRM_WORDS and not rest & _DECLINE_WORDS:
        return "confirm"
    if words[0] in _DECLINE_WORDS and not rest & _CONFIRM_WORDS:
        return "decline"
    return None


@dataclass(frozen=True)
class Candidate:
    """A number to confirm with a directory customer before anything is sent to it."""

    customer_id: int
    phone: str  # Siteti's form
    supplied: bool  # from the event (the directory has no number), not the directory


def candidate_number(
    customer: CustomerRecord | None, supplied: Callable[[], str | None]
) -> Candidate | None:
    """The number to ask, when the event must wait for a confirmation; None when it goes on
    as before (a confirmed number is sent to; no number at all is `missing_contact`).

    `supplied` gives the event's own number; it is asked only for a directory customer
    without a number (so the hot path opens nothing). A customer the directory does not know
    at all is sent to at the event's number, as the sources that give one always were.
    """
    if customer is None or customer.id is None:
        return None
    if customer.phone:
        if customer.phone_confirmed:
            return None
        return Candidate(customer.id, customer.phone, supplied=False)
    phone = supplied()
    return Candidate(customer.id, phone, supplied=True) if phone else None


@dataclass(frozen=True)
class Request:
    """A confirmation request as stored (`number_confirmations`)."""

    id: int
    status: RequestStatus
    expires_at: datetime
    message_id: str | None
    reference: str
    template_id: str

    def open_at(self, now: datetime) -> bool:
        return self.status == "requested" and now < self.expires_at


@dataclass(frozen=True)
class Decision:
    """What becomes of an event whose number needs confirming.

    ask: open a request and send it; wait: wait for `request` (sending it if it never went
    out); declined / timeout: manual review.
    """

    kind: Literal["ask", "wait", "declined", "timeout"]
    request: Request | None = None


def decide(linked: Request | None, latest: Request | None, now: datetime) -> Decision:
    """`linked`: the request this event already waits for (a retry of it), if it is for the
    same customer and number; `latest`: the latest request for that customer and number.

    An event settles with its own request: declined, or timed out once it expired. A new event
    joins an open request, is declined at once when the customer has declined that number
    (nobody is asked twice), and otherwise asks (again, after an expired or stale request).
    """
    if linked is not None:
        if linked.status == "declined":
            return Decision("declined", linked)
        if linked.status == "expired" or (
            linked.status == "requested" and now >= linked.expires_at
        ):
            return Decision("timeout", linked)
        if linked.status == "requested":
            return Decision("wait", linked)
    if latest is not None:
        if latest.status == "declined":
            return Decision("declined", latest)
        if latest.open_at(now):
            return Decision("wait", latest)
    return Decision("ask")


@dataclass(frozen=True)
class Reply:
    """What a reply (bridge.replies.v1 `data`) says, for matching it to a request."""

    message_id: str | None
    from_index: str | None
    context_message_id: str | None
    reference: str | None
    intent: Intent | None


def reply_of(data: dict[str, object]) -> Reply:
    """A reply from the replies topic's `data`; wrong types read as absent (outside input)."""

    def text(name: str) -> str | None:
        value = data.get(name)
        return value if isinstance(value, str) and value else None

    return Reply(
        message_id=text("message_id"),
        from_index=text("from_index"),
        context_message_id=text("context_message_id"),
        reference=text("reference"),
        intent=reply_intent(text("text"), text("button_payload")),
    )


def answered(request: Request, intent: Intent, now: datetime) -> RequestStatus | None:
    """The status a reply moves an open request to; None when it is too late (expired: the
    timeout has sent, or will send, its events to manual review) or already answered."""
    if not request.open_at(now):
        return None
    return "confirmed" if intent == "confirm" else "declined"
