//! Reading a request body within bounds. A body is read only after the credential its headers
//! carry has been checked, and then:
//!
//! - **at most [`BODY_LIMIT`] bytes**: a declared `Content-Length` over it is refused before a
//!   byte is read, a body that grows over it as soon as it does (413, the limit stated);
//! - **within the body timeout**, counted from the first read (408);
//! - **within a budget shared by every body not yet verified** (`unverified_body_mib`): a body
//!   reserves what it declares (or what has arrived, when it declares nothing) before reading
//!   it, and gives it back once its signature has been checked. When the budget is spent the
//!   request is answered 503 with `Retry-After` at once, so bodies that stall cost the budget
//!   and no more, however many connections send them.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;

/// Largest webhook body accepted.
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The shared budget and the time limit for reading bodies.
pub struct Intake {
    budget: Arc<Semaphore>,
    timeout: Duration,
}

/// A body as read, holding its share of the budget until it is dropped (once verified).
pub struct Unverified {
    pub bytes: Bytes,
    _held: OwnedSemaphorePermit,
}

impl Intake {
    /// `budget` bytes shared (at least [`BODY_LIMIT`], so that one largest body fits).
    pub fn new(budget: usize, timeout: Duration) -> Intake {
        let budget = budget.clamp(BODY_LIMIT, Semaphore::MAX_PERMITS);
        Intake { budget: Arc::new(Semaphore::new(budget)), timeout }
    }

    /// Reads `body`, within the limit, the time and the budget.
    pub async fn read(&self, headers: &HeaderMap, body: Body) -> Result<Unverified, ApiError> {
        let declared = declared_length(headers)?;
        if declared > BODY_LIMIT {
            return Err(ApiError::TooLarge { limit: BODY_LIMIT });
        }
        let mut held = self.reserve(declared)?;
        let mut bytes = Vec::with_capacity(declared);
        let read = async {
            let mut body = body;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|_| ApiError::field("body", "could not be read"))?;
                let Ok(data) = frame.into_data() else { continue };
                let total = bytes.len() + data.len();
                if total > BODY_LIMIT {
                    return Err(ApiError::TooLarge { limit: BODY_LIMIT });
                }
                if total > held.num_permits() {
                    held.merge(self.reserve(total - held.num_permits())?);
                }
                bytes.extend_from_slice(&data);
            }
            Ok(())
        };
        tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| ApiError::BodyTimeout { secs: self.timeout.as_secs() })??;
        Ok(Unverified { bytes: Bytes::from(bytes), _held: held })
    }

    fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        // `bytes` is at most BODY_LIMIT, so it fits a u32.
        let n = u32::try_from(bytes).map_err(|_| ApiError::TooLarge { limit: BODY_LIMIT })?;
        self.budget.clone().try_acquire_many_owned(n).map_err(|_| ApiError::Overloaded)
    }
}

/// The declared `Content-Length` (0 when absent); a malformed one is a 400.
fn declared_length(headers: &HeaderMap) -> Result<usize, ApiError> {
    match headers.get(http::header::CONTENT_LENGTH) {
        None => Ok(0),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .ok_or_else(|| ApiError::field("content-length", "is not a number of bytes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_length(n: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_LENGTH, n.parse().unwrap());
        h
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let intake = Intake::new(BODY_LIMIT, Duration::from_secs(5));
        let over = (BODY_LIMIT + 1).to_string();
        let e = intake.read(&with_length(&over), Body::empty()).await.err().unwrap();
        assert!(matches!(e, ApiError::TooLarge { limit: BODY_LIMIT }));
        let e = intake.read(&with_length("lots"), Body::empty()).await.err().unwrap();
        assert!(matches!(e, ApiError::InvalidPayload(ref f) if f[0].field == "content-length"));
    }

    #[tokio::test]
    async fn the_budget_is_held_until_the_body_is_dropped_and_excess_is_refused() {
        let intake = Intake::new(BODY_LIMIT, Duration::from_secs(5));
        let first = intake.read(&HeaderMap::new(), Body::from(vec![b'x'; BODY_LIMIT - 10])).await.ok().unwrap();
        assert_eq!(first.bytes.len(), BODY_LIMIT - 10);
        let second = intake.read(&HeaderMap::new(), Body::from(vec![b'y'; 100])).await;
        assert!(matches!(second, Err(ApiError::Overloaded)), "the budget is spent while the first is held");
        drop(first);
        let third = intake.read(&HeaderMap::new(), Body::from(vec![b'z'; 100])).await.ok().unwrap();
        assert_eq!(&third.bytes[..], &[b'z'; 100][..]);
    }

    #[tokio::test]
    async fn a_body_that_stalls_is_cut_off_at_the_timeout() {
        let intake = Intake::new(BODY_LIMIT, Duration::from_secs(1));
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        tx.send(Ok(Bytes::from_static(b"{\"partial\":"))).await.unwrap();
        let stream = futures_util::stream::unfold(rx, |mut rx| async { rx.recv().await.map(|f| (f, rx)) });
        let e = intake.read(&HeaderMap::new(), Body::from_stream(stream)).await.err().unwrap();
        assert!(matches!(e, ApiError::BodyTimeout { secs: 1 }));
        drop(tx);
    }
}
