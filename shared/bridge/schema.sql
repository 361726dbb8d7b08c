-- The bridge's PostgreSQL schema. Idempotent: the owner applies it (`bridge db migrate`, or any
-- process connecting as the owner) under an advisory lock; services with their own roles only
-- check that the database is at it (bridge.db.migrate).

-- The customer directory (`bridge customers import FILE.csv`).
CREATE TABLE IF NOT EXISTS customers (
    id             bigserial PRIMARY KEY,
    account_number text UNIQUE,
    email          text,              -- sealed (bridge.protect): enc:<key id>:<AES-256-GCM>
    phone          text,              -- sealed; the clear form is Siteti's (digits, no '+'); NULL = unknown
    name           text,              -- sealed
    tier           text NOT NULL DEFAULT 'first_time' CHECK (tier IN ('first_time', 'returning')),
    late_payments  integer NOT NULL DEFAULT 0 CHECK (late_payments >= 0),
    contact_id     text,              -- Siteti's id, kept after the first upsert
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

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

-- Issue 4: the template a `template_not_approved` entry waits for, so the retrier asks Siteti
-- once per template (not per entry) whether it is approved yet.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS template_id text;
CREATE INDEX IF NOT EXISTS dead_letters_reason_idx ON dead_letters (reason, status);

-- Issue 3, sources without webhooks (ingest.sources).
-- The database poller: one row per polled source row, so each is sent once. A poller claims
-- rows here before publishing ('claimed' + claimed_at; a claim older than the lease may be
-- taken over), then marks them 'emitted' (or 'failed' with the reason when unmappable).
CREATE TABLE IF NOT EXISTS poller_tracking (
    source      text NOT NULL,              -- POLLER_SOURCE_NAME, the events' provider
    source_id   text NOT NULL,              -- the row's `source_id` column
    status      text NOT NULL CHECK (status IN ('claimed', 'emitted', 'failed')),
    claimed_by  text,                       -- the claiming poller (host:pid:random)
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 1, -- claims so far (> 1: a lease ran out)
    row_hash    text,                       -- the row as last claimed: a failed row is retried
                                            -- when it changes at the source
    event_id    text,                       -- the canonical event id (deterministic)
    event_type  text,
    reference   text,                       -- <source>:<transaction reference>
    emitted_at  timestamptz,
    error       text,                       -- why the row failed (or its last publish did)
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, source_id)
);
CREATE INDEX IF NOT EXISTS poller_tracking_status_idx ON poller_tracking (source, status, claimed_at);

-- The legacy file drop: every file read, by name and content, so none is read twice.
CREATE TABLE IF NOT EXISTS filedrop_files (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,              -- the file's name in the inbox
    sha256      text NOT NULL,              -- of its content
    size_bytes  bigint NOT NULL,
    status      text NOT NULL CHECK (status IN ('processing', 'processed', 'failed')),
    claimed_by  text,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 1,
    rows_total  integer,
    events      integer,                    -- rows emitted as events
    rows_skipped integer,                   -- rows whose status sends nothing
    rows_failed integer,                    -- bad rows (named in the report)
    report      jsonb,                      -- the report written beside the moved file
    moved_to    text,                       -- where the file went (processed/… or failed/…)
    error       text,
    finished_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, sha256)
);

-- Issue 4: which Idempotency-Key generation the entry's next trigger call uses. Siteti replays a
-- stored answer, 4xx included, for 24 h: after a definite rejection of the trigger call
-- (template_not_approved, template_not_found: nothing was sent) a retry needs a new key.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS key_generation integer NOT NULL DEFAULT 0;

-- Issue 9, customer data protection (docs/data-protection.md): numbers, e-mails and names are
-- sealed (AES-256-GCM, the key id in the value); look-ups go through keyed hashes (blind
-- index) of the normalised number and the lower-cased e-mail, never the clear value.
ALTER TABLE customers ADD COLUMN IF NOT EXISTS phone_index text;
ALTER TABLE customers ADD COLUMN IF NOT EXISTS email_index text;
DROP INDEX IF EXISTS customers_email_key;
DROP INDEX IF EXISTS customers_phone_idx;
CREATE UNIQUE INDEX IF NOT EXISTS customers_email_index_key ON customers (email_index)
    WHERE email_index IS NOT NULL;
