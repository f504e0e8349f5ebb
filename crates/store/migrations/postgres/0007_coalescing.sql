-- Live updates of one call coalesce into one queued job: `coalesce_key` names the call, and a
-- newer update re-points the queued job at its own inbox row, marking the older row as
-- coalesced into the newer one.
ALTER TABLE jobs ADD COLUMN coalesce_key TEXT;
ALTER TABLE inbox ADD COLUMN coalesced_into BIGINT;
CREATE INDEX jobs_coalesce ON jobs (portal, coalesce_key) WHERE coalesce_key IS NOT NULL;
