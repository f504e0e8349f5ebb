-- A portal on every row. Rows written before portals existed belong to the single-portal
-- configuration's portal, `default`; new rows always name theirs (no default after this).
ALTER TABLE inbox ADD COLUMN portal TEXT NOT NULL DEFAULT 'default';
ALTER TABLE inbox ALTER COLUMN portal DROP DEFAULT;
ALTER TABLE inbox DROP CONSTRAINT inbox_idempotency_key_key;
ALTER TABLE inbox ADD CONSTRAINT inbox_portal_idempotency_key UNIQUE (portal, idempotency_key);

ALTER TABLE jobs ADD COLUMN portal TEXT NOT NULL DEFAULT 'default';
ALTER TABLE jobs ALTER COLUMN portal DROP DEFAULT;
DROP INDEX jobs_caller;
CREATE INDEX jobs_caller ON jobs (portal, caller_key, status, id);

ALTER TABLE caller_index ADD COLUMN portal TEXT NOT NULL DEFAULT 'default';
ALTER TABLE caller_index ALTER COLUMN portal DROP DEFAULT;
ALTER TABLE caller_index DROP CONSTRAINT caller_index_pkey;
ALTER TABLE caller_index ADD PRIMARY KEY (portal, key);
DROP INDEX caller_index_contact;
CREATE INDEX caller_index_contact ON caller_index (portal, contact_id);

ALTER TABLE contact_sync ADD COLUMN portal TEXT NOT NULL DEFAULT 'default';
ALTER TABLE contact_sync ALTER COLUMN portal DROP DEFAULT;
ALTER TABLE contact_sync DROP CONSTRAINT contact_sync_pkey;
ALTER TABLE contact_sync ADD PRIMARY KEY (portal, contact_id);

ALTER TABLE activities ADD COLUMN portal TEXT NOT NULL DEFAULT 'default';
ALTER TABLE activities ALTER COLUMN portal DROP DEFAULT;
ALTER TABLE activities DROP CONSTRAINT activities_pkey;
ALTER TABLE activities ADD PRIMARY KEY (portal, source, external_key, kind);

ALTER TABLE oauth_tokens ADD COLUMN portal TEXT NOT NULL DEFAULT 'default';
ALTER TABLE oauth_tokens ALTER COLUMN portal DROP DEFAULT;
ALTER TABLE oauth_tokens DROP CONSTRAINT oauth_tokens_pkey;
ALTER TABLE oauth_tokens DROP COLUMN id;
ALTER TABLE oauth_tokens ADD PRIMARY KEY (portal);

-- Each portal has HubSpot windows of its own.
ALTER TABLE budget_slots ADD COLUMN portal TEXT NOT NULL DEFAULT 'default';
ALTER TABLE budget_slots ALTER COLUMN portal DROP DEFAULT;
DROP INDEX budget_slots_bucket;
CREATE INDEX budget_slots_bucket ON budget_slots (portal, bucket, done_at);
ALTER TABLE budget_blocks ADD COLUMN portal TEXT NOT NULL DEFAULT 'default';
ALTER TABLE budget_blocks ALTER COLUMN portal DROP DEFAULT;
ALTER TABLE budget_blocks DROP CONSTRAINT budget_blocks_pkey;
ALTER TABLE budget_blocks ADD PRIMARY KEY (portal, bucket);
