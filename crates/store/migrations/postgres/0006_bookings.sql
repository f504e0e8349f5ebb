-- Every meeting callbridge booked (a mid-call tool or the booking webhook): availability leaves
-- booked slots out, a caller's next meeting is found here, and a reschedule or a cancel updates
-- the meeting in HubSpot from it. `history` is a JSON array of lines.
CREATE TABLE bookings (
    portal TEXT NOT NULL,
    booking_key TEXT NOT NULL,
    source TEXT NOT NULL,
    phone TEXT,
    email TEXT,
    caller_name TEXT,
    meeting_type TEXT,
    notes TEXT,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    history TEXT NOT NULL DEFAULT '[]',
    caller_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (portal, booking_key)
);
CREATE INDEX bookings_by_start ON bookings (portal, start_ms);
CREATE INDEX bookings_by_phone ON bookings (portal, phone);
CREATE INDEX bookings_by_email ON bookings (portal, email);
