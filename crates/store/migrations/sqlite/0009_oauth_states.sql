-- OAuth install states: random, single-use (used_at), bound to the browser that started the
-- install (a hash of its cookie) and valid until expires_at.
CREATE TABLE oauth_states (
    state TEXT PRIMARY KEY,
    browser TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
