//! The worker: claims jobs, dispatches them on their kind ([`crate::jobs::JobKind`]), and
//! records every outcome here — done (with what the job wrote, in one transaction), retry at
//! a later time (exponential backoff with jitter), or dead with the reason after the last
//! attempt or on an error retrying cannot fix. Several loops run concurrently; the queue keeps
//! each caller's jobs in order and one at a time.
//!
//! Sync jobs go to their portal's sync engine in rounds: a claim is one round per portal (a
//! lone job is a round of one; several callers share each request the round makes). A loop
//! claims up to `batch_max` callers' jobs at once; at `batch_min` jobs or more work is piling
//! up, and the loop first tops the claim up with what is still arriving, for fuller batches.
//! Jobs a round hands back run in rounds after it. A round also takes, under the loop's name
//! and lease, the sync jobs that arrive for its callers while it runs ([`Joiner`]).
//!
//! An idle loop claims when a delivery wakes it; while its claims keep finding nothing (the
//! deliveries are for callers whose jobs are running, which their own loop claims next), it
//! claims less and less often, so it does not take the database from acknowledgements.
//!
//! While every ready portal's circuit breaker holds its requests back, the loops claim nothing
//! until the next probe may go (claiming only to hand jobs back would take the database from
//! acknowledgements). A round already running when HubSpot fails keeps what it has read and
//! waits for the probe ([`callbridge_hubspot::patient`]), its leases renewed, up to the retry
//! policy's `max_elapsed`; only then does it hand its jobs back. An agent's round never waits.
//! With several portals, a portal's rounds never hold more than all loops but one (below), so
//! its outage cannot hold up the others' calls.
//!
//! A round whose callers settled without a search have landed waits for its phone searches,
//! which HubSpot's search limit paces; meanwhile it lends its loop's place ([`Lanes`]) to a
//! spare loop, which claims and runs the next round — so while a burst's first rounds wait for
//! their answers, the next callers are read and their numbers join the searches, instead of
//! the searches running dry until a loop frees.
//!
//! Portals are served fairly: one whose HubSpot is down, whose token is refused, whose budget
//! is already backlogged or whose rounds hold all loops but one hands its claimed jobs back
//! for a moment (not an attempt), so a loop is always free for another portal's calls.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use callbridge_domain::PortalId;
use callbridge_store::{Failure, Job, Settlement, Store, now_ms};
use futures_util::future::join_all;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::jobs::JobKind;
use crate::portals::{Portal, Portals};
use crate::sync::{RoundReport, SyncError, SyncJob};

/// How long jobs of a portal that is not ready wait before they are looked at again.
const NOT_READY_WAIT: Duration = Duration::from_secs(1);

/// Rows of a kind recorded per transaction when a round is settled: a round of a thousand
/// jobs is a dozen short transactions, not one long one ingest would wait behind.
const SETTLE_PART: usize = 100;
/// How long a portal's jobs step aside for other portals' ([`Worker::take_turn`]).
const BUDGET_WAIT: Duration = Duration::from_millis(500);
/// After a claim that found nothing, the loop waits at least this long, doubled for each such
/// claim in a row up to [`EMPTY_CLAIM_GAP_MAX`], before a delivery's wake makes it claim again.
/// An idle loop's first claim after a quiet moment goes at once.
const EMPTY_CLAIM_GAP: Duration = Duration::from_millis(2);
const EMPTY_CLAIM_GAP_MAX: Duration = Duration::from_millis(100);
/// The shortest wait of a loop that leaves the queue alone while HubSpot is paused.
const PROBE_POLL: Duration = callbridge_hubspot::breaker::PROBE_POLL;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub workers: usize,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub lease: Duration,
    /// Jobs claimed at once from which a loop lands them as one round.
    pub batch_min: usize,
    /// Jobs a loop claims at most at once.
    pub batch_max: usize,
    /// How long a loop that found a burst keeps topping its batch up with jobs still
    /// arriving before it starts (a fuller batch spends fewer requests per event).
    pub gather: Duration,
}

