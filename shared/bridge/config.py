"""Settings from the environment, with documented defaults.

Precedence: real environment variables, then the file named by `BRIDGE_ENV_FILE` (default
`.stack/env`, written by `make stack-up`) and `secrets.env` beside it (local secrets that
`make up` generates), then the defaults below. Secret lists are
comma-separated: every listed value is accepted, so secrets can rotate without downtime.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .events import EVENTS_TOPIC

# A comma-separated list in the environment (secrets, CIDR lists): split, never JSON-decoded.
CommaList = Annotated[list[str], NoDecode]


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
    # Kafka connection security (issue 9; bridge.kafka.client_options, docs/security.md), for
    # every client: ingest's producer, the dispatcher (faust), the relays, topic creation.
    # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; the mechanism is PLAIN, SCRAM-SHA-256 or
    # SCRAM-SHA-512. The CA file verifies the brokers; the certificate and key are for mutual TLS.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    # Topics with one replica are refused unless this says the cluster is a single broker
    # (the local stack and tests): production topics need 3 replicas and min.insync.replicas=2.
    kafka_single_broker: bool = False
    # 1 for the local single broker; 3 on a production cluster.
    kafka_topic_replication_factor: int = 1
    # Where ingest writes and the dispatcher reads canonical events. The name is part of the
    # public contract (docs/events.md); tests point each pipeline at a topic of its own.
    events_topic: str = EVENTS_TOPIC.name
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql://bridge:bridge@127.0.0.1:5432/bridge"

    # Siteti
    siteti_base_url: str = "http://127.0.0.1:8090/v2.6/accounts/acc_sandbox"
    # The API key Siteti knows us by. SITETI_API_KEYS lists several for a rotation without
    # downtime: the first is used; on `invalid_api_key` the client moves to the next.
    siteti_api_key: str = ""
    siteti_api_keys: CommaList = Field(default_factory=list)
    siteti_signing_secret: str = ""
    siteti_webhook_secrets: CommaList = Field(default_factory=list)
    siteti_timeout_seconds: float = 10.0
    siteti_rate_limit_per_minute: int = 60

    # Retry policy for Siteti calls: base * factor**attempt, full jitter, capped.
    siteti_retry_base_seconds: float = 1.0
    siteti_retry_factor: float = 2.0
    siteti_retry_max_seconds: float = 60.0
    siteti_max_retries: int = 5

    # Provider secrets
    moniepoint_webhook_secrets: CommaList = Field(default_factory=list)
    monnify_client_secrets: CommaList = Field(default_factory=list)
    paystack_secret_keys: CommaList = Field(default_factory=list)
    flutterwave_secret_hashes: CommaList = Field(default_factory=list)
    wasaapay_webhook_secrets: CommaList = Field(default_factory=list)
    openmarket_private_keys: CommaList = Field(default_factory=list)
    generic_webhook_secrets: CommaList = Field(default_factory=list)
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

    # Services (bind addresses and ports; bridge.edge.serve runs the HTTP ones)
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 8000
    receipts_host: str = "127.0.0.1"
    receipts_port: int = 8001
    dispatcher_host: str = "127.0.0.1"
    dispatcher_metrics_port: int = 8002
    # /metrics of the sources without webhooks (`python -m ingest.sources`), bound on
    # INGEST_HOST; 0 = none. docs/metrics.md.
    poller_metrics_port: int = 8084
    filedrop_metrics_port: int = 8085
    sandbox_port: int = 8090
    # The Flutterwave verify stand-in (`python -m ingest.flutterwave_standin`, demo/tests).
    flutterwave_standin_port: int = 8091
    max_body_bytes: int = 1024 * 1024
    kafka_send_timeout_seconds: float = 10.0

    # Dispatcher
    # The consumer group: every instance of one deployment shares it.
    dispatcher_group_id: str = "siteti-bridge-dispatcher"
    # This instance's name (logs, /healthz, dedupe lease owner); default host-pid.
    dispatcher_instance: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}"
    )
    # faust's scratch directory; empty = .stack/faust/<instance>.
    dispatcher_datadir: str = ""
    dispatcher_lanes: int = 16
    # On SIGTERM, in-flight events get this long to finish before they are handed back.
    dispatcher_shutdown_grace_seconds: float = 20.0
    dedupe_ttl_seconds: int = 7 * 24 * 3600
    # A crashed instance's events are taken over after this; live ones renew every third.
    # No longer than the session timeout: by the time a survivor owns a dead instance's
    # partitions, its leases have lapsed. Safe when short: a second attempt at an event
    # carries the same Idempotency-Key, so Siteti replays instead of sending twice.
    dedupe_lease_seconds: int = 6
    # A dead instance leaves the consumer group after the session timeout (6 s is Kafka's
    # default group.min.session.timeout.ms); heartbeats (a third of it or less) come from
    # the consumer's own thread, so a busy event loop does not miss them.
    dispatcher_session_timeout_seconds: float = 6.0
    dispatcher_heartbeat_interval_seconds: float = 1.0
    # Attempts at an event that fails for a reason other than a dependency outage, before
    # it is dead-lettered as `unprocessable` and its lane moves on.
    dispatcher_poison_attempts: int = 3
    customer_cache_ttl_seconds: int = 300
    missing_contact_wait_seconds: float = 5.0
    # Issue 12, number confirmation (dispatcher.confirmation): seconds an event waits for its
    # customer to confirm a candidate number before it goes to manual review (24 h).
    number_confirmation_timeout: float = 86400.0
    default_country: str = "NG"
    # The template rule file operations edit; empty = the shipped dispatcher/rules.yaml.
    template_rules_file: str = ""
    # Issue 12, pacing (dispatcher.pacing): messages to one WhatsApp number at least this many
    # seconds apart across every instance (WhatsApp's pair rate limit); 0 = no pacing.
    pair_min_interval_seconds: float = 6.0
    # Issue 12, double-fires (dispatcher.doublefire): a second event of the same provider,
    # type, customer and amount whose provider time is within this many seconds of one
    # already seen is held for review, not sent; 0 = no check.
    double_fire_window_seconds: float = 120.0

    # Dead-letter store (issue 4): seconds between the retrier's rounds (due `pending` entries,
    # templates approved since, customers given a number since).
    dlq_retry_interval_seconds: float = 60
    # Issue 12, WhatsApp failure codes (bridge.failure_codes, receipts): Meta's code → flag,
    # resend_template, review or retry; codes not named go to review. Retries wait the base,
    # doubled for each earlier re-send of the event (at most an hour), up to the maximum.
    whatsapp_failure_actions: str = (
        "131026=flag,131047=resend_template,131048=review,131049=review,130429=retry,131056=retry"
    )
    whatsapp_retry_base_seconds: float = 60
    whatsapp_max_resends: int = 5
    # Bearer tokens with a role (issue 9; bridge.access): `role:token` pairs, the role one of
    # support, engineering, analyst. They guard GET /audit/…, the admin API and the console.
    api_tokens: CommaList = Field(default_factory=list)
    # Plain tokens that act as `engineering` (the admin API's tokens before roles existed).
    admin_api_tokens: CommaList = Field(default_factory=list)

    # Customer data protection (issue 9; bridge.protect, docs/data-protection.md).
    # AES-256-GCM keys as `id:base64key` pairs, comma-separated, or the path of a file with
    # one pair per line: the first seals new values, every listed key opens. Never stored
    # in the database. `bridge keys new` makes one.
    bridge_data_keys: CommaList = Field(default_factory=list)
    # The key of the blind index (keyed hashes for look-ups and Kafka keys), base64 of 32
    # bytes. It is not rotated with the data keys: changing it re-indexes (`bridge keys rotate`).
    bridge_index_key: str = ""
    # Audit rows, dead-letter payloads, webhook and file-drop records older than this go.
    retention_days: int = 90
    # Seconds between the dispatcher's retention rounds (one instance at a time, by lease).
    retention_interval_seconds: float = 3600

    # Sources without webhooks (ingest.sources; docs in ingest/sources/poller.py, docs/filedrop.md).
    # The poller's query (a view or SELECT) whose rows become events; required to run it.
    poller_query: str = ""
    # The database that query runs on (read-only); empty = DATABASE_URL. Tracking stays there.
    poller_database_url: str = ""
    # The provider name of polled rows: event subject `<name>:<reference>`, the tracking key.
    poller_source_name: str = "dbpoll"
    # Seconds from the start of one poll to the start of the next.
    poller_interval_seconds: float = 120.0
    # A row claimed by a poller that died before marking it is re-claimed after this long.
    poller_lease_seconds: float = 300.0
    # Rows claimed, published and marked together (the unit a SIGTERM lets finish).
    poller_batch_size: int = 200
    # The legacy file drop's inbox; processed/ and failed/ are created inside it.
    filedrop_dir: str = ".stack/filedrop/inbox"
    # Seconds between directory scans.
    filedrop_poll_seconds: float = 2.0
    # A file is read only once its size and mtime are unchanged for two scans and this long.
    filedrop_settle_seconds: float = 2.0
    # "HH:MM[,HH:MM…]" in FILEDROP_TIMEZONE: scan only then; empty = as files arrive.
    filedrop_schedule: str = ""
    filedrop_timezone: str = "Africa/Lagos"
    # Column overrides, "field=column|alternative,…" (defaults in ingest.sources.filedrop).
    filedrop_columns: str = ""
    # A row's status → canonical event type; an empty type means "send nothing" (skipped).
    filedrop_status_types: str = "overdue=rent.overdue,due_soon=rent.reminder,paid=,current="
    # Text encoding of CSV exports (XML declares its own).
    filedrop_encoding: str = "utf-8-sig"
    # Larger files are moved to failed/ unread.
    filedrop_max_bytes: int = 50 * 1024 * 1024
    # A file claimed by a watcher that died mid-file is re-claimed after this long.
    filedrop_lease_seconds: float = 300.0

    # Ingest edge defences (issue 7; ingest.defences, docs/security.md). CIDR lists are
    # comma-separated, IPv4 and IPv6; an empty allowlist lets every address post.
    moniepoint_allowed_ips: CommaList = Field(default_factory=list)
    monnify_allowed_ips: CommaList = Field(default_factory=list)
    paystack_allowed_ips: CommaList = Field(default_factory=list)
    flutterwave_allowed_ips: CommaList = Field(default_factory=list)
    wasaapay_allowed_ips: CommaList = Field(default_factory=list)
    openmarket_allowed_ips: CommaList = Field(default_factory=list)
    generic_allowed_ips: CommaList = Field(default_factory=list)
    # Peers whose X-Forwarded-For is believed (load balancers, reverse proxies).
    trusted_proxies: CommaList = Field(default_factory=list)
    # Rejected (unauthenticated) requests one client address may make per minute, counted
    # across instances in Redis; validly signed webhooks are never counted. 0 = no limit.
    ingest_ip_limit_per_minute: int = 60
    # Requests one ingest process handles at once; more are answered 503 + Retry-After.
    ingest_max_concurrency: int = 1000
    # Ingest worker processes sharing INGEST_PORT; 0 = one per CPU this process may use.
    ingest_workers: int = Field(default=0, ge=0)

    log_level: str = "INFO"

    # Operations (issue 10). The console (`python -m console`): its port, and where it finds
    # the admin API (any dispatcher), the audit API (receipts) and, optionally, Prometheus.
    console_host: str = "127.0.0.1"
    console_port: int = 8080
    console_admin_url: str = "http://127.0.0.1:8002"
    console_receipts_url: str = "http://127.0.0.1:8001"
    # Ingest's /metrics (webhook rates) for the health page when PROMETHEUS_URL is empty.
    console_ingest_url: str = "http://127.0.0.1:8000"
    # Empty: the health page reads the services' /metrics itself instead.
    prometheus_url: str = ""
    # How long a console sign-in lasts.
    console_session_hours: float = 8
    # Seconds between the dispatcher's reads of the gauges that live in the database and
    # Kafka (dead-letter depth, oldest pending entry, outbox backlog, consumer lag).
    metrics_refresh_seconds: float = 15

    @field_validator("*", mode="before")
    @classmethod
    def _split(cls, value: object, info: ValidationInfo) -> object:
        # Every CommaList (comma-separated in the environment) is split here.
        name = info.field_name
        if isinstance(value, str) and name and NoDecode in cls.model_fields[name].metadata:
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _default_datadir(self) -> Settings:
        if not self.dispatcher_datadir:
            self.dispatcher_datadir = f".stack/faust/{self.dispatcher_instance}"
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
