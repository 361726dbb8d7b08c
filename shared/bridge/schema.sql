-- The bridge's PostgreSQL schema. Idempotent: every service applies it at start-up
-- (under an advisory lock, so concurrent starts do not race).

-- The customer directory (`bridge customers import FILE.csv`).
CREATE TABLE IF NOT EXISTS customers (
    id             bigserial PRIMARY KEY,
    account_number text UNIQUE,
    email          text,
    phone          text,              -- Siteti format: international digits, no '+'; NULL = unknown
    name           text,
    tier           text NOT NULL DEFAULT 'first_time' CHECK (tier IN ('first_time', 'returning')),
    late_payments  integer NOT NULL DEFAULT 0 CHECK (late_payments >= 0),
    contact_id     text,              -- Siteti's id, kept after the first upsert
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS customers_email_key ON customers (lower(email)) WHERE email IS NOT NULL;
CREATE INDEX IF NOT EXISTS customers_phone_idx ON customers (phone);

-- What could not be delivered, with why, until an operator or the retrier settles it.
CREATE TABLE IF NOT EXISTS dead_letters (
    id              bigserial PRIMARY KEY,
    dedupe_key      text NOT NULL UNIQUE,  -- <provider>:<reference>:<event type>
    reference       text NOT NULL,         -- <provider>:<transaction reference>
    provider        text NOT NULL,
    event_type      text NOT NULL,
    payload         jsonb NOT NULL,        -- the canonical event, as received
    status          text NOT NULL
                    CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'manual_review')),
    reason          text NOT NULL,
    retry_count     integer NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS dead_letters_status_idx ON dead_letters (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS dead_letters_reference_idx ON dead_letters (reference);

-- One row per step of a message's life, from every service: the answer to
-- "did my receipt go out?" is `SELECT … WHERE reference = $1`.
CREATE TABLE IF NOT EXISTS audit_log (
    id          bigserial PRIMARY KEY,
    reference   text NOT NULL,
    stage       text NOT NULL,
    source      text NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS audit_log_reference_idx ON audit_log (reference, occurred_at, id);

-- Transactional outbox: rows written in the same transaction as audit_log, relayed to Kafka.
CREATE TABLE IF NOT EXISTS outbox (
    id         bigserial PRIMARY KEY,
    topic      text NOT NULL,
    key        text NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Siteti webhook ids already stored: redeliveries are acknowledged and ignored.
CREATE TABLE IF NOT EXISTS siteti_webhook_events (
    event_id    text PRIMARY KEY,
    type        text NOT NULL,
    reference   text,
    received_at timestamptz NOT NULL DEFAULT now()
);