pub struct Worker {
    pub portals: Portals,
    pub store: Arc<dyn Store>,
    pub config: WorkerConfig,
    /// Woken when a job is enqueued.
    pub wake: Arc<Notify>,
    /// Tells this worker's loops from another app's in the same process (tests, the demo).
    pub instance: u64,
    /// Failures retrying can fix, told as one story rather than a line per job per attempt.
    pub streak: parking_lot::Mutex<Streak>,
    /// Each portal's rounds running on this worker's loops ([`Worker::take_turn`]).
    pub rounds: parking_lot::Mutex<HashMap<PortalId, usize>>,
    /// Held by the one loop that claims while every portal's breaker is open and its probe
    /// may go (see `run_loop`).
    pub probe_turn: tokio::sync::Mutex<()>,
    /// The places rounds waiting for their searches lend to the spare loops.
    pub lanes: Lanes,
}

/// The places rounds lend while they wait for their phone searches: a spare loop (there are as
/// many as loops) runs only while it holds one. A round lends once, when only its searches are
/// left, and recalls the place when it ends; a spare whose place was recalled while it ran
/// gives it up after its round.
#[derive(Debug)]
pub struct Lanes {
    free: tokio::sync::Semaphore,
    /// Places recalled while a spare held them.
    owed: std::sync::atomic::AtomicUsize,
}

impl Default for Lanes {
    fn default() -> Lanes {
        Lanes { free: tokio::sync::Semaphore::new(0), owed: Default::default() }
    }
}

impl Lanes {
    fn lend(&self) {
        self.free.add_permits(1);
    }

    fn recall(&self) {
        match self.free.try_acquire() {
            Ok(place) => place.forget(),
            Err(_) => {
                self.owed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    /// Whether a spare holding a place must give it up (one was recalled); if so, the debt is
    /// counted as paid.
    fn repay(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.owed.fetch_update(SeqCst, SeqCst, |o| o.checked_sub(1)).is_ok()
    }
}

/// A portal's round running on a loop ([`Worker::take_turn`]); ended when dropped.
struct Turn<'w> {
    worker: &'w Worker,
    portal: PortalId,
    /// Counted among the portal's rounds (a spare loop's is not).
    counted: bool,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        if let Some(running) = self.worker.rounds.lock().get_mut(&self.portal) {
            *running = running.saturating_sub(1);
        }
    }
}

/// The ids of the jobs a loop holds, whose leases its heartbeat renews.
type Leases = Arc<parking_lot::Mutex<Vec<i64>>>;

/// How a portal's rounds on a loop take the sync jobs queued behind their callers' since
/// they began ([`crate::sync::RoundHost`]): claimed under the loop's name, held and renewed
/// like the claim's own. A caller whose next job is not a sync job (a meeting's change, a
/// link booking) takes nothing more here: that job and those behind it go back to the queue at
/// once, to run in order after the caller's round.
struct Joiner<'w> {
    worker: &'w Worker,
    name: &'w str,
    portal: &'w PortalId,
    leases: &'w Leases,
    /// The jobs taken since the last [`Joiner::this_round`], for recording their outcomes.
    joined: parking_lot::Mutex<HashMap<i64, Held>>,
    /// The round running lent its loop's place ([`Lanes`]).
    lent: std::sync::atomic::AtomicBool,
    /// Callers who take nothing more.
    closed: parking_lot::Mutex<std::collections::HashSet<String>>,
}

impl<'w> Joiner<'w> {
    fn new(worker: &'w Worker, name: &'w str, portal: &'w PortalId, leases: &'w Leases) -> Joiner<'w> {
        Joiner {
            worker,
            name,
            portal,
            leases,
            joined: Default::default(),
            closed: Default::default(),
            lent: Default::default(),
        }
    }

    /// The jobs taken since the last call (by the round that just ended); the place the round
    /// lent is recalled.
    fn this_round(&self) -> HashMap<i64, Held> {
        if self.lent.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.worker.lanes.recall();
        }
        std::mem::take(&mut *self.joined.lock())
    }
}

