"""The six webhook adapters beyond Moniepoint, by name, for the provider unit tests.

Unlike `ingest.providers.PROVIDERS`, the generic adapter here has the default signature scheme
(`SignatureScheme()`), not the one get_settings() describes.
"""

from __future__ import annotations

from ingest.providers.base import Provider
from ingest.providers.flutterwave import Flutterwave
from ingest.providers.generic import Generic, SignatureScheme
from ingest.providers.monnify import Monnify
from ingest.providers.openmarket import OpenMarket
from ingest.providers.paystack import Paystack
from ingest.providers.wasaapay import WasaaPay

ADAPTERS: dict[str, Provider] = {
    "monnify": Monnify(),
    "paystack": Paystack(),
    "flutterwave": Flutterwave(),
    "wasaapay": WasaaPay(),
    "openmarket": OpenMarket(),
    "generic": Generic(SignatureScheme()),
}
