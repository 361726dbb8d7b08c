from __future__ import annotations

import pytest

from bridge.config import Settings
from ingest.app import create_app
from ingest.providers.generic import Generic, SignatureScheme


def test_standard_webhooks_secret_must_be_base64() -> None:
    generic = Generic(SignatureScheme())
    generic.check_configuration(["whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="])
    with pytest.raises(ValueError, match="GENERIC_WEBHOOK_SECRETS"):
        generic.check_configuration(["whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA"])


def test_ingest_refuses_to_start_with_an_unusable_secret() -> None:
    settings = Settings(generic_webhook_secrets=["whsec_not-base64!"])
    with pytest.raises(ValueError, match="whsec_"):
        create_app(settings)
