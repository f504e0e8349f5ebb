//! The circuit breaker of one portal's client: after consecutive failures that say HubSpot
//! itself is in trouble (5xx, timeouts, refused connections), requests stop going out. While
//! it is open every request is refused at once with [`HubSpotError::Paused`] and the time
//! until the next probe, so jobs wait in the queue (not an attempt) instead of retrying into
//! the outage. When that time comes, the first request to arrive is the probe (a read goes
//! itself; a write sends one cheap read first — the transport decides) while the others wait
//! for its answer; an answer closes the breaker and everyone goes on, another failure opens it
//! again for a longer, jittered and capped, backoff.
//!
//! An answer that is not a failure (any 2xx or 4xx, a 429) closes the count: HubSpot is up,
//! whatever it thought of the request.
//!
//! Work run [`patient`]ly (a queued round that has already read what it needs) is not refused:
//! its requests wait for the probe's answer, up to the retry policy's `max_elapsed`, and go on
//! from where they were, so an outage costs it no reads done before it began.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::HubSpotError;

/// When the breaker opens and how long it stays open.
#[derive(Debug, Clone)]
pub struct BreakerPolicy {
    /// Consecutive failures that open it.
    pub threshold: u32,
    /// The first wait before a probe; each failed probe doubles it, up to `cap`.
    pub base: Duration,
    pub cap: Duration,
    /// How long a probe may take before it counts as a failure.
    pub probe_timeout: Duration,
}

impl Default for BreakerPolicy {
    /// The cap bounds how long after HubSpot's return the breaker can still be open: with the
    /// ~2 s a backlog takes to land once it may, 2.8 s keeps everything visible within 5 s of the
    /// return, at a probe every 2.5-2.8 s (a 20 s outage meets 8 probes; with a 2 s cap, 11).
    fn default() -> Self {
        BreakerPolicy {
            threshold: 5,
            base: Duration::from_millis(500),
            cap: Duration::from_millis(2_800),
            probe_timeout: Duration::from_secs(5),
        }
    }
}

/// The least share of its backoff a wait is: drawn between this and all of it, so instances do
/// not probe in step, while the cap still sets the pace.
const JITTER_FLOOR: f64 = 0.9;

tokio::task_local! {
    /// Set by [`patient`] for the work it runs.
    static PATIENT: ();
}

/// Runs `work` patiently: a request it makes that meets an open breaker waits for the probe's
/// answer (up to the retry policy's `max_elapsed` since its first attempt) instead of being
/// refused. For queued work that would otherwise redo what it did before the outage; never for
/// an agent waiting mid-call (an interactive request is refused at once, whatever its task).
pub async fn patient<F: std::future::Future>(work: F) -> F::Output {
    PATIENT.scope((), work).await
}

/// Whether the work running in this task is [`patient`].
pub fn is_patient() -> bool {
    PATIENT.try_with(|_| ()).is_ok()
}

/// How long [`Breaker::paused_for`] answers while a probe is in flight.
pub const PROBE_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, backoff: Duration },
    Probing { backoff: Duration },
}

/// What a request may do now.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Send,
    /// This request is the first after the wait: it probes (itself, or a cheap read before it),
    /// and its answer says whether HubSpot is back.
    Probe,
    /// Refused: HubSpot is failing; ask again after this long.
    Refused(Duration),
}

pub struct Breaker {
    policy: BreakerPolicy,
    state: Mutex<State>,
    /// Woken when a probe's answer is in.
    probed: Notify,
    opened: Mutex<u64>,
}

impl Breaker {
    pub fn new(policy: BreakerPolicy) -> Breaker {
        Breaker {
            policy,
            state: Mutex::new(State::Closed { failures: 0 }),
            probed: Notify::new(),
            opened: Mutex::new(0),
        }
    }

    pub fn policy(&self) -> &BreakerPolicy {
        &self.policy
    }

    /// Whether a request may go out now; while a probe is out, waits for its answer.
    pub async fn admit(&self) -> Admit {
        loop {
            let notified = self.probed.notified();
            {
                let mut state = self.state.lock();
                match *state {
                    State::Closed { .. } => return Admit::Send,
                    State::Open { until, backoff } => {
                        let now = Instant::now();
                        if now < until {
                            return Admit::Refused(until - now);
                        }
                        *state = State::Probing { backoff };
                        return Admit::Probe;
                    }
                    State::Probing { .. } => {}
                }
            }
            // The probe's answer comes within its timeout; then look again.
            let _ = tokio::time::timeout(self.policy.probe_timeout, notified).await;
        }
    }

    /// HubSpot answered (a probe, or any request): the breaker closes.
    pub fn succeeded(&self) {
        let mut state = self.state.lock();
        let was = *state;
        *state = State::Closed { failures: 0 };
        drop(state);
        if !matches!(was, State::Closed { .. }) {
            tracing::info!("HubSpot answers again; requests resume");
            self.probed.notify_waiters();
        }
    }

