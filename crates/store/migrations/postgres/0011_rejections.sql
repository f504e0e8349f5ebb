-- Deliveries refused before they were stored (bad credentials, a body that is not a call):
-- what, where from and why, never the body. The newest are kept (crate::REJECTIONS_KEPT).
CREATE TABLE rejections (
    id BIGSERIAL PRIMARY KEY,
    portal TEXT,
    route TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    status BIGINT NOT NULL,
    size BIGINT,
    peer TEXT,
    at BIGINT NOT NULL
);
