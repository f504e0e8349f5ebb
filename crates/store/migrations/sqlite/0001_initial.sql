-- The first schema: inbox, job queue, caller index, per-contact sync state, activities, tokens.
CREATE TABLE inbox (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    received_at INTEGER NOT NULL,
    raw_body BLOB NOT NULL,
    event TEXT NOT NULL
);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    inbox_id INTEGER NOT NULL UNIQUE REFERENCES inbox(id),
    kind TEXT NOT NULL,
    caller_key TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    claims INTEGER NOT NULL DEFAULT 0,
    run_at INTEGER NOT NULL,
    locked_by TEXT,
    lease_until INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX jobs_ready ON jobs (status, run_at, id);
CREATE INDEX jobs_caller ON jobs (caller_key, status, id);
CREATE TABLE caller_index (
    key TEXT PRIMARY KEY,
    contact_id INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX caller_index_contact ON caller_index (contact_id);
CREATE TABLE contact_sync (
    contact_id INTEGER PRIMARY KEY,
    last_call_at INTEGER NOT NULL
);
CREATE TABLE activities (
    source TEXT NOT NULL,
    external_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    hubspot_id INTEGER NOT NULL,
    contact_id INTEGER,
    via TEXT NOT NULL,
    stage INTEGER NOT NULL DEFAULT 0,
    occurred_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (source, external_key, kind)
);
CREATE TABLE oauth_tokens (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    hub_id INTEGER,
    scopes TEXT NOT NULL
);
