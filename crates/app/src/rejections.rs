//! Nothing rejected is invisible: a delivery or tool call refused before it was stored (a wrong
//! secret or signature, a body that is not a call, too big, too slow) is recorded — route,
//! portal, reason, what the sender was told, declared size, sender's address, time; never the
//! body — and listed at `/events?status=rejected`. It is counted by route and reason
//! (`/metrics`) and logged once per route and reason per minute with how many there were.
//!
//! A sender without credentials must not cost unbounded work: at most [`KEPT_PER_MINUTE`] per
//! route and reason are written each minute (the rest are counted), the store keeps only the
//! newest [`callbridge_store::REJECTIONS_KEPT`], and routes are the configured templates, so
//! the counters are bounded too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use callbridge_domain::PortalId;
use callbridge_store::{REJECTIONS_KEPT, Rejection, Store, now_ms};
use parking_lot::Mutex;

use crate::http::{AppState, Refused};

/// Rejections written per route and reason each minute; the rest are only counted.
pub const KEPT_PER_MINUTE: u32 = 60;
/// What the sender was told, as kept (bytes, cut at a character boundary).
const DETAIL_MAX: usize = 500;

/// The per-minute windows and totals of rejections, by route and reason.
#[derive(Default)]
pub struct RejectionLog {
    windows: Mutex<HashMap<(String, &'static str), Window>>,
}

#[derive(Default)]
struct Window {
    minute: i64,
    /// Since the last log line (which this minute's first rejection writes).
    unlogged: u64,
    kept: u32,
}

/// What to do with one more rejection.
#[derive(Debug, PartialEq, Eq)]
pub struct Admitted {
    /// Write it to the store.
    pub keep: bool,
    /// Log a line now, counting this many (this one and those since the last line).
    pub log: Option<u64>,
}

impl RejectionLog {
    /// Counts a rejection at `now_ms` and says whether to keep and to log it.
    pub fn admit(&self, route: &str, reason: &'static str, now_ms: i64) -> Admitted {
        let minute = now_ms.div_euclid(60_000);
        let mut windows = self.windows.lock();
        let w = windows
            .entry((route.to_string(), reason))
            .or_insert_with(|| Window { minute: i64::MIN, ..Window::default() });
        w.unlogged += 1;
        let log = if w.minute != minute {
            w.minute = minute;
            w.kept = 0;
            Some(std::mem::take(&mut w.unlogged))
        } else {
            None
        };
        let keep = w.kept < KEPT_PER_MINUTE;
        w.kept += u32::from(keep);
        Admitted { keep, log }
    }
}

/// Middleware on the sources' routes: records what their handlers refused.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Kept cheap for the requests that go through (shared and copied values); made text only
    // for a refusal.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let portal = request.extensions().get::<PortalId>().cloned();
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let size = request.headers().get(axum::http::header::CONTENT_LENGTH).cloned();
    let response = next.run(request).await;
    if let Some(refused) = response.extensions().get::<Refused>() {
        let at_ms = now_ms();
        let route = route.as_ref().map_or("", MatchedPath::as_str).to_string();
        let size = size.and_then(|v| v.to_str().ok()?.parse::<i64>().ok());
        metrics::counter!("callbridge_webhooks_rejected_total", "route" => route.clone(), "reason" => refused.reason)
            .increment(1);
        let admitted = state.rejections.admit(&route, refused.reason, at_ms);
        if let Some(count) = admitted.log {
            tracing::warn!(
                http.route = %route,
                rejection.reason = refused.reason,
                rejection.count = count,
                "deliveries rejected (listed at /events?status=rejected)"
            );
        }
        if admitted.keep {
            let rejection = Rejection {
                id: 0,
                portal: portal.map(|p| p.to_string()),
                route,
                reason: refused.reason.to_string(),
                detail: cut(&refused.detail),
                status: i64::from(response.status().as_u16()),
                size,
                peer: peer.map(|ip| ip.to_string()),
                at_ms,
            };
            keep(state.store.clone(), rejection);
        }
    }
    response
}

/// Writes it after the answer has gone.
fn keep(store: Arc<dyn Store>, rejection: Rejection) {
    tokio::spawn(async move {
        if let Err(e) = store.record_rejection(&rejection, REJECTIONS_KEPT).await {
            tracing::warn!(error = %e, "recording a rejected delivery failed");
        }
    });
}

fn cut(detail: &str) -> String {
    let mut end = detail.len().min(DETAIL_MAX);
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    detail[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_minute_keeps_at_most_its_share_and_logs_once_with_the_count_since_the_last_line() {
        let log = RejectionLog::default();
        let minute = 60_000 * 1_000;
        let first: Vec<Admitted> =
            (0..100).map(|i| log.admit("/webhooks/retell", "unauthorized", minute + i)).collect();
        assert_eq!(first[0], Admitted { keep: true, log: Some(1) });
        assert!(first[1..].iter().all(|a| a.log.is_none()));
        assert_eq!(first.iter().filter(|a| a.keep).count(), KEPT_PER_MINUTE as usize);
        // Another reason on the same route has its own window.
        assert_eq!(log.admit("/webhooks/retell", "invalid_payload", minute + 5), Admitted { keep: true, log: Some(1) });
        // The next minute's first logs the 99 that came after the last line, and itself.
        assert_eq!(
            log.admit("/webhooks/retell", "unauthorized", minute + 60_000),
            Admitted { keep: true, log: Some(100) }
        );
    }

    #[test]
    fn what_the_sender_was_told_is_kept_within_bounds_whole_characters_only() {
        let long = "é".repeat(400);
        let kept = cut(&long);
        assert!(kept.len() <= DETAIL_MAX && kept.chars().all(|c| c == 'é'));
        assert_eq!(cut("short"), "short");
    }
}