    /// A request (or the probe) failed in a way that says HubSpot is in trouble.
    pub fn failed(&self) {
        let mut state = self.state.lock();
        let next = match *state {
            State::Closed { failures } if failures + 1 >= self.policy.threshold => {
                *self.opened.lock() += 1;
                tracing::warn!(
                    breaker.failures = failures + 1,
                    "HubSpot keeps failing; requests pause, and one probe at a time finds when it is back"
                );
                Some(self.policy.base)
            }
            State::Closed { failures } => {
                *state = State::Closed { failures: failures + 1 };
                None
            }
            State::Probing { backoff } => Some((backoff * 2).min(self.policy.cap)),
            // Requests sent before it opened: their failures change nothing.
            State::Open { .. } => None,
        };
        if let Some(backoff) = next {
            let wait = backoff.mul_f64(JITTER_FLOOR + fastrand::f64() * (1.0 - JITTER_FLOOR));
            *state = State::Open { until: Instant::now() + wait, backoff };
            drop(state);
            self.probed.notify_waiters();
        }
    }

    /// The probe's request was dropped before its answer (its caller gave up waiting): the
    /// next request probes instead, so the breaker never waits on a probe nobody runs.
    pub fn abandon_probe(&self) {
        let mut state = self.state.lock();
        if let State::Probing { backoff } = *state {
            *state = State::Open { until: Instant::now(), backoff };
            drop(state);
            self.probed.notify_waiters();
        }
    }

    /// While the breaker is open, how long until the next probe may go: zero when it may go
    /// now (the next request is that probe); a probe in flight counts as a short pause (its
    /// answer decides). `None` while closed.
    pub fn paused_for(&self) -> Option<Duration> {
        match *self.state.lock() {
            State::Closed { .. } => None,
            State::Open { until, .. } => Some(until.saturating_duration_since(Instant::now())),
            State::Probing { .. } => Some(PROBE_POLL),
        }
    }

    /// Whether requests are paused now.
    pub fn is_open(&self) -> bool {
        !matches!(*self.state.lock(), State::Closed { .. })
    }

    /// How many times it has opened.
    pub fn times_opened(&self) -> u64 {
        *self.opened.lock()
    }

    /// The error a refused request answers with.
    pub fn refusal(retry_in: Duration) -> HubSpotError {
        HubSpotError::Paused { retry_in_ms: retry_in.as_millis() as u64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerPolicy {
            threshold: 3,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(4),
            probe_timeout: Duration::from_secs(1),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_open_it_and_an_answer_in_between_starts_the_count_again() {
        let b = breaker();
        b.failed();
        b.failed();
        b.succeeded();
        b.failed();
        b.failed();
        assert_eq!(b.admit().await, Admit::Send, "two failures since the last answer");
        b.failed();
        assert!(matches!(b.admit().await, Admit::Refused(d) if d <= Duration::from_secs(1)));
        assert_eq!(b.times_opened(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_wait_one_request_probes_while_the_others_wait_for_its_answer() {
        let b = std::sync::Arc::new(breaker());
        for _ in 0..3 {
            b.failed();
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.admit().await, Admit::Probe);
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.admit().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a second request waits for the probe");
        b.succeeded();
        assert_eq!(waiting.await.unwrap(), Admit::Send);
        assert!(!b.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_dropped_before_its_answer_hands_the_probe_to_the_next_request() {
        let b = breaker();
        for _ in 0..3 {
            b.failed();
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.admit().await, Admit::Probe);
        b.abandon_probe();
        assert_eq!(b.admit().await, Admit::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_doubles_the_wait_up_to_the_cap() {
        let b = breaker();
        for _ in 0..3 {
            b.failed();
        }
        let mut waits = Vec::new();
        for _ in 0..4 {
            let Admit::Refused(wait) = b.admit().await else { panic!("open") };
            waits.push(wait);
            tokio::time::advance(wait).await;
            assert_eq!(b.admit().await, Admit::Probe);
            b.failed();
        }
        // Jittered between nine tenths and all of 1, 2, 4, 4 seconds.
        for (wait, backoff) in waits.iter().zip([1, 2, 4, 4]) {
            let backoff = Duration::from_secs(backoff);
            assert!(*wait <= backoff && *wait >= backoff.mul_f64(0.9), "{waits:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn it_tells_how_long_work_can_wait_until_the_probe_and_zero_once_the_probe_may_go() {
        let b = breaker();
        assert_eq!(b.paused_for(), None, "closed");
        for _ in 0..3 {
            b.failed();
        }
        let wait = b.paused_for().expect("open");
        assert!(wait <= Duration::from_secs(1) && wait >= Duration::from_millis(900), "{wait:?}");
        tokio::time::advance(wait).await;
        assert_eq!(b.paused_for(), Some(Duration::ZERO), "the next request is the probe");
        assert_eq!(b.admit().await, Admit::Probe);
        assert_eq!(b.paused_for(), Some(PROBE_POLL), "a probe in flight");
        b.succeeded();
        assert_eq!(b.paused_for(), None);
    }
}
