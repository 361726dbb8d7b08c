"""Webhook providers by name: `/webhooks/{name}` serves `PROVIDERS[name]`."""

from __future__ import annotations

from .base import Provider
from .flutterwave import Flutterwave
from .generic import Generic
from .moniepoint import Moniepoint
from .monnify import Monnify
from .openmarket import OpenMarket
from .paystack import Paystack
from .wasaapay import WasaaPay

PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Moniepoint(),
        Monnify(),
        Paystack(),
        Flutterwave(),
        WasaaPay(),
        OpenMarket(),
        # Reads its signature scheme from get_settings() on first use.
        Generic(),
    )
}
