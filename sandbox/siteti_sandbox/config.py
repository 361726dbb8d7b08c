"""Sandbox configuration, read from the environment (defaults in brackets).

- `SANDBOX_HOST` [127.0.0.1], `SANDBOX_PORT` [8090]: where `python -m siteti_sandbox` listens.
- `SANDBOX_LOG_LEVEL` [info]: uvicorn's log level.
- `SANDBOX_ACCOUNT_ID` [acc_sandbox]: the API lives under `/v2.6/accounts/<id>`.
- `SANDBOX_API_KEYS` [sk_sandbox_1]: comma list of accepted bearer keys (rotation window);
  at run time `POST` / `DELETE /_sandbox/api-keys` with `{"key": "…"}` adds or revokes one.
- `SANDBOX_SIGNING_SECRET` [siteti_signing_secret_1]: request-signing secret (a comma list is
  accepted too, so a rotation can be rehearsed).
- `SANDBOX_WEBHOOK_URL` [empty = no webhooks]: where outbound webhooks are POSTed.
- `SANDBOX_WEBHOOK_SECRETS` [siteti_webhook_secret_1]: comma list; each adds a `v1=` value.
- `SANDBOX_RATE_LIMIT_PER_MINUTE` [60]: calls per fixed 60 s window, per account.
- `SANDBOX_DELAY_SENT_SECONDS` [0.2], `SANDBOX_DELAY_DELIVERED_SECONDS` [0.5],
  `SANDBOX_DELAY_READ_SECONDS` [1.0]: when each status webhook is sent, counted from the
  moment the message was accepted (not from the previous webhook).
- `SANDBOX_WEBHOOK_MAX_ATTEMPTS` [6], `SANDBOX_WEBHOOK_BACKOFF_SECONDS` [0.5]: retry policy of
  the webhook sender (waits 0.5, 1, 2, 4… s between attempts).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 8090
    log_level: str = "info"
    account_id: str = "acc_sandbox"
    api_keys: tuple[str, ...] = ("sk_sandbox_1",)
    signing_secrets: tuple[str, ...] = ("siteti_signing_secret_1",)
    webhook_url: str = ""
    webhook_secrets: tuple[str, ...] = ("siteti_webhook_secret_1",)
    rate_limit_per_minute: int = 60
    delay_sent_seconds: float = 0.2
    delay_delivered_seconds: float = 0.5
    delay_read_seconds: float = 1.0
    duplicate_webhooks: bool = False
    shuffle_webhooks: bool = False
    webhook_max_attempts: int = 6
    webhook_backoff_seconds: float = 0.5
    webhook_timeout_seconds: float = 5.0
    # "Siteti's clock": signature tolerance, rate-limit windows, idempotency expiry, webhook
    # `t=`. Injectable so tests can check fixed signature vectors.
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)

    @property
    def base_path(self) -> str:
        return f"/v2.6/accounts/{self.account_id}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SandboxConfig:
        env = os.environ if env is None else env
        d = cls()

        def get(name: str, default: object) -> str:
            return env.get(name, str(default))

        return cls(
            host=get("SANDBOX_HOST", d.host),
            port=int(get("SANDBOX_PORT", d.port)),
            log_level=get("SANDBOX_LOG_LEVEL", d.log_level),
            account_id=get("SANDBOX_ACCOUNT_ID", d.account_id),
            api_keys=_split(get("SANDBOX_API_KEYS", ",".join(d.api_keys))),
            signing_secrets=_split(get("SANDBOX_SIGNING_SECRET", ",".join(d.signing_secrets))),
            webhook_url=get("SANDBOX_WEBHOOK_URL", d.webhook_url).strip(),
            webhook_secrets=_split(get("SANDBOX_WEBHOOK_SECRETS", ",".join(d.webhook_secrets))),
            rate_limit_per_minute=int(
                get("SANDBOX_RATE_LIMIT_PER_MINUTE", d.rate_limit_per_minute)
            ),
            delay_sent_seconds=float(get("SANDBOX_DELAY_SENT_SECONDS", d.delay_sent_seconds)),
            delay_delivered_seconds=float(
                get("SANDBOX_DELAY_DELIVERED_SECONDS", d.delay_delivered_seconds)
            ),
            delay_read_seconds=float(get("SANDBOX_DELAY_READ_SECONDS", d.delay_read_seconds)),
            webhook_max_attempts=int(get("SANDBOX_WEBHOOK_MAX_ATTEMPTS", d.webhook_max_attempts)),
            webhook_backoff_seconds=float(
                get("SANDBOX_WEBHOOK_BACKOFF_SECONDS", d.webhook_backoff_seconds)
            ),
        )
