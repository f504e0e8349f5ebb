-- A portal on every row. Rows written before portals existed belong to the single-portal
-- configuration's portal, `default`. SQLite cannot change a key in place, so keyed tables are
-- rebuilt and renamed; jobs are rebuilt beside the inbox (renaming the new inbox points the
-- new jobs' foreign key at it), children dropped before parents so no row is orphaned.
CREATE TABLE inbox_new (
    id INTEGER PRIMARY KEY,
    portal TEXT NOT NULL,
    source TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    raw_body BLOB NOT NULL,
    event TEXT NOT NULL,
    UNIQUE (portal, idempotency_key)
);
INSERT INTO inbox_new (id, portal, source, idempotency_key, received_at, raw_body, event)
    SELECT id, 'default', source, idempotency_key, received_at, raw_body, event FROM inbox;
CREATE TABLE jobs_new (
    id INTEGER PRIMARY KEY,
    inbox_id INTEGER NOT NULL UNIQUE REFERENCES inbox_new(id),
    portal TEXT NOT NULL,
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
INSERT INTO jobs_new (id, inbox_id, portal, kind, caller_key, status, attempts, claims, run_at, locked_by,
                      lease_until, last_error, created_at, updated_at)
    SELECT id, inbox_id, 'default', kind, caller_key, status, attempts, claims, run_at, locked_by,
           lease_until, last_error, created_at, updated_at FROM jobs;
DROP TABLE jobs;
DROP TABLE inbox;
ALTER TABLE inbox_new RENAME TO inbox;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_ready ON jobs (status, run_at, id);
CREATE INDEX jobs_caller ON jobs (portal, caller_key, status, id);

CREATE TABLE caller_index_new (
    portal TEXT NOT NULL,
    key TEXT NOT NULL,
    contact_id INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (portal, key)
);
INSERT INTO caller_index_new SELECT 'default', key, contact_id, updated_at FROM caller_index;
DROP TABLE caller_index;
ALTER TABLE caller_index_new RENAME TO caller_index;
CREATE INDEX caller_index_contact ON caller_index (portal, contact_id);

CREATE TABLE contact_sync_new (
    portal TEXT NOT NULL,
    contact_id INTEGER NOT NULL,
    last_call_at INTEGER NOT NULL,
    PRIMARY KEY (portal, contact_id)
);
INSERT INTO contact_sync_new SELECT 'default', contact_id, last_call_at FROM contact_sync;
DROP TABLE contact_sync;
ALTER TABLE contact_sync_new RENAME TO contact_sync;

CREATE TABLE activities_new (
    portal TEXT NOT NULL,
    source TEXT NOT NULL,
    external_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    hubspot_id INTEGER NOT NULL,
    contact_id INTEGER,
    via TEXT NOT NULL,
    stage INTEGER NOT NULL DEFAULT 0,
    occurred_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (portal, source, external_key, kind)
);
INSERT INTO activities_new
    SELECT 'default', source, external_key, kind, hubspot_id, contact_id, via, stage, occurred_at, created_at FROM activities;
DROP TABLE activities;
ALTER TABLE activities_new RENAME TO activities;

CREATE TABLE oauth_tokens_new (
    portal TEXT PRIMARY KEY,
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    hub_id INTEGER,
    scopes TEXT NOT NULL
);
INSERT INTO oauth_tokens_new SELECT 'default', access_token, refresh_token, expires_at, hub_id, scopes FROM oauth_tokens;
DROP TABLE oauth_tokens;
ALTER TABLE oauth_tokens_new RENAME TO oauth_tokens;
