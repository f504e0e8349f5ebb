-- HubSpot's windows counted in the database, so several instances share one budget.
CREATE TABLE budget_slots (
    id BIGSERIAL PRIMARY KEY,
    bucket TEXT NOT NULL,
    taken_at BIGINT NOT NULL,
    done_at BIGINT
);
CREATE INDEX budget_slots_bucket ON budget_slots (bucket, done_at);
CREATE TABLE budget_blocks (
    bucket TEXT PRIMARY KEY,
    until_ms BIGINT NOT NULL
);
