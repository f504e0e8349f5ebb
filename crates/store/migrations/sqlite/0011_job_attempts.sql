-- Each failed attempt of an event's job: when, why (the error's kind and message, never a
-- body) and when it was to be tried again (NULL: it went dead). Erased with its delivery.
CREATE TABLE job_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    inbox_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    at INTEGER NOT NULL,
    error_kind TEXT NOT NULL,
    error TEXT NOT NULL,
    retry_at INTEGER
);
CREATE INDEX job_attempts_inbox ON job_attempts (inbox_id, id);
