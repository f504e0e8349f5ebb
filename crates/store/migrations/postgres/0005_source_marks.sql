-- How far a pulled source has been read: the newest call start time stored, saved after every
-- page, so that a run that stops midway resumes there. It only moves forward.
CREATE TABLE source_marks (
    portal TEXT NOT NULL,
    source TEXT NOT NULL,
    high_water BIGINT NOT NULL,
    PRIMARY KEY (portal, source)
);
