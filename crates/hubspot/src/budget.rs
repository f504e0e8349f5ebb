//! The portal's request budget, spent before a request is sent: HubSpot's rolling
//! 10-second window, the daily cap (with a reserve kept for interactive work), and the
//! search limit. Callers wait for room; they do not send and get 429s.
//!
//! A request occupies a slot of the window from the moment it is sent until ten seconds
//! after its response arrives. HubSpot counts a request when it arrives, which is somewhere
//! between the two, so counting this way can never exceed the server's count, whatever the
//! network delay — the cost is one round trip per slot (1.5 % of the window at 150 ms).
//!
//! The window's size starts from the tier and is then learned from the
//! `X-HubSpot-RateLimit-Max`/`-Interval-Milliseconds` headers; when `-Remaining` shows the
//! server has counted more than we did (another app or instance sharing the window), the
//! difference is recorded as used.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Who is asking: interactive work (an agent waiting mid-call) may use the reserves — of the
/// daily cap, and the last slots of each window — so it goes ahead of queued work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Interactive,
    Background,
    /// Work that can wait (a duplicate sweep): it fills the window only while nothing else
    /// waits for it, so a call's sync waits at most for the next slot to free (within one
    /// window), never behind the sweep's queue.
    Bulk,
}

tokio::task_local! {
    /// The priority of the work this task does for an agent (set by [`interactive`]).
    static PRIORITY: Priority;
}

/// Runs `work` as interactive: every HubSpot request it makes (in this task) may use the
/// reserves.
pub async fn interactive<F: std::future::Future>(work: F) -> F::Output {
    PRIORITY.scope(Priority::Interactive, work).await
}

/// Runs `work` as bulk work: every HubSpot request it makes (in this task) takes a slot only
/// when no other work waits for one.
pub async fn bulk<F: std::future::Future>(work: F) -> F::Output {
    PRIORITY.scope(Priority::Bulk, work).await
}

impl Priority {
    /// The priority a request goes out with: interactive if it or its task says so; bulk if
    /// its task is bulk work and it asks for nothing better.
    pub fn effective(self) -> Priority {
        match (PRIORITY.try_with(|p| *p), self) {
            (Ok(Priority::Interactive), _) | (_, Priority::Interactive) => Priority::Interactive,
            (Ok(Priority::Bulk), _) => Priority::Bulk,
            _ => self,
        }
    }
}

#[derive(Debug)]
struct Window {
    max: u32,
    interval: Duration,
    /// Response times of completed requests still inside the window.
    done: VecDeque<Instant>,
    in_flight: u32,
    /// No sends before this instant (after a 429).
    blocked_until: Option<Instant>,
    /// Slots background work leaves free for interactive work.
    reserve: u32,
    /// Whether HubSpot has answered yet: until then the window's real size is a guess (the
    /// tier's), so one request goes at a time and the first answer's headers correct it.
    answered: bool,
}

impl Window {
    fn prune(&mut self, now: Instant) {
        while self.done.front().is_some_and(|t| now.duration_since(*t) >= self.interval) {
            self.done.pop_front();
        }
    }

    fn used(&self) -> u32 {
        self.done.len() as u32 + self.in_flight
    }

    /// Whether the learning rule lets another request go: until HubSpot first answers, only
    /// one of this process's requests is in flight at a time.
    fn may_send(&self) -> bool {
        self.answered || self.in_flight == 0
    }

    /// The slots a request of this priority may fill (a reserve never takes a whole small
    /// window).
    fn room(&self, priority: Priority) -> u32 {
        match priority {
            Priority::Interactive => self.max,
            Priority::Background => self.max.saturating_sub(self.reserve).max(self.max.div_ceil(2)),
            Priority::Bulk => self.max.saturating_sub(self.reserve).max(self.max.div_ceil(2)),
        }
    }
}

/// A window several processes share (callbridge instances on one portal, coordinated through
/// PostgreSQL): the same slot rule, counted in one place.
#[async_trait::async_trait]
pub trait SharedWindow: Send + Sync {
    /// Takes a slot of `bucket` when fewer than `max` are held; otherwise says how long to wait.
    async fn take(&self, bucket: &str, max: u32, interval: Duration) -> Result<i64, Duration>;
    /// The slot's request finished: its cool-down starts now.
    async fn release(&self, bucket: &str, slot: i64);
    /// No sends in `bucket` for `d` (HubSpot said the window is spent).
    async fn block(&self, bucket: &str, d: Duration);
}

