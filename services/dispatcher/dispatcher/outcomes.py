"""What became of one event (`Outcome`), and where each kind of failure ends. Pure.

Every path through the pipeline ends in exactly one of: `Sent`, `Duplicate`, or
`DeadLettered`. Which dead-letter reason, status and next attempt a failure gets is decided
here, by `dead_letter_for`, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, get_args

from bridge.failure_codes import AFTER_SEND_REASONS
from bridge.retry import RetryPolicy

from .siteti import SitetiError

Status = Literal["pending", "processing", "completed", "failed", "manual_review"]
STATUSES: tuple[str, ...] = get_args(Status)

# Why an event is dead-lettered, and what happens next.
MISSING_CONTACT = "missing_contact"  # manual_review: fix the directory, then retry
NO_RULE = "no_template_rule"  # manual_review: add a rule
SITETI_UNAVAILABLE = "siteti_unavailable"  # pending: the retrier tries again
TEMPLATE_NOT_APPROVED = "template_not_approved"  # pending: retried once Siteti approves it
# manual_review: Siteti says the template is REJECTED (at the trigger, or when the retrier
# polls it): fix or replace the template (or the rule), then retry.
TEMPLATE_REJECTED = "template_rejected"
# manual_review: a second event for money already announced (dispatcher.doublefire), not
# sent; retry it if it was a genuine second payment (retries skip the check), else close it.
SUSPECTED_DOUBLE_FIRE = "suspected_double_fire"
# manual_review: not a canonical event, or one that failed the same way every attempt (a
# bug); a person reads the error and the payload, then closes it or retries after a fix.
UNPROCESSABLE = "unprocessable"
# Number confirmation (dispatcher.confirmation). pending: a confirmation template went to the
# candidate number; the customer's reply releases the event (sent, in order) or declines it;
# the retrier takes it when NUMBER_CONFIRMATION_TIMEOUT has passed without a reply.
AWAITING_NUMBER_CONFIRMATION = "awaiting_number_confirmation"
NUMBER_DECLINED = "number_declined"  # manual_review: the candidate said it is not theirs
NUMBER_CONFIRMATION_TIMEOUT = "number_confirmation_timeout"  # manual_review: no reply in time
# manual_review: the number is flagged (a message to it failed with a WhatsApp code whose
# action is `flag`, 131026 by default): nothing sent. An operator's retry lifts the flag and
# sends (fix the number in the directory first when it is wrong).
NUMBER_FLAGGED = "number_flagged"
# Written by receipts, for messages Siteti accepted and WhatsApp then refused, one reason per
# code (bridge.failure_codes.REASONS: whatsapp_undeliverable, whatsapp_window_closed,
# whatsapp_spam_limit, whatsapp_ecosystem_limit, whatsapp_rate_limit, whatsapp_pair_limit,
# whatsapp_failed). pending: the retrier sends again under a new Idempotency-Key when due;
# manual_review: a person decides (an operator's retry sends again).
WHATSAPP_REASONS = AFTER_SEND_REASONS
# Any other Siteti refusal is dead-lettered for manual review under Siteti's own error code.


@dataclass(frozen=True)
class Sent:
    message_id: str | None
    replayed: bool  # Siteti answered an earlier attempt's stored answer: nothing new sent

    @property
    def label(self) -> str:
        return "sent"


@dataclass(frozen=True)
class Duplicate:
    state: str  # "done" (sent before) or "parked" (in the dead-letter store)

    @property
    def label(self) -> str:
        return "duplicate"


@dataclass(frozen=True)
class DeadLettered:
    reason: str
    status: Status  # "pending" (the retrier tries again) or "manual_review"
    error: str
    retry_in: timedelta | None = None  # for pending entries with a set wait
    template_id: str | None = None  # the template the message needs, when one was chosen

    @property
    def label(self) -> str:
        """The name retry reports and the admin API use: `dead_lettered:<reason>`."""
        return f"dead_lettered:{self.reason}"


Outcome = Sent | Duplicate | DeadLettered


# --- failures, and where each ends --------------------------------------------------------


@dataclass(frozen=True)
class MissingContact:
    customer_found: bool  # in the directory, but without a WhatsApp number


@dataclass(frozen=True)
class NoRule:
    detail: str  # which rule could not be chosen or filled, and why


@dataclass(frozen=True)
class Unprocessable:
    error: str  # what failed, the same way, every attempt


@dataclass(frozen=True)
class Unconfirmed:
    """The customer's number is a candidate they have not confirmed (dispatcher.confirmation)."""

    state: Literal["waiting", "declined", "timeout", "no_rule"]
    detail: str
    wait: timedelta | None = None  # waiting: until the request expires


@dataclass(frozen=True)
class SuspectedDoubleFire:
    first_event_id: str  # the event this one repeats, already sent or on its way
    first_reference: str


@dataclass(frozen=True)
class TemplateRejected:
    template_id: str  # Siteti answered REJECTED when the retrier asked about it


Failure = (
    MissingContact
    | NoRule
    | Unprocessable
    | Unconfirmed
    | SuspectedDoubleFire
    | TemplateRejected
    | SitetiError
)


def dead_letter_for(
    failure: Failure, *, policy: RetryPolicy, template_id: str | None = None
) -> DeadLettered:
    """The dead-letter entry a failure becomes: reason, status and when to try again."""
    if isinstance(failure, MissingContact):
        where = "" if failure.customer_found else " (customer not found)"
        return DeadLettered(
            MISSING_CONTACT,
            "manual_review",
            f"no WhatsApp number in the customer directory{where}",
        )
    if isinstance(failure, NoRule):
        return DeadLettered(NO_RULE, "manual_review", failure.detail)
    if isinstance(failure, Unprocessable):
        return DeadLettered(UNPROCESSABLE, "manual_review", failure.error)
    if isinstance(failure, Unconfirmed):
        reason = {
            "waiting": AWAITING_NUMBER_CONFIRMATION,
            "declined": NUMBER_DECLINED,
            "timeout": NUMBER_CONFIRMATION_TIMEOUT,
            "no_rule": MISSING_CONTACT,  # nothing to ask with: as if there were no number
        }[failure.state]
        waiting = failure.state == "waiting"
        return DeadLettered(
            reason, "pending" if waiting else "manual_review", failure.detail, failure.wait
        )
    if isinstance(failure, SuspectedDoubleFire):
        return DeadLettered(
            SUSPECTED_DOUBLE_FIRE,
            "manual_review",
            f"suspected double-fire of {failure.first_reference} (event {failure.first_event_id});"
            " retry to send it anyway",
        )
    if isinstance(failure, TemplateRejected):
        return _rejected(failure.template_id)
    if failure.transient:
        # The pipeline's own retries are spent: the retrier tries again after the longest
        # backoff the policy allows.
        return DeadLettered(
            SITETI_UNAVAILABLE,
            "pending",
            f"gave up after {policy.max_retries} retries: {failure}",
            retry_in=timedelta(seconds=policy.max_seconds),
            template_id=template_id,
        )
    if failure.code == TEMPLATE_NOT_APPROVED:
        status = failure.detail.get("template_status", "not approved")
        if status == "REJECTED":  # waiting would be forever
            return _rejected(template_id)
        return DeadLettered(
            TEMPLATE_NOT_APPROVED, "pending", f"{template_id} is {status}", template_id=template_id
        )
    return DeadLettered(failure.code, "manual_review", str(failure), template_id=template_id)


def _rejected(template_id: str | None) -> DeadLettered:
    return DeadLettered(
        TEMPLATE_REJECTED, "manual_review", f"{template_id} is REJECTED", template_id=template_id
    )
