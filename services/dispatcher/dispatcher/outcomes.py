"""What became of one event (`Outcome`), and where each kind of failure ends. Pure.

Every path through the pipeline ends in exactly one of: `Sent`, `Duplicate`, or
`DeadLettered`. Which dead-letter reason, status and next attempt a failure gets is decided
here, by `dead_letter_for`, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, get_args

from bridge.retry import RetryPolicy

from .siteti import SitetiError

Status = Literal["pending", "processing", "completed", "failed", "manual_review"]
STATUSES: tuple[str, ...] = get_args(Status)

# Why an event is dead-lettered, and what happens next.
MISSING_CONTACT = "missing_contact"  # manual_review: fix the directory, then retry
NO_RULE = "no_template_rule"  # manual_review: add a rule
SITETI_UNAVAILABLE = "siteti_unavailable"  # pending: the retrier tries again
TEMPLATE_NOT_APPROVED = "template_not_approved"  # pending: retried once Siteti approves it
# manual_review: not a canonical event, or one that failed the same way every attempt (a
# bug); a person reads the error and the payload, then closes it or retries after a fix.
UNPROCESSABLE = "unprocessable"
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


Failure = MissingContact | NoRule | Unprocessable | SitetiError


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
        return DeadLettered(
            TEMPLATE_NOT_APPROVED, "pending", f"{template_id} is {status}", template_id=template_id
        )
    return DeadLettered(failure.code, "manual_review", str(failure), template_id=template_id)
