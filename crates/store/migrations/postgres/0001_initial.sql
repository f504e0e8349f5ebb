-- The first schema: inbox, job queue, caller index, per-contact sync state, activities, tokens.
CREATE TABLE inbox (
    id BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    received_at BIGINT NOT NULL,
    raw_body BYTEA NOT NULL,
    event TEXT NOT NULL
);
CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    inbox_id BIGINT NOT NULL UNIQUE REFERENCES inbox(id),
    kind TEXT NOT NULL,
    caller_key TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    attempts BIGINT NOT NULL DEFAULT 0,
    claims BIGINT NOT NULL DEFAULT 0,
    run_at BIGINT NOT NULL,
    locked_by TEXT,
    lease_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX jobs_ready ON jobs (status, run_at, id);
CREATE INDEX jobs_caller ON jobs (caller_key, status, id);
CREATE TABLE caller_index (
    key TEXT PRIMARY KEY,
    contact_id BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX caller_index_contact ON caller_index (contact_id);
CREATE TABLE contact_sync (
    contact_id BIGINT PRIMARY KEY,
    last_call_at BIGINT NOT NULL
);
CREATE TABLE activities (
    source TEXT NOT NULL,
    external_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    hubspot_id BIGINT NOT NULL,
    contact_id BIGINT,
    via TEXT NOT NULL,
    stage BIGINT NOT NULL DEFAULT 0,
    occurred_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (source, external_key, kind)
);
CREATE TABLE oauth_tokens (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    hub_id BIGINT,
    scopes TEXT NOT NULL
);
