-- What the caller index forgot about a contact (a deletion, a changed number), kept so a
-- later privacy deletion of that contact still finds its callers' deliveries to erase.
CREATE TABLE forgotten_callers (
    portal TEXT NOT NULL,
    key TEXT NOT NULL,
    contact_id INTEGER NOT NULL,
    forgotten_at INTEGER NOT NULL,
    PRIMARY KEY (portal, contact_id, key)
);
