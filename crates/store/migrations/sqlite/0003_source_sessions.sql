-- The session a pulled source logged in to (its JWT or token cookie), kept so that a restart
-- does not log in again. One row per portal and source.
CREATE TABLE source_sessions (
    portal TEXT NOT NULL,
    source TEXT NOT NULL,
    token TEXT NOT NULL,
    expires_at INTEGER,
    logged_in_at INTEGER NOT NULL,
    PRIMARY KEY (portal, source)
);