#[async_trait::async_trait]
impl crate::sync::RoundHost for Joiner<'_> {
    fn searching(&self) {
        if !self.lent.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.worker.lanes.lend();
        }
    }

    async fn claim(&self, caller_keys: Vec<String>) -> Vec<SyncJob> {
        let keys: Vec<String> = {
            let closed = self.closed.lock();
            caller_keys.into_iter().filter(|k| !closed.contains(k)).collect()
        };
        if keys.is_empty() {
            return vec![];
        }
        let (w, max) = (self.worker, self.worker.config.batch_max.max(1));
        let jobs = match w.store.claim_followers(self.name, w.config.lease, self.portal, &keys, max).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "taking the calls queued behind a round's callers failed; they run after it");
                return vec![];
            }
        };
        let (mut taken, mut back) = (Vec::new(), Vec::new());
        for job in jobs {
            let event = JobKind::decode(&job.kind, &job.event_json).ok().and_then(|k| k.event());
            let mut closed = self.closed.lock();
            match event {
                Some(event) if !closed.contains(&job.caller_key) => {
                    self.joined.lock().insert(job.id, Held::of(&job));
                    self.leases.lock().push(job.id);
                    taken.push(SyncJob {
                        id: job.id,
                        event,
                        retrying: job.claims > 1 || job.attempts > 0,
                        caller_key: job.caller_key,
                    });
                }
                _ => {
                    closed.insert(job.caller_key.clone());
                    back.push(job.id);
                }
            }
        }
        if !back.is_empty()
            && let Err(e) = w.store.defer(&back, now_ms()).await
        {
            tracing::error!(error = %e, "handing jobs back failed; their leases will expire");
        }
        taken
    }
}

/// A job held by a claim, or taken by one of its rounds on the way.
fn held_of<'a>(claimed: &'a HashMap<i64, Held>, joined: &'a HashMap<i64, Held>, id: &i64) -> Option<&'a Held> {
    claimed.get(id).or_else(|| joined.get(id))
}

/// What recording a claimed job's failure needs of it (not its payload).
struct Held {
    id: i64,
    kind: String,
    attempts: i64,
    /// An agent waits on it (a tool's booking or change): it runs as interactive work.
    interactive: bool,
}

impl Held {
    fn of(job: &Job) -> Held {
        Held {
            id: job.id,
            kind: job.kind.clone(),
            attempts: job.attempts,
            interactive: crate::tools::is_interactive(&job.idempotency_key),
        }
    }
}

/// A run of failures that retrying can fix (HubSpot down or timing out): one line when it
/// starts, one with the counts when jobs land again.
#[derive(Debug, Default)]
pub struct Streak {
    failed: u64,
    since: Option<std::time::Instant>,
}

impl Worker {
    /// The names the loops claim jobs under (unique to this process): the loops', then the
    /// spare loops' ([`Lanes`]).
    pub fn names(&self) -> Vec<String> {
        (0..self.config.workers * 2).map(|n| format!("worker-{n}-{}-{}", std::process::id(), self.instance)).collect()
    }

    /// Starts the loops and the spare loops; they stop when `shutdown` fires, after their
    /// current round.
    pub fn start(self: Arc<Self>, shutdown: CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        self.names()
            .into_iter()
            .enumerate()
            .map(|(n, name)| {
                let (worker, shutdown, spare) = (self.clone(), shutdown.clone(), n >= self.config.workers);
                tokio::spawn(async move { worker.run_loop(name, spare, shutdown).await })
            })
            .collect()
    }