#[derive(Clone)]
struct Shared {
    window: Arc<dyn SharedWindow>,
    bucket: String,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("bucket", &self.bucket).finish()
    }
}

/// A sliding window limiter whose slots are held from send until `interval` after completion.
#[derive(Debug, Clone)]
pub struct Limiter {
    inner: Arc<(Mutex<Window>, Notify)>,
    shared: Option<Shared>,
    /// Requests waiting for a slot now.
    waiting: Arc<AtomicU32>,
}

/// Counts a request as waiting for as long as it lives (a cancelled wait stops counting).
struct Waiting(Arc<AtomicU32>);

impl Waiting {
    fn enter(count: &Arc<AtomicU32>) -> Waiting {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A slot taken from a [`Limiter`]; completing (or dropping) it starts its cool-down.
#[derive(Debug)]
pub struct Permit {
    limiter: Limiter,
    open: bool,
    /// The slot in a shared window, if the limiter is shared.
    slot: Option<i64>,
}

impl Permit {
    pub fn complete(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if !std::mem::take(&mut self.open) {
            return;
        }
        match (self.slot.take(), self.limiter.shared.clone()) {
            (Some(slot), Some(shared)) => {
                tokio::spawn(async move { shared.window.release(&shared.bucket, slot).await });
                self.limiter.settle(false);
            }
            _ => self.limiter.settle(true),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Limiter {
    pub fn new(max: u32, interval: Duration) -> Limiter {
        Limiter {
            inner: Arc::new((
                Mutex::new(Window {
                    max,
                    interval,
                    done: VecDeque::new(),
                    in_flight: 0,
                    blocked_until: None,
                    reserve: 0,
                    answered: true,
                }),
                Notify::new(),
            )),
            shared: None,
            waiting: Arc::new(AtomicU32::new(0)),
        }
    }

    /// The same limiter, counted in a window shared with other processes.
    pub fn shared_through(mut self, window: Arc<dyn SharedWindow>, bucket: &str) -> Limiter {
        self.shared = Some(Shared { window, bucket: bucket.to_string() });
        self
    }

    /// The same limiter, sending one request at a time until the first answer tells it the
    /// window HubSpot applies ([`Limiter::learn`]): a parallel start (property setup, a
    /// backlog's first reads) never bursts past a window smaller than the tier's.
    pub fn learning(self) -> Limiter {
        self.inner.0.lock().answered = false;
        self
    }

    /// The same limiter, with `slots` kept for interactive work.
    pub fn with_reserve(self, slots: u32) -> Limiter {
        self.inner.0.lock().reserve = slots;
        self
    }

    /// Waits for a slot, as background work.
    pub async fn acquire(&self) -> Permit {
        self.acquire_as(Priority::Background).await
    }

    /// Waits for a slot; interactive work may take the reserved ones.
    pub async fn acquire_as(&self, priority: Priority) -> Permit {
        let mut waiting: Option<Waiting> = None;
        if let Some(shared) = &self.shared {
            let (lock, notify) = &*self.inner;
            loop {
                // This process's requests in flight are counted here too, so that until
                // HubSpot first answers only one goes at a time (the same rule as below).
                let notified = notify.notified();
                let room = {
                    let mut w = lock.lock();
                    let free = w.may_send();
                    if free {
                        w.in_flight += 1;
                    }
                    free.then(|| (w.room(priority), w.interval))
                };
                let Some((max, interval)) = room else {
                    if priority != Priority::Bulk {
                        waiting.get_or_insert_with(|| Waiting::enter(&self.waiting));
                    }
                    notified.await;
                    continue;
                };
                let yields = priority == Priority::Bulk && self.waiting() > 0;
                let taken = if yields {
                    Err(Duration::from_millis(10))
                } else {
                    shared.window.take(&shared.bucket, max, interval).await
                };
                match taken {
                    Ok(slot) => return Permit { limiter: self.clone(), open: true, slot: Some(slot) },
                    Err(wait) => {
                        self.settle(false);
                        if priority != Priority::Bulk {
                            waiting.get_or_insert_with(|| Waiting::enter(&self.waiting));
                        }
                        tokio::time::sleep(wait.clamp(Duration::from_millis(2), Duration::from_secs(1))).await
                    }
                }
            }
        }
        let (lock, notify) = &*self.inner;
        loop {
            let notified = notify.notified();
            let wait = {
                let now = Instant::now();
                let mut w = lock.lock();
                w.prune(now);
                match w.blocked_until {
                    Some(t) if t > now => Some(t - now),
                    // Bulk work yields to any other work waiting for a slot.
                    _ if w.may_send()
                        && w.used() < w.room(priority)
                        && (priority != Priority::Bulk || self.waiting.load(Ordering::Relaxed) == 0) =>
                    {
                        w.in_flight += 1;
                        return Permit { limiter: self.clone(), open: true, slot: None };
                    }
                    // Full: the oldest completed slot frees first; else wait for a completion.
                    _ => w.done.front().map(|t| (*t + w.interval).saturating_duration_since(now)),
                }
            };
            if priority != Priority::Bulk {
                waiting.get_or_insert_with(|| Waiting::enter(&self.waiting));
            }
            match wait {
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep(d.max(Duration::from_millis(1))) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// A request of this process is over (or never went): it leaves the in-flight count, and
    /// on the in-process window (`cools`) its slot cools down from now — a shared window
    /// counts its slots itself.
    fn settle(&self, cools: bool) {
        let (lock, notify) = &*self.inner;
        let mut w = lock.lock();
        w.in_flight = w.in_flight.saturating_sub(1);
        if cools {
            w.done.push_back(Instant::now());
        }
        drop(w);
        notify.notify_waiters();
    }

    /// Adopts the limit HubSpot states in its headers.
    pub fn learn(&self, max: Option<u32>, interval: Option<Duration>, remaining: Option<u32>) {
        let (lock, notify) = &*self.inner;
        let mut w = lock.lock();
        w.answered = true;
        if let Some(m) = max.filter(|m| *m > 0) {
            w.max = m;
        }
        if let Some(i) = interval.filter(|i| !i.is_zero()) {
            w.interval = i;
        }
        if let Some(r) = remaining.filter(|_| self.shared.is_none()) {
            let now = Instant::now();
            w.prune(now);
            let server_used = w.max.saturating_sub(r);
            // Requests still in flight may or may not be in the server's count; only what
            // exceeds everything we know of is someone else's.
            let ours = w.used();
            for _ in ours..server_used {
                w.done.push_back(now);
            }
        }
        drop(w);
        notify.notify_waiters();
    }

    /// Stops all sends for `d` (after HubSpot said the window is spent).
    pub fn block_for(&self, d: Duration) {
        if let Some(shared) = self.shared.clone() {
            tokio::spawn(async move { shared.window.block(&shared.bucket, d).await });
        }
        let mut w = self.inner.0.lock();
        let until = Instant::now() + d;
        if w.blocked_until.is_none_or(|t| t < until) {
            w.blocked_until = Some(until);
        }
    }

    pub fn max(&self) -> u32 {
        self.inner.0.lock().max
    }

    pub fn interval(&self) -> Duration {
        self.inner.0.lock().interval
    }

    /// Requests waiting for a slot now, bulk work aside: work is piling up behind this limit.
    pub fn waiting(&self) -> u32 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Slots in use now (in flight plus cooling down).
    pub fn used(&self) -> u32 {
        let mut w = self.inner.0.lock();
        w.prune(Instant::now());
        w.used()
    }
}

/// What is known of the day's budget.
#[derive(Debug, Default)]
struct Daily {
    limit: Option<u64>,
    remaining: Option<u64>,
    /// Set when HubSpot answered 429 DAILY: nothing is sent before this.
    exhausted_until: Option<Instant>,
}

/// The whole budget of one portal.
#[derive(Debug, Clone)]
pub struct Budget {
    pub window: Limiter,
    pub search: Limiter,
    daily: Arc<Mutex<Daily>>,
    /// Share of the daily limit kept for interactive work.
    reserve_share: f64,
}

/// Slots of the 10-second window background work leaves to agents waiting mid-call: a
/// booking needs two or three requests, and 2 of 190 costs a drain about 1 %.
pub const WINDOW_RESERVE: u32 = 2;

/// Searches per second background work leaves to agents (a phone-only stranger's booking
/// needs one).
pub const SEARCH_RESERVE: u32 = 1;

/// Why the budget refused to let a request go.
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    /// The daily limit is spent (or only the interactive reserve is left); retry after this.
    Daily { resets_in: Duration },
}

impl Budget {
    pub fn new(ten_second_max: u32, window: Duration, search_per_second: u32, reserve_share: f64) -> Budget {
        Budget {
            window: Limiter::new(ten_second_max, window).with_reserve(WINDOW_RESERVE).learning(),
            search: Limiter::new(search_per_second, Duration::from_secs(1)).with_reserve(SEARCH_RESERVE),
            daily: Arc::new(Mutex::new(Daily::default())),
            reserve_share,
        }
    }

    /// What is left now of each window (as this process counts it) and of the day (as
    /// HubSpot's headers last said): `ten_second`, `search`, `daily`.
    pub fn remaining(&self) -> Vec<(&'static str, u64)> {
        let left = |l: &Limiter| u64::from(l.max().saturating_sub(l.used()));
        let mut remaining = vec![("ten_second", left(&self.window)), ("search", left(&self.search))];
        if let Some(daily) = self.daily_remaining() {
            remaining.push(("daily", daily));
        }
        remaining
    }

    /// Whether requests are waiting for the window or the search limit: a backlog on the
    /// budget, which an agent should not be made to wait behind.
    pub fn backlogged(&self) -> bool {
        self.window.waiting() > 0 || self.search.waiting() > 0
    }

    /// Checks the daily budget for a request of this priority.
    pub fn check_daily(&self, priority: Priority) -> Result<(), Refusal> {
        let d = self.daily.lock();
        let resets_in = until_midnight_utc();
        if d.exhausted_until.is_some_and(|t| t > Instant::now()) {
            return Err(Refusal::Daily { resets_in });
        }
        if let (Some(limit), Some(remaining)) = (d.limit, d.remaining) {
            let reserve = (limit as f64 * self.reserve_share) as u64;
            let floor = if priority == Priority::Interactive { 0 } else { reserve };
            if remaining <= floor {
                return Err(Refusal::Daily { resets_in });
            }
        }
        Ok(())
    }

    pub fn learn_daily(&self, limit: Option<u64>, remaining: Option<u64>) {
        let mut d = self.daily.lock();
        if limit.is_some() {
            d.limit = limit;
        }
        if remaining.is_some() {
            d.remaining = remaining;
        }
    }

    pub fn daily_spent(&self) {
        let mut d = self.daily.lock();
        d.exhausted_until = Some(Instant::now() + until_midnight_utc());
        d.remaining = Some(0);
    }

    pub fn daily_remaining(&self) -> Option<u64> {
        self.daily.lock().remaining
    }

    /// The daily requests left and the daily limit, as HubSpot's headers last stated them.
    pub fn daily(&self) -> Option<(u64, u64)> {
        let d = self.daily.lock();
        Some((d.remaining?, d.limit?))
    }
}

/// HubSpot resets the daily count at midnight in the account's time zone; UTC is assumed.
pub fn until_midnight_utc() -> Duration {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    Duration::from_secs(86_400 - now % 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_window_makes_callers_wait_until_a_slot_cools_down() {
        let limiter = Limiter::new(2, Duration::from_secs(10));
        limiter.acquire().await.complete();
        limiter.acquire().await.complete();
        let waiter = {
            let l = limiter.clone();
            tokio::spawn(async move { l.acquire().await })
        };
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(!waiter.is_finished());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(waiter.is_finished());
    }

    /// A learning limiter at the tier's 190 sends one request until HubSpot answers with a
    /// window of 4, then four side by side; `taken` counts the slots its window holds.
    async fn one_at_a_time_until_answered(limiter: Limiter, taken: impl Fn() -> u32) {
        let first = limiter.acquire().await;
        let second = {
            let l = limiter.clone();
            tokio::spawn(async move { l.acquire().await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "a second request waits while the first is unanswered");
        assert_eq!(taken(), 1, "only the first took a slot");
        first.complete();
        limiter.learn(Some(4), Some(Duration::from_secs(1)), Some(3));
        let second = second.await.unwrap();
        let (third, fourth) = (limiter.acquire().await, limiter.acquire().await);
        assert_eq!(taken(), 4, "answered: the window HubSpot stated (4) fills at once");
        drop((second, third, fourth));
    }

    #[tokio::test(start_paused = true)]
    async fn until_hubspot_first_answers_requests_go_one_at_a_time_then_fill_the_window() {
        let limiter = Limiter::new(190, Duration::from_secs(10)).learning();
        one_at_a_time_until_answered(limiter.clone(), || limiter.used()).await;
    }

    /// A shared window with room for everything: what it holds back is the limiter's doing.
    struct Roomy(AtomicU32);

    #[async_trait::async_trait]
    impl SharedWindow for Roomy {
        async fn take(&self, _: &str, _: u32, _: Duration) -> Result<i64, Duration> {
            Ok(self.0.fetch_add(1, Ordering::Relaxed) as i64)
        }
        async fn release(&self, _: &str, _: i64) {}
        async fn block(&self, _: &str, _: Duration) {}
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_window_also_sends_one_request_at_a_time_until_hubspot_first_answers() {
        let shared = Arc::new(Roomy(AtomicU32::new(0)));
        let limiter = Limiter::new(190, Duration::from_secs(10)).shared_through(shared.clone(), "portal").learning();
        one_at_a_time_until_answered(limiter, || shared.0.load(Ordering::Relaxed)).await;
    }

    #[tokio::test]
    async fn headers_showing_more_use_than_ours_take_slots() {
        let limiter = Limiter::new(100, Duration::from_secs(10));
        limiter.learn(Some(190), Some(Duration::from_secs(10)), Some(150));
        assert_eq!(limiter.max(), 190);
        assert_eq!(limiter.used(), 40);
    }

    #[test]
    fn background_work_leaves_the_daily_reserve_to_interactive_work() {
        let budget = Budget::new(100, Duration::from_secs(10), 4, 0.05);
        budget.learn_daily(Some(1000), Some(40));
        assert!(budget.check_daily(Priority::Background).is_err());
        assert!(budget.check_daily(Priority::Interactive).is_ok());
        budget.daily_spent();
        assert!(budget.check_daily(Priority::Interactive).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn background_work_leaves_the_reserved_slots_to_interactive_work() {
        let limiter = Limiter::new(10, Duration::from_secs(10)).with_reserve(2);
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(limiter.acquire().await);
        }
        let l = limiter.clone();
        let background = tokio::spawn(async move { l.acquire().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!background.is_finished(), "background stops short of the reserve");
        held.push(interactive(async { limiter.acquire_as(Priority::Background.effective()).await }).await);
        held.push(limiter.acquire_as(Priority::Interactive).await);
        assert_eq!(limiter.used(), 10, "interactive work took the two reserved slots");
        assert!(!background.is_finished());
        assert_eq!(limiter.waiting(), 1, "the background request waits");
        drop(held);
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(background.is_finished(), "background goes once slots free");
        assert_eq!(limiter.waiting(), 0);
    }

    #[tokio::test]
    async fn a_task_marked_interactive_says_so_and_others_do_not() {
        assert_eq!(Priority::Background.effective(), Priority::Background);
        assert_eq!(interactive(async { Priority::Background.effective() }).await, Priority::Interactive);
        assert_eq!(Priority::Interactive.effective(), Priority::Interactive);
    }

    #[tokio::test(start_paused = true)]
    async fn bulk_work_yields_the_next_free_slot_to_call_sync() {
        let limiter = Limiter::new(4, Duration::from_secs(10));
        let sweep = |l: &Limiter| {
            let l = l.clone();
            tokio::spawn(bulk(async move { l.acquire_as(Priority::Background.effective()).await }))
        };
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(bulk(async { limiter.acquire_as(Priority::Background.effective()).await }).await);
        }
        assert_eq!(limiter.used(), 4, "with nothing else waiting, a sweep fills the window");
        let more = sweep(&limiter);
        let l = limiter.clone();
        let call = tokio::spawn(async move { l.acquire().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(limiter.waiting(), 1, "the call's request waits; the sweep's is not counted");
        held.pop();
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(call.is_finished(), "the call took the slot that freed first");
        assert!(!more.is_finished(), "the sweep waits behind it");
        more.abort();
    }
}
