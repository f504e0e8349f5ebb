-- Deliveries refused before they were stored (bad credentials, a body that is not a call):
-- what, where from and why, never the body. The newest are kept (crate::REJECTIONS_KEPT).
CREATE TABLE rejections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    portal TEXT,
    route TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    status INTEGER NOT NULL,
    size INTEGER,
    peer TEXT,
    at INTEGER NOT NULL
);
