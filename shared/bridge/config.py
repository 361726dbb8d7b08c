"""Settings from the environment, with documented defaults.

Precedence: real environment variables, then the file named by `BRIDGE_ENV_FILE` (default
`.stack/env`, written by `make stack-up`) and `secrets.env` beside it (local secrets that
`make up` generates), then the defaults below. Secret lists are
comma-separated: every listed value is accepted, so secrets can rotate without downtime.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SecretList = Annotated[list[str], NoDecode]


_ENV_FILE = Path(os.environ.get("BRIDGE_ENV_FILE", ".stack/env"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        # secrets.env holds the local stack's generated secrets (never committed).
        env_file=(_ENV_FILE, _ENV_FILE.with_name("secrets.env")),
        env_file_encoding="utf-8",
        extra="ignore",
    )

    # Infrastructure
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql://bridge:bridge@127.0.0.1:5432/bridge"

    # Siteti
    siteti_base_url: str = "http://127.0.0.1:8090/v2.6/accounts/acc_sandbox"
    siteti_api_key: str = ""
    siteti_signing_secret: str = ""
    siteti_webhook_secrets: SecretList = Field(default_factory=list)
    siteti_timeout_seconds: float = 10.0
    siteti_rate_limit_per_minute: int = 60

    # Retry policy for Siteti calls: base * factor**attempt, full jitter, capped.
    siteti_retry_base_seconds: float = 1.0
    siteti_retry_factor: float = 2.0
    siteti_retry_max_seconds: float = 60.0
    siteti_max_retries: int = 5

    # Provider secrets
    moniepoint_webhook_secrets: SecretList = Field(default_factory=list)
    monnify_client_secrets: SecretList = Field(default_factory=list)
    paystack_secret_keys: SecretList = Field(default_factory=list)
    flutterwave_secret_hashes: SecretList = Field(default_factory=list)
    wasaapay_webhook_secrets: SecretList = Field(default_factory=list)
    openmarket_private_keys: SecretList = Field(default_factory=list)
    generic_webhook_secrets: SecretList = Field(default_factory=list)
    # Flutterwave "verify before process": GET {base}/v3/transactions/{id}/verify, Bearer key.
    flutterwave_api_base_url: str = "http://127.0.0.1:8091"
    flutterwave_secret_key: str = ""
    # The generic source's signature scheme: "standard-webhooks" (webhook-id/-timestamp/
    # -signature, whsec_ secrets) or "hmac" (one header, the settings below).
    generic_signature_scheme: str = "standard-webhooks"
    generic_signature_header: str = "x-signature"
    generic_signature_algorithm: str = "sha256"
    generic_signature_encoding: str = "hex"
    generic_signature_prefix: str = ""
    generic_timestamp_tolerance_seconds: int = 300

    # Services
    ingest_port: int = 8000
    receipts_port: int = 8001
    dispatcher_metrics_port: int = 8002
    sandbox_port: int = 8090
    max_body_bytes: int = 1024 * 1024
    kafka_send_timeout_seconds: float = 10.0

    # Dispatcher
    dispatcher_lanes: int = 16
    dedupe_ttl_seconds: int = 7 * 24 * 3600
    dedupe_lease_seconds: int = 120
    customer_cache_ttl_seconds: int = 300
    missing_contact_wait_seconds: float = 5.0
    default_country: str = "NG"

    log_level: str = "INFO"

    @field_validator(
        "siteti_webhook_secrets",
        "moniepoint_webhook_secrets",
        "monnify_client_secrets",
        "paystack_secret_keys",
        "flutterwave_secret_hashes",
        "wasaapay_webhook_secrets",
        "openmarket_private_keys",
        "generic_webhook_secrets",
        mode="before",
    )
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
