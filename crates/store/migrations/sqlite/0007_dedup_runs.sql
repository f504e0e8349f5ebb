-- Duplicate sweeps started through the admin API: their options, state and final report (JSON),
-- readable from any instance.
CREATE TABLE dedup_runs (
    id INTEGER PRIMARY KEY,
    portal TEXT NOT NULL,
    options TEXT NOT NULL,
    status TEXT NOT NULL,
    report TEXT,
    error TEXT,
    started_at INTEGER NOT NULL,
    finished_at INTEGER
);
