//! Bookings: every meeting callbridge booked (through a mid-call tool or the booking webhook),
//! kept so that availability leaves booked slots out, a caller's next meeting can be found,
//! and a reschedule or a cancel updates the meeting in HubSpot (whose scheduler cannot).
//! A tool's booking is recorded with its job in one transaction, after checking that no other
//! booking holds the slot; a change is recorded with the job that carries it to HubSpot.

use async_trait::async_trait;
use callbridge_domain::PortalId;

use crate::{NewDelivery, Result};

/// Where a booking stands; each is also the meeting's `hs_meeting_outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookingStatus {
    Scheduled,
    Rescheduled,
    Canceled,
}

impl BookingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BookingStatus::Scheduled => "SCHEDULED",
            BookingStatus::Rescheduled => "RESCHEDULED",
            BookingStatus::Canceled => "CANCELED",
        }
    }

    pub fn parse(s: &str) -> Option<BookingStatus> {
        [BookingStatus::Scheduled, BookingStatus::Rescheduled, BookingStatus::Canceled]
            .into_iter()
            .find(|b| b.as_str() == s)
    }
}

/// A booking as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booking {
    pub portal: PortalId,
    /// The key of the delivery that booked it (the meeting's event id in HubSpot).
    pub key: String,
    pub source: String,
    /// E.164.
    pub phone: Option<String>,
    /// Lower case.
    pub email: Option<String>,
    pub name: Option<String>,
    pub meeting_type: Option<String>,
    pub notes: Option<String>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub status: BookingStatus,
    /// What happened to it since, a line each ("Rescheduled from … to …").
    pub history: Vec<String>,
    /// The caller's job order key: its changes run after the job that books it.
    pub caller_key: String,
    pub created_at_ms: i64,
}

impl Booking {
    pub fn overlaps(&self, start_ms: i64, end_ms: i64) -> bool {
        self.start_ms < end_ms && start_ms < self.end_ms
    }
}

/// What booking a slot came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Booked {
    /// Recorded now, with its job (the delivery's inbox id).
    New(i64),
    /// This key booked before (a retry): that booking, nothing written.
    Existing(Box<Booking>),
    /// Other bookings hold the slot: nothing written.
    Taken(Vec<Booking>),
}

/// A change to a booking: its time (a reschedule) or its end (a cancel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingChange {
    pub start_ms: i64,
    pub end_ms: i64,
    pub status: BookingStatus,
    pub line: String,
}

#[async_trait]
pub trait Bookings: Send + Sync {
    /// Records a booking and stores `delivery` (its job) in one transaction, unless its key
    /// booked before or another booking not cancelled overlaps it.
    async fn book(&self, booking: &Booking, delivery: NewDelivery) -> Result<Booked>;
    /// Records a booking made elsewhere (the booking webhook); a key recorded before is kept.
    async fn record_booking(&self, booking: &Booking) -> Result<()>;
    async fn booking(&self, portal: &PortalId, key: &str) -> Result<Option<Booking>>;
    /// Bookings not cancelled that overlap [from, to), by start.
    async fn bookings_between(&self, portal: &PortalId, from_ms: i64, to_ms: i64) -> Result<Vec<Booking>>;
    /// A caller's bookings not cancelled that end after `from_ms`, by start; matched by phone
    /// or email.
    async fn caller_bookings(
        &self,
        portal: &PortalId,
        phone: Option<&str>,
        email: Option<&str>,
        from_ms: i64,
    ) -> Result<Vec<Booking>>;
    /// Applies `change` and stores `delivery` (the job that carries it to HubSpot) in one
    /// transaction. A delivery stored before (a retried request) changes nothing. Returns the
    /// booking as it now stands, or `None` when there is no such booking.
    async fn change_booking(
        &self,
        portal: &PortalId,
        key: &str,
        change: &BookingChange,
        delivery: NewDelivery,
    ) -> Result<Option<Booking>>;
}

/// A row's columns, in the order both backends select them.
pub(crate) const COLUMNS: &str = "portal, booking_key, source, phone, email, caller_name, meeting_type, notes, start_ms, end_ms, status, history, caller_key, created_at";

pub(crate) fn from_row<R: sqlx::Row>(r: &R) -> Result<Booking>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let portal: String = r.try_get("portal")?;
    let status: String = r.try_get("status")?;
    let history: String = r.try_get("history")?;
    Ok(Booking {
        portal: PortalId::parse(&portal).unwrap_or_default(),
        key: r.try_get("booking_key")?,
        source: r.try_get("source")?,
        phone: r.try_get("phone")?,
        email: r.try_get("email")?,
        name: r.try_get("caller_name")?,
        meeting_type: r.try_get("meeting_type")?,
        notes: r.try_get("notes")?,
        start_ms: r.try_get("start_ms")?,
        end_ms: r.try_get("end_ms")?,
        status: BookingStatus::parse(&status).unwrap_or(BookingStatus::Scheduled),
        history: serde_json::from_str(&history).unwrap_or_default(),
        caller_key: r.try_get("caller_key")?,
        created_at_ms: r.try_get("created_at")?,
    })
}