    /// Hands the jobs the loops still hold back to the queue (after they were stopped).
    ///
    /// A loop stopped mid-claim may leave that claim's write to land just after a first
    /// hand-back, and a hand-back may fail on a busy database; so passes repeat, a moment
    /// apart, until one finds nothing left to hand back (at most `RELEASE_PASSES`).
    pub async fn release(&self) {
        const RELEASE_PASSES: u32 = 10;
        let names = self.names();
        let mut handed = 0;
        let mut passes = 0;
        loop {
            passes += 1;
            match self.store.release(&names).await {
                Ok(0) if passes > 1 => break,
                Ok(n) => handed += n,
                Err(e) if passes < RELEASE_PASSES => {
                    tracing::warn!(error = %e, "handing jobs back failed; trying again")
                }
                Err(e) => {
                    tracing::error!(error = %e, "handing jobs back failed; their leases will expire");
                    return;
                }
            }
            if passes == RELEASE_PASSES {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if handed > 0 {
            tracing::info!(jobs = handed, passes, "handed unfinished jobs back to the queue");
        }
    }

    async fn run_loop(&self, name: String, spare: bool, shutdown: CancellationToken) {
        // Claims in a row, each made on a wake, that found nothing runnable.
        let mut empty_claims = 0u32;
        // A spare loop's lent place.
        let mut lane: Option<tokio::sync::SemaphorePermit<'_>> = None;
        // The last wait ended on a delivery's wake, which no claim has answered yet.
        let mut unanswered_wake = false;
        while !shutdown.is_cancelled() {
            if spare {
                if let Some(place) = lane.take_if(|_| self.lanes.repay()) {
                    place.forget();
                    // A spare giving up its place passes on the wake it took, or that delivery
                    // would wait for a loop's timer.
                    if std::mem::take(&mut unanswered_wake) {
                        self.wake.notify_one();
                    }
                }
                if lane.is_none() {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        place = self.lanes.free.acquire() => lane = place.ok(),
                    }
                    continue;
                }
            }
            // Nothing to claim for while no portal can take work (setup pending, token refused):
            // claiming only to hand jobs back would load the database for nothing.
            let ready = self.wake.notified();
            if !self.portals.iter().any(|p| p.readiness.is_ready()) {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = ready => continue,
                    _ = tokio::time::sleep(NOT_READY_WAIT / 5) => continue,
                }
            }
            // Every portal that can take work has its requests paused by its breaker: claiming
            // now would only hand the jobs back (a write per job, taken from acknowledgements
            // while HubSpot is down), so wait until the next probe may go; then one loop claims,
            // and its round's first request is the probe, while the others wait for its answer.
            let paused = self.paused();
            let _probing = paused.filter(|w| w.is_zero()).and_then(|_| self.probe_turn.try_lock().ok());
            if let (Some(wait), None) = (paused, &_probing) {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait.clamp(PROBE_POLL, NOT_READY_WAIT)) => continue,
                }
            }
            let notified = self.wake.notified();
            unanswered_wake = false;
            let claimed = self.store.claim_many(&name, self.config.lease, self.config.batch_max.max(1)).await;
            if let Ok(jobs) = &claimed {
                crate::meters::claim(!jobs.is_empty());
            }
            match claimed {
                Ok(mut jobs) if !jobs.is_empty() => {
                    empty_claims = 0;
                    // A burst gathers for a moment into fuller rounds — unless an agent waits on
                    // one of its jobs.
                    let waited_on = jobs.iter().any(|j| crate::tools::is_interactive(&j.idempotency_key));
                    if jobs.len() >= self.config.batch_min.max(2) && !waited_on {
                        self.top_up(&name, &mut jobs).await;
                    }
                    // The leases of every job held are renewed until they are all recorded
                    // (with those its rounds take on the way).
                    let leases = Arc::new(parking_lot::Mutex::new(jobs.iter().map(|j| j.id).collect()));
                    let heartbeat = self.heartbeat(&name, leases.clone());
                    self.run(&name, spare, &leases, jobs).await;
                    heartbeat.abort();
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "claiming a job failed"),
            }
            // Nothing runnable: sleep until woken, until the next retry is due, or a second. Jobs
            // already due that no claim took wait behind a running job of their caller, and the
            // loop that runs it claims them when it settles: they set no wait here.
            let wait = match self.store.next_run_at().await {
                Ok(Some(at)) if at > now_ms() => Duration::from_millis((at - now_ms()).clamp(5, 1000) as u64),
                _ => Duration::from_secs(1),
            };
            // Every delivery wakes a loop. While wakes keep finding nothing (deliveries for
            // callers whose jobs are running), the loop claims less and less often, so its
            // empty claims do not take the database from the acknowledgements.
            empty_claims += 1;
            let gap = EMPTY_CLAIM_GAP.saturating_mul(1 << empty_claims.min(8)).min(EMPTY_CLAIM_GAP_MAX);
            let woken = async {
                tokio::time::sleep(gap).await;
                notified.await
            };
            let by_a_wake = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = woken => true,
                _ = tokio::time::sleep(wait.max(gap)) => false,
            };
            if !by_a_wake {
                empty_claims = 0;
            }
            unanswered_wake = by_a_wake;
        }
    }

    /// How long every ready portal's requests stay paused ([`callbridge_hubspot::HubSpotApi::paused_for`]),
    /// or `None` when some ready portal could send now.
    fn paused(&self) -> Option<Duration> {
        let mut ready = self.portals.iter().filter(|p| p.readiness.is_ready()).peekable();
        ready.peek()?;
        ready.map(|p| p.hubspot.paused_for()).try_fold(Duration::MAX, |least, p| p.map(|p| least.min(p)))
    }

    /// A burst is still arriving: claim what comes in for a moment, up to `batch_max`.
    async fn top_up(&self, name: &str, jobs: &mut Vec<Job>) {
        let deadline = tokio::time::Instant::now() + self.config.gather;
        while jobs.len() < self.config.batch_max && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(self.config.gather / 5).await;
            match self.store.claim_many(name, self.config.lease, self.config.batch_max - jobs.len()).await {
                Ok(more) if !more.is_empty() => jobs.extend(more),
                _ => return,
            }
        }
    }

    /// Renews the leases of running jobs until aborted, so a slow job (waiting for
    /// HubSpot's budget, retrying through an outage) is never taken over by another worker.
    fn heartbeat(&self, worker: &str, leases: Leases) -> tokio::task::JoinHandle<()> {
        let (store, lease, worker) = (self.store.clone(), self.config.lease, worker.to_string());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let ids = leases.lock().clone();
                if ids.is_empty() {
                    return;
                }
                match store.renew_many(&ids, &worker, lease).await {
                    Ok(held) => {
                        let held: std::collections::HashSet<i64> = held.into_iter().collect();
                        let lost: std::collections::HashSet<i64> =
                            ids.into_iter().filter(|id| !held.contains(id)).collect();
                        leases.lock().retain(|id| !lost.contains(id));
                    }
                    Err(e) => tracing::warn!(error = %e, "renewing job leases failed"),
                }
            }
        })
    }

    /// Decodes claimed jobs and dispatches them: sync jobs to their portal's engine, one
    /// round per portal.
    async fn run(&self, name: &str, spare: bool, leases: &Leases, jobs: Vec<Job>) {
        let held: HashMap<i64, Held> = jobs.iter().map(|j| (j.id, Held::of(j))).collect();
        let mut by_portal: BTreeMap<PortalId, Vec<SyncJob>> = BTreeMap::new();
        let mut changes = Vec::new();
        for job in jobs {
            match JobKind::decode(&job.kind, &job.event_json) {
                Ok(kind @ (JobKind::UpdateMeeting(_) | JobKind::BookLink(_) | JobKind::ContactChanged(_))) => {
                    changes.push((job.id, job.portal.clone(), kind, job.claims > 1 || job.attempts > 0))
                }
                Ok(kind) => {
                    let Some(event) = kind.event() else { continue };
                    by_portal.entry(job.portal.clone()).or_default().push(SyncJob {
                        id: job.id,
                        event,
                        retrying: job.claims > 1 || job.attempts > 0,
                        caller_key: job.caller_key.clone(),
                    })
                }
                Err(e) => self.fail(&Held::of(&job), SyncError::Permanent(e.to_string())).await,
            }
        }
        join_all(by_portal.into_iter().map(|(portal_id, jobs)| {
            let held = &held;
            async move {
                let Some(portal) = self.portals.get(&portal_id).cloned() else {
                    let e = SyncError::Transient(format!("portal {portal_id} is not configured here"));
                    for j in jobs {
                        self.fail(&held[&j.id], e.clone()).await;
                    }
                    return;
                };
                if !portal.readiness.is_ready() {
                    self.wait(&jobs.iter().map(|j| j.id).collect::<Vec<_>>(), NOT_READY_WAIT).await;
                    return;
                }
                let Some(_turn) = self.take_turn(&portal, spare, jobs.iter().map(|j| &held[&j.id])) else {
                    self.wait(&jobs.iter().map(|j| j.id).collect::<Vec<_>>(), BUDGET_WAIT).await;
                    return;
                };
                let joiner = Joiner::new(self, name, &portal_id, leases);
                self.sync(&portal, jobs, held, &joiner).await;
            }
        }))
        .await;
        // After the rounds, in the order queued: a booking claimed with its change is in
        // HubSpot by now, and a call claimed with a merge of its contact has landed.
        changes.sort_by_key(|c| c.0);
        for (id, portal_id, change, retrying) in changes {
            self.single_job(&held[&id], &portal_id, &change, retrying).await;
        }
    }

    /// Fairness between portals: a portal's claimed jobs go back for a moment (not an
    /// attempt) instead of running when its budget already has requests waiting (another
    /// worker would only wait with them), or when its rounds already hold all loops but one —
    /// so a loop is always free for another portal's calls, however long this portal's rounds
    /// wait for its budget. An agent's job never steps aside (interactive work has its
    /// reserve); with one portal served there is no one to yield to. A spare loop's round does
    /// not count against the loops (it runs on a place a waiting round lent). The turn is
    /// given back when dropped.
    fn take_turn<'h>(
        &self,
        portal: &Portal,
        spare: bool,
        mut jobs: impl Iterator<Item = &'h Held>,
    ) -> Option<Turn<'_>> {
        let fair = self.portals.len() > 1 && !jobs.any(|j| j.interactive);
        if fair && portal.hubspot.backlogged() {
            return None;
        }
        if spare {
            return Some(Turn { worker: self, portal: portal.id().clone(), counted: false });
        }
        let mut rounds = self.rounds.lock();
        let running = rounds.entry(portal.id().clone()).or_default();
        if fair && *running >= self.config.workers.saturating_sub(1).max(1) {
            return None;
        }
        *running += 1;
        Some(Turn { worker: self, portal: portal.id().clone(), counted: true })
    }

    /// Runs a job that is not part of a sync round (`update_meeting`, `book_link`,
    /// `contact_change`) and records its outcome.
    async fn single_job(&self, job: &Held, portal_id: &PortalId, kind: &JobKind, retrying: bool) {
        let Some(portal) = self.portals.get(portal_id).cloned() else {
            return self.fail(job, SyncError::Transient(format!("portal {portal_id} is not configured here"))).await;
        };
        if !portal.readiness.is_ready() {
            return self.wait(&[job.id], NOT_READY_WAIT).await;
        }
        let Some(_turn) = self.take_turn(&portal, false, std::iter::once(job)) else {
            return self.wait(&[job.id], BUDGET_WAIT).await;
        };
        let work = async {
            match kind {
                JobKind::BookLink(b) => {
                    crate::scheduler::book(self.store.as_ref(), &portal, &b.booking_key, retrying).await
                }
                JobKind::UpdateMeeting(change) => crate::meetings::apply(self.store.as_ref(), &portal, change).await,
                JobKind::ContactChanged(c) => crate::hubspot_webhooks::apply(self.store.as_ref(), &portal, &c.0).await,
                _ => Err(SyncError::Permanent("a sync job is run in a round".into())),
            }
        };
        let outcome = if job.interactive { callbridge_hubspot::interactive(work).await } else { work.await };
        match outcome {
            Ok(()) => {
                let settled = callbridge_store::Settlement {
                    portal: portal_id.clone(),
                    done: vec![job.id],
                    ..Default::default()
                };
                match self.store.settle(&settled).await {
                    Ok(()) => crate::meters::job_outcome("done", job.attempts + 1),
                    Err(e) => tracing::error!(error = %e, "recording a finished job failed; it will run again"),
                }
            }
            Err(SyncError::Unready(why)) => {
                portal.readiness.lose(portal_id.as_str(), why);
                self.wait(&[job.id], NOT_READY_WAIT).await;
            }
            Err(SyncError::Paused(_, retry_in)) => self.wait(&[job.id], retry_in).await,
            Err(e) => self.fail(job, e).await,
        }
    }

    /// Runs a round and the rounds it hands back: each job that must run alone in a round of
    /// its own (one after another: they may share a contact), then those deferred, together.
    async fn sync(&self, portal: &Portal, first: Vec<SyncJob>, held: &HashMap<i64, Held>, joiner: &Joiner<'_>) {
        // The jobs the rounds took on the way, added as each round ends.
        let mut joined: HashMap<i64, Held> = HashMap::new();
        let mut rounds = VecDeque::from([first]);
        while let Some(round) = rounds.pop_front() {
            let started = std::time::Instant::now();
            let jobs = round.len();
            let span = tracing::info_span!("round", portal.id = %portal.id(), round.jobs = jobs);
            // The round's jobs, and (once it ends) those it took on the way.
            let mut ids: Vec<i64> = round.iter().map(|j| j.id).collect();
            // A round an agent waits on (a tool's booking in it) goes ahead of queued work. Any
            // other round meeting an outage keeps what it resolved and waits for the breaker's
            // probe (its leases renewed meanwhile) instead of handing its jobs back to be redone.
            let interactive = round.iter().any(|j| held_of(held, &joined, &j.id).is_some_and(|h| h.interactive));
            let run = portal.engine.run_round(round, joiner).instrument(span.clone());
            let outcome = if interactive {
                callbridge_hubspot::interactive(run).await
            } else {
                callbridge_hubspot::patient(run).await
            };
            let taken = joiner.this_round();
            ids.extend(taken.keys());
            joined.extend(taken);
            let held = |id: &i64| held_of(held, &joined, id);
            match outcome {
                Ok(report) => {
                    let RoundReport { landed, failed, next, alone, .. } = &report;
                    span.in_scope(|| log_round(&report, started));
                    if !landed.done.is_empty() {
                        self.landed_again();
                    }
                    match self.settle(landed).await {
                        Ok(()) => {
                            for id in &landed.done {
                                crate::meters::job_outcome("done", held(id).map_or(0, |h| h.attempts) + 1);
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "recording landed jobs failed; their leases will expire and they will run again")
                        }
                    }
                    let (mut waiting, mut wait) = (Vec::new(), Duration::ZERO);
                    for (id, e) in failed {
                        match e {
                            // Only setup can mend it: the portal stops taking work, the job waits.
                            SyncError::Unready(why) => {
                                portal.readiness.lose(portal.id().as_str(), why.clone());
                                waiting.push(*id);
                                wait = wait.max(NOT_READY_WAIT);
                            }
                            // HubSpot keeps failing: the job waits for the breaker's next probe.
                            SyncError::Paused(_, retry_in) => {
                                waiting.push(*id);
                                wait = wait.max(*retry_in);
                            }
                            e => {
                                if let Some(h) = held(id) {
                                    self.fail(h, e.clone()).await
                                }
                            }
                        }
                    }
                    if !waiting.is_empty() {
                        // The rest of this claim waits with them.
                        waiting.extend(next.iter().chain(alone).chain(rounds.iter().flatten()).map(|j| j.id));
                        self.wait(&waiting, wait).await;
                        return;
                    }
                    rounds.extend(alone.iter().cloned().map(|j| vec![j]));
                    if !next.is_empty() {
                        rounds.push_back(next.clone());
                    }
                }
                // The store failed mid-way: every job runs again, and looks up what it wrote.
                Err(e) => {
                    for h in ids.iter().filter_map(held) {
                        self.fail(h, e.clone()).await;
                    }
                }
            }
        }
    }

    /// Records a round's landed jobs in short parts ([`Settlement::parts`]), so acknowledgements
    /// take their turns with the store between them.
    async fn settle(&self, landed: &Settlement) -> Result<(), callbridge_store::StoreError> {
        for part in landed.parts(SETTLE_PART) {
            self.store.settle(&part).await?;
        }
        Ok(())
    }

    /// Ends a run of failures, if one was going on, with its counts.
    fn landed_again(&self) {
        let mut streak = self.streak.lock();
        if let Some(since) = streak.since.take() {
            tracing::info!(
                jobs.failed = streak.failed,
                duration_ms = since.elapsed().as_millis() as u64,
                "jobs are landing again after failures"
            );
            streak.failed = 0;
        }
    }

    /// Puts jobs back to wait for `delay` (a portal that is not ready, HubSpot's requests paused):
    /// not an attempt, so nothing goes dead while HubSpot is unreachable or the token is refused.
    async fn wait(&self, ids: &[i64], delay: Duration) {
        for _ in ids {
            crate::meters::job_outcome("waiting", 0);
        }
        if let Err(e) = self.store.defer(ids, now_ms() + delay.as_millis() as i64).await {
            tracing::error!(error = %e, "handing jobs back failed; their leases will expire");
        }
    }

    /// Records a failure: a retry at a later time while attempts remain and retrying can
    /// help, else dead with the reason.
    async fn fail(&self, job: &Held, e: SyncError) {
        let attempt = job.attempts as u32 + 1;
        let failure = match &e {
            SyncError::Transient(_) if attempt < self.config.max_attempts => {
                Failure::RetryAt(now_ms() + self.backoff(attempt).as_millis() as i64)
            }
            _ => Failure::Dead,
        };
        crate::meters::job_outcome(if matches!(failure, Failure::Dead) { "dead" } else { "retry" }, attempt as i64);
        match failure {
            Failure::Dead => tracing::error!(
                job.id = job.id,
                job.kind = %job.kind,
                job.attempt = attempt,
                error.kind = e.kind(),
                "job is dead; its reason is in GET /events?status=dead; replay it once the cause is fixed"
            ),
            Failure::RetryAt(at) => {
                tracing::debug!(
                    job.id = job.id,
                    job.kind = %job.kind,
                    job.attempt = attempt,
                    retry.in_ms = at - now_ms(),
                    error.kind = e.kind(),
                    "job failed; will retry"
                );
                let mut streak = self.streak.lock();
                if streak.since.is_none() {
                    streak.since = Some(std::time::Instant::now());
                    tracing::warn!(
                        error.kind = e.kind(),
                        "jobs are failing and will retry (HubSpot unreachable or failing?); a line follows when they land again"
                    );
                }
                streak.failed += 1;
            }
        }
        if let Err(err) = self.store.fail(job.id, e.kind(), &e.to_string(), failure).await {
            tracing::error!(error = %err, "recording the job's outcome failed; its lease will expire and it will run again");
        }
    }

    /// Exponential backoff with jitter: base · 2^(attempt−1), capped, between half and all of it.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.config.retry_base.saturating_mul(1u32 << (attempt - 1).min(20)).min(self.config.retry_max);
        exp / 2 + exp.mul_f64(fastrand::f64() / 2.0)
    }
}

fn log_round(report: &RoundReport, started: std::time::Instant) {
    tracing::info!(
        round.landed = report.landed.done.len(),
        round.failed = report.failed.len(),
        round.next = report.next.len(),
        round.alone = report.alone.len(),
        hubspot.contacts_created = report.contacts_created,
        hubspot.activities_created = report.activities_created,
        resolve_ms = report.phase_ms[0],
        contacts_ms = report.phase_ms[1],
        activities_ms = report.phase_ms[2],
        duration_ms = started.elapsed().as_millis() as u64,
        "round landed"
    );
}

#[cfg(test)]
mod tests {
    use super::Lanes;

    #[test]
    fn a_place_recalled_before_a_spare_took_it_is_gone_and_one_taken_is_owed_back() {
        let lanes = Lanes::default();
        lanes.lend();
        lanes.recall();
        assert!(lanes.free.try_acquire().is_err(), "recalled before any spare took it");
        assert!(!lanes.repay());

        lanes.lend();
        let place = lanes.free.try_acquire().expect("lent");
        lanes.recall();
        assert!(lanes.repay(), "the spare holding it gives it up");
        place.forget();
        assert!(!lanes.repay(), "once");
        assert!(lanes.free.try_acquire().is_err());
    }
}
