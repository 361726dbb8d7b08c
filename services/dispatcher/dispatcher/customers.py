"""Customer records as the directory keeps them, and the tiers a customer can be in. No I/O:
the directory (PostgreSQL, Redis) and the template rules both read these."""

from __future__ import annotations

from dataclasses import dataclass

TIERS = ("first_time", "returning")


@dataclass(frozen=True)
class CustomerRecord:
    id: int | None
    account_number: str | None
    email: str | None
    phone: str | None
    name: str | None
    tier: str
    late_payments: int
    contact_id: str | None
    # False: `phone` is a candidate the customer has not confirmed (dispatcher.confirmation).
    phone_confirmed: bool = True
