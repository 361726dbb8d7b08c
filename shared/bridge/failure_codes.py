"""What a `message.failed` receipt leads to: Meta's error code → an action, as configuration
(`WHATSAPP_FAILURE_ACTIONS`) with defaults. Pure.

Actions:
- `flag`: the number cannot get WhatsApp messages (131026: not on WhatsApp, or an old
  client). The message goes to manual review and the number is flagged: later messages to it
  are dead-lettered for review (`number_flagged`) instead of sent, until an operator retries
  one (which lifts the flag) or the flag expires with `RETENTION_DAYS`.
- `resend_template`: outside the 24 h window (131047). A free-form message is sent again as
  the rule's template (templates may open a conversation); a message that was a template
  already cannot be helped by sending it again, and goes to manual review.
- `review`: no retry, manual review (131048 spam rate limit, 131049 Meta chose not to
  deliver: sending again makes the number's standing worse).
- `retry`: sent again later (130429 throughput, 131056 pair rate limit), the wait doubling
  from `WHATSAPP_RETRY_BASE_SECONDS` with each earlier re-send of the event (capped at an
  hour); after `WHATSAPP_MAX_RESENDS` re-sends, manual review.

A code the configuration does not name, or a receipt without a code, goes to review.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

Action = Literal["flag", "resend_template", "review", "retry"]
ACTIONS: tuple[Action, ...] = get_args(Action)
DEFAULT_ACTIONS = (
    "131026=flag,131047=resend_template,131048=review,131049=review,130429=retry,131056=retry"
)
UNKNOWN_CODE_ACTION: Action = "review"

# The dead-letter reason of each code (operators filter by it); others: OTHER_REASON.
REASONS: dict[int, str] = {
    131026: "whatsapp_undeliverable",
    131047: "whatsapp_window_closed",
    131048: "whatsapp_spam_limit",
    131049: "whatsapp_ecosystem_limit",
    130429: "whatsapp_rate_limit",
    131056: "whatsapp_pair_limit",
}
OTHER_REASON = "whatsapp_failed"
# Entries for messages Siteti accepted and WhatsApp then refused: a retry of one sends again
# although the event's dedupe key says "done" (dispatcher.recovery).
AFTER_SEND_REASONS = frozenset({*REASONS.values(), OTHER_REASON})
# The wait before a re-send never exceeds this, however many came before.
MAX_RETRY_WAIT_SECONDS = 3600.0


class PolicyError(ValueError):
    """WHATSAPP_FAILURE_ACTIONS cannot be read; the message says where and why."""


def parse_actions(text: str) -> dict[int, Action]:
    """`"131026=flag, 130429=retry"` as {code: action}. Blank entries are skipped; a code
    named twice, a code that is not a positive whole number, or an unknown action is an
    error."""
    actions: dict[int, Action] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        code_text, sep, action = (part.strip() for part in entry.partition("="))
        if not sep:
            raise PolicyError(f"WHATSAPP_FAILURE_ACTIONS: {entry!r} is not code=action")
        if not code_text.isascii() or not code_text.isdigit() or int(code_text) <= 0:
            raise PolicyError(
                f"WHATSAPP_FAILURE_ACTIONS: {code_text!r} is not an error code (a whole number)"
            )
        code = int(code_text)
        if code in actions:
            raise PolicyError(f"WHATSAPP_FAILURE_ACTIONS names {code} twice")
        if action not in ACTIONS:
            raise PolicyError(
                f"WHATSAPP_FAILURE_ACTIONS: {action!r} (for {code}) is not one of "
                + ", ".join(ACTIONS)
            )
        actions[code] = action  # narrowed to Action by the check above
    return actions


@dataclass(frozen=True)
class Decision:
    """What a failed message becomes: a dead-letter entry, and maybe a flagged number."""

    action: Action  # the configured action for the code
    reason: str  # the dead-letter reason
    status: Literal["pending", "manual_review"]
    retry_in: float | None  # seconds until the re-send, for pending entries
    flag: bool  # flag the number
    note: str  # why, for the entry's last error and the audit row

    @property
    def taken(self) -> str:
        """The action as the audit story shows it."""
        if self.status == "pending":
            return "resend_as_template" if self.action == "resend_template" else "retry"
        return "manual_review_flagged" if self.flag else "manual_review"


@dataclass(frozen=True)
class FailurePolicy:
    actions: Mapping[int, Action]
    retry_base_seconds: float = 60.0
    max_resends: int = 5

    @classmethod
    def parse(cls, text: str, retry_base_seconds: float, max_resends: int) -> FailurePolicy:
        if retry_base_seconds < 0 or max_resends < 0:
            raise PolicyError("WHATSAPP_RETRY_BASE_SECONDS and WHATSAPP_MAX_RESENDS are >= 0")
        return cls(parse_actions(text), retry_base_seconds, max_resends)

    def decide(
        self, code: int | None, title: str | None, *, template_id: str | None, resends: int
    ) -> Decision:
        """The decision for a failure with Meta's `code`; `template_id` is the failed
        message's template (None: free-form), `resends` how often the event was re-sent."""
        action = self.actions.get(code, UNKNOWN_CODE_ACTION) if code else UNKNOWN_CODE_ACTION
        reason = REASONS.get(code, OTHER_REASON) if code else OTHER_REASON
        what = f"WhatsApp error {code if code else 'without a code'}" + (
            f" ({title})" if title else ""
        )
        if action == "flag":
            return Decision(action, reason, "manual_review", None, True, f"{what}: number flagged")
        if action == "review":
            return Decision(action, reason, "manual_review", None, False, what)
        if resends >= self.max_resends:
            note = f"{what}: re-sent {resends} times already"
            return Decision(action, reason, "manual_review", None, False, note)
        if action == "resend_template":
            if template_id is not None:
                note = f"{what}: the message was a template already"
                return Decision(action, reason, "manual_review", None, False, note)
            return Decision(action, reason, "pending", 0.0, False, f"{what}: send as a template")
        wait = min(MAX_RETRY_WAIT_SECONDS, self.retry_base_seconds * 2.0 ** min(resends, 32))
        return Decision(action, reason, "pending", wait, False, f"{what}: sent again later")


DEFAULT_POLICY = FailurePolicy(parse_actions(DEFAULT_ACTIONS))