CREATE INDEX IF NOT EXISTS customers_phone_index_idx ON customers (phone_index);

-- Whose event a dead letter or a dispatcher audit row is: the event's Kafka key, a keyed hash
-- of the customer's account number, e-mail or number (bridge.protect.customer_key). An
-- erasure finds the customer's rows by it without a clear identifier.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS customer_hash text;
ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS customer_hash text;
CREATE INDEX IF NOT EXISTS dead_letters_customer_idx ON dead_letters (customer_hash);
CREATE INDEX IF NOT EXISTS audit_log_customer_idx ON audit_log (customer_hash);

-- Erasure requests (`bridge erase`, POST /erasures): who asked, when, what went, by keyed
-- hash only. 'pending' until Siteti confirmed the contact's deletion; the retrier retries.
CREATE TABLE IF NOT EXISTS erasures (
    id            bigserial PRIMARY KEY,
    subject_hash  text NOT NULL,        -- keyed hash of the account number or the number
    subject_kind  text NOT NULL CHECK (subject_kind IN ('account', 'phone')),
    requested_by  text NOT NULL,        -- the operator or token role that asked
    status        text NOT NULL CHECK (status IN ('pending', 'done')),
    contact_ids   text[] NOT NULL DEFAULT '{}',  -- Siteti contacts still to delete
    removed       jsonb NOT NULL DEFAULT '{}'::jsonb,  -- what was removed, counts and hashes
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    next_attempt_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz
);
CREATE INDEX IF NOT EXISTS erasures_status_idx ON erasures (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS erasures_subject_idx ON erasures (subject_hash);

-- Issue 9, retention (dispatcher.retention): each batch finds the oldest rows of the two
-- large append-only tables by index, not by scanning the whole table again.
CREATE INDEX IF NOT EXISTS audit_log_recorded_idx ON audit_log (recorded_at);
CREATE INDEX IF NOT EXISTS siteti_webhook_events_received_idx
    ON siteti_webhook_events (received_at);

-- Issue 9, least privilege (docs/data-protection.md): one NOLOGIN group role per service, with
-- exactly the rights its code uses; deployments make a LOGIN role per service, member of its
-- group (`bridge db login-role`). Roles are per cluster, grants per database: every database
-- this schema is applied to grants them anew. Only the owner runs this file (`bridge db
-- migrate`); a service's role may not, so services never run DDL. Creating the roles needs
-- CREATEROLE (the local stack gives it to `bridge`); when they exist it is not needed.
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['bridge_ingest', 'bridge_dispatcher', 'bridge_receipts',
                                'bridge_operator'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by the migration of another database
            END;
        END IF;
    END LOOP;
END
$$;

-- Which schema the database is at (sha256 of this file, written by bridge.db.migrate): a
-- service reads it at start-up and starts only when it matches its own schema.
CREATE TABLE IF NOT EXISTS bridge_schema (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    sha256     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- PostgreSQL 15 no longer lets PUBLIC create in schema public; older clusters upgraded in place
-- still may.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- Declarative: everything is revoked, then granted, in the migration's transaction, so a grant
-- removed here is gone from every database the next migration reaches.
REVOKE ALL ON customers, dead_letters, audit_log, outbox, siteti_webhook_events,
    poller_tracking, filedrop_files, erasures, bridge_schema
    FROM bridge_ingest, bridge_dispatcher, bridge_receipts, bridge_operator;
REVOKE ALL ON SEQUENCE customers_id_seq, dead_letters_id_seq, audit_log_id_seq, outbox_id_seq,
    filedrop_files_id_seq, erasures_id_seq
    FROM bridge_ingest, bridge_dispatcher, bridge_receipts, bridge_operator;

GRANT SELECT ON bridge_schema TO bridge_ingest, bridge_dispatcher, bridge_receipts,
    bridge_operator;

-- ingest: the webhook edge needs no database; the poller and the file drop keep their tracking.
GRANT SELECT, INSERT, UPDATE ON poller_tracking, filedrop_files TO bridge_ingest;
GRANT USAGE ON SEQUENCE filedrop_files_id_seq TO bridge_ingest;

-- receipts: stores each Siteti webhook once, with its audit and outbox rows; answers
-- /audit/{reference}; relays the outbox (SELECT … FOR UPDATE needs an UPDATE right on a column:
-- `id`, which no statement changes).
GRANT INSERT, SELECT (event_id) ON siteti_webhook_events TO bridge_receipts;  -- ON CONFLICT reads it
GRANT SELECT, INSERT ON audit_log TO bridge_receipts;
GRANT SELECT, INSERT, DELETE, UPDATE (id) ON outbox TO bridge_receipts;
GRANT USAGE ON SEQUENCE audit_log_id_seq, outbox_id_seq TO bridge_receipts;

-- dispatcher: reads customers and keeps their Siteti contact id; writes and settles dead
-- letters; audit and outbox (and their relay); erasures (deletes the customer, scrubs their
-- dead letters and audit rows); retention (deletes old rows of every table it names).
GRANT SELECT, UPDATE, DELETE ON customers TO bridge_dispatcher;
GRANT SELECT, INSERT, UPDATE, DELETE ON dead_letters, audit_log, outbox TO bridge_dispatcher;
GRANT SELECT, INSERT, UPDATE ON erasures TO bridge_dispatcher;
GRANT SELECT, DELETE ON siteti_webhook_events, poller_tracking, filedrop_files
    TO bridge_dispatcher;
-- Retention locks what it deletes (FOR UPDATE): an UPDATE right on a column no statement changes.
GRANT UPDATE (event_id) ON siteti_webhook_events TO bridge_dispatcher;
GRANT UPDATE (source_id) ON poller_tracking TO bridge_dispatcher;
GRANT UPDATE (id) ON filedrop_files TO bridge_dispatcher;
GRANT USAGE ON SEQUENCE dead_letters_id_seq, audit_log_id_seq, outbox_id_seq, erasures_id_seq
    TO bridge_dispatcher;

-- operator (the `bridge` CLI, engineering): rows of every table, never their shape.
GRANT SELECT, INSERT, UPDATE, DELETE ON customers, dead_letters, audit_log, outbox,
    siteti_webhook_events, poller_tracking, filedrop_files, erasures TO bridge_operator;
GRANT USAGE ON SEQUENCE customers_id_seq, dead_letters_id_seq, audit_log_id_seq, outbox_id_seq,
    filedrop_files_id_seq, erasures_id_seq TO bridge_operator;

-- Issue 12 (number confirmation; dispatcher.confirmation, docs/runbooks.md): a directory number
-- may be a candidate the customer has not confirmed. Existing rows stay confirmed.
ALTER TABLE customers ADD COLUMN IF NOT EXISTS phone_confirmed boolean NOT NULL DEFAULT true;
-- One request a customer and candidate number at a time: the template asking "is this your
-- number?", sent once, and what the customer answered (or that nobody did in time).
CREATE TABLE IF NOT EXISTS number_confirmations (
    id           bigserial PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    phone        text NOT NULL,         -- the candidate, sealed (bridge.protect)
    phone_index  text NOT NULL,         -- its keyed hash: what a reply's from_index matches
    status       text NOT NULL
                 CHECK (status IN ('requested', 'confirmed', 'declined', 'expired')),
    reference    text NOT NULL UNIQUE,  -- sent as the message's reference; replies echo it
    template_id  text NOT NULL,
    message_id   text,                  -- Siteti's, once the request was accepted
    requested_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    answered_at  timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS number_confirmations_open_key
    ON number_confirmations (customer_id, phone_index) WHERE status = 'requested';
CREATE INDEX IF NOT EXISTS number_confirmations_phone_idx
    ON number_confirmations (phone_index, status);
CREATE INDEX IF NOT EXISTS number_confirmations_message_idx ON number_confirmations (message_id);
-- Which request each waiting event (by dedupe key) waits for: released together, in order.
CREATE TABLE IF NOT EXISTS number_confirmation_events (
    dedupe_key      text PRIMARY KEY,
    confirmation_id bigint NOT NULL REFERENCES number_confirmations (id) ON DELETE CASCADE,
    linked_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS number_confirmation_events_request_idx
    ON number_confirmation_events (confirmation_id);
REVOKE ALL ON number_confirmations, number_confirmation_events
    FROM bridge_ingest, bridge_dispatcher, bridge_receipts, bridge_operator;
REVOKE ALL ON SEQUENCE number_confirmations_id_seq
    FROM bridge_ingest, bridge_dispatcher, bridge_receipts, bridge_operator;
-- dispatcher: asks, links waiting events, settles on a reply or the timeout; retention and
-- erasure delete.
GRANT SELECT, INSERT, UPDATE, DELETE ON number_confirmations, number_confirmation_events
    TO bridge_dispatcher;
GRANT USAGE ON SEQUENCE number_confirmations_id_seq TO bridge_dispatcher;
GRANT SELECT, INSERT, UPDATE, DELETE ON number_confirmations, number_confirmation_events
    TO bridge_operator;
GRANT USAGE ON SEQUENCE number_confirmations_id_seq TO bridge_operator;

-- Issue 12 (failure codes and delivery states; bridge.delivery_states, bridge.failure_codes,
-- receipts.outcomes): each message Siteti accepted, with its delivery state and what a re-send
-- needs. The dispatcher writes the row with its `dispatched` audit row; receipts advance the
-- state (never backwards) and, on `message.failed`, dead-letter the event from `payload`. A row
-- receipts made first (a receipt ahead of the dispatcher's write, or another system's message)
-- has no dedupe key or payload until the dispatcher's write fills them in.
CREATE TABLE IF NOT EXISTS sent_messages (
    message_id     text PRIMARY KEY,       -- Siteti's
    reference      text NOT NULL,
    state          text NOT NULL DEFAULT 'accepted'
                   CHECK (state IN ('accepted', 'sent', 'failed', 'delivered', 'read')),
    dedupe_key     text,                   -- the event's (dead letters are keyed by it)
    customer_hash  text,                   -- as on dead letters: how an erasure finds it
    phone_index    text,                   -- keyed hash of the number it went to
    template_id    text,                   -- NULL: free-form
    key_generation integer NOT NULL DEFAULT 0,  -- of the Idempotency-Key it was sent under
    payload        jsonb,                  -- the canonical event, as dead letters keep it
    accepted_at    timestamptz,            -- when Siteti accepted it (the dispatcher's clock)
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sent_messages_reference_idx ON sent_messages (reference);
CREATE INDEX IF NOT EXISTS sent_messages_customer_idx ON sent_messages (customer_hash);
CREATE INDEX IF NOT EXISTS sent_messages_updated_idx ON sent_messages (updated_at);
-- Numbers WhatsApp cannot reach (131026 by default): later messages to them are dead-lettered
-- for review (`number_flagged`) instead of sent. An operator's retry of such an entry lifts the
-- flag; retention removes flags older than RETENTION_DAYS.
CREATE TABLE IF NOT EXISTS flagged_numbers (
    phone_index text PRIMARY KEY,          -- keyed hash of the number
    code        integer NOT NULL,          -- Meta's error code
    message_id  text,                      -- the message that failed
    reference   text,
    flagged_at  timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON sent_messages, flagged_numbers
    FROM bridge_ingest, bridge_dispatcher, bridge_receipts, bridge_operator;
-- receipts: advance a message's state (creating the row when the dispatcher's is not there
-- yet); on a failure, dead-letter the event (its outbox and audit rows) and flag the number.
GRANT SELECT, INSERT, UPDATE ON sent_messages TO bridge_receipts;
GRANT SELECT, INSERT, UPDATE ON flagged_numbers TO bridge_receipts;
GRANT SELECT, INSERT, UPDATE ON dead_letters TO bridge_receipts;
GRANT USAGE ON SEQUENCE dead_letters_id_seq TO bridge_receipts;
-- dispatcher: records sends, checks and lifts flags; retention and erasure delete.
GRANT SELECT, INSERT, UPDATE, DELETE ON sent_messages, flagged_numbers TO bridge_dispatcher;
GRANT SELECT, INSERT, UPDATE, DELETE ON sent_messages, flagged_numbers TO bridge_operator;
