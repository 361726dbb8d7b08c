"""Webhook providers by name: `/webhooks/{name}` serves `PROVIDERS[name]`."""

from __future__ import annotations

from .base import Provider
from .moniepoint import Moniepoint

PROVIDERS: dict[str, Provider] = {p.name: p for p in (Moniepoint(),)}
