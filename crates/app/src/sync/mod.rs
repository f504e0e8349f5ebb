//! The sync engine: lands a round of sync jobs of one portal in HubSpot. A lone event is a
//! round of one; a burst is a round of up to `batch_max` callers with the jobs queued behind
//! each. Every rule runs once, whatever the size:
//!
//! 1. **Group** each caller's jobs (in order) behind the first, which resolves and writes the
//!    contact for all of them. A later job that describes the caller differently (another
//!    email on the same number), or is about a call another job of the group is about, waits
//!    for the next round with every job after it, so the caller's order holds.
//! 2. **Resolve** ([`resolve`]): callers callbridge knows (the caller index, looked up once
//!    for the whole round) are read back by id (100 per `batch/read`, following merges; an id
//!    HubSpot no longer has is forgotten); strangers with an email are read by email (exact,
//!    no index lag), except a lone one known by email alone, whose contact is created
//!    directly (HubSpot's 409 names it if the email is taken); the rest are found by phone in
//!    bulk searches packed across every round in flight (on an idle finder, a caller's number
//!    is searched for alongside the read of their email, so a new caller with both lands a
//!    round trip sooner).
//!    Steps 3 and 4 run first for the callers settled without a search, while the searches
//!    run, then for those a search found (one contact per round across both). Before those
//!    land, their calls that arrived since the round began join them ([`RoundHost`]): a
//!    caller who calls again during a burst lands once, not in a round of their own after.
//! 3. **Plan** ([`callbridge_domain::plan::plan_caller`]): pure; per caller one contact write
//!    and per job its activity write, against what earlier runs recorded (the jobs' activities
//!    and the contacts' newest calls, each one look-up for the round: a store query per job
//!    took the database from acknowledgements while a burst drained).
//! 4. **Apply** ([`apply`]): contacts through `batch/update` and `batch/upsert`; calls and
//!    meetings through `batch/create` with inline associations, or v1 engagements where the
//!    token lacks the Calls API (chosen once, from the probe). A found contact's update goes
//!    out alongside its activities, which need only its id: a known caller lands in two
//!    sequential round trips (read; update and create), a new email-only caller in two
//!    (create; create). A create is never re-sent blindly: a job that ran before first looks
//!    up what its earlier attempt made.
//!
//! The engine records nothing itself: its [`RoundReport`] says, job by job, what landed (with
//! the activities and newest-call times to record) and what failed, and which jobs wait for a
//! following round. The worker records all of it.

mod apply;
mod resolve;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use callbridge_domain::plan::{self, ActivityKey, ActivityOp, ContactOp, Logged, PlannedEvent, Values};
use callbridge_domain::{Caller, DefaultRegion, Event, PortalId};
use callbridge_hubspot::{CrmObject, HubSpotApi, HubSpotError};
use callbridge_store::{Activity, ActivityRecord, Settlement, Store, StoreError};

pub use resolve::PhoneFinder;

/// Why a job failed, and whether trying again can help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
    /// The portal cannot take work until setup mends it (a refused token, a missing
    /// property): the job waits, and this is not an attempt.
    #[error("{0}")]
    Unready(String),
    /// HubSpot keeps failing and the portal's requests are paused (its circuit breaker is
    /// open): the job waits this long, for the next probe, and this is not an attempt.
    #[error("{0}")]
    Paused(String, std::time::Duration),
}

impl SyncError {
    /// What kind of failure, for logs: HubSpot's messages can echo property values (an
    /// email, a phone), so log lines carry the kind and the store keeps the message.
    pub fn kind(&self) -> &'static str {
        match self {
            SyncError::Transient(_) => "transient",
            SyncError::Permanent(_) => "permanent",
            SyncError::Unready(_) => "unready",
            SyncError::Paused(..) => "paused",
        }
    }
}

impl From<HubSpotError> for SyncError {
    fn from(e: HubSpotError) -> SyncError {
        let missing_property = matches!(&e, HubSpotError::Validation { properties, .. }
            if properties.iter().any(|p| p.code == "PROPERTY_DOESNT_EXIST"));
        match e {
            HubSpotError::Unauthorized { .. } | HubSpotError::RefreshRejected { .. } => {
                SyncError::Unready(crate::readiness::reason(&e))
            }
            HubSpotError::Paused { retry_in_ms } => {
                SyncError::Paused(e.to_string(), std::time::Duration::from_millis(retry_in_ms))
            }
            _ if missing_property => SyncError::Unready(format!("a callbridge property is missing in HubSpot: {e}")),
            _ if e.is_transient() => SyncError::Transient(e.to_string()),
            _ => SyncError::Permanent(e.to_string()),
        }
    }
}

impl From<StoreError> for SyncError {
    fn from(e: StoreError) -> SyncError {
        SyncError::Transient(e.to_string())
    }
}

/// A sync job as the engine takes it.
#[derive(Debug, Clone)]
pub struct SyncJob {
    pub id: i64,
    pub event: Event,
    /// The job ran before: its earlier attempt may have written to HubSpot.
    pub retrying: bool,
    /// The key the queue orders the caller's jobs by.
    pub caller_key: String,
}

/// The worker's side of a round: where the round takes the sync jobs queued behind its
/// callers' since it began (the worker claims them under the round's lease), and whom it
/// tells when only its phone searches are left to wait for.
#[async_trait::async_trait]
pub trait RoundHost: Send + Sync {
    /// Claims the sync jobs queued behind these callers' running ones, in order.
    async fn claim(&self, caller_keys: Vec<String>) -> Vec<SyncJob>;
    /// What the round could land without its searches has landed; it now waits for their
    /// answers (HubSpot's search limit sets when they come), and another round may run on its
    /// loop's behalf meanwhile. Called at most once a round.
    fn searching(&self) {}
}

/// What a round did, job by job.
#[derive(Debug, Default)]
pub struct RoundReport {
    /// What the jobs that landed wrote, and their ids (`done`), to record in one transaction.
    pub landed: Settlement,
    pub failed: Vec<(i64, SyncError)>,
    /// To run together in the next round (after this one is recorded).
    pub next: Vec<SyncJob>,
    /// To run one per round: a request rejected as a whole held them, and alone each shows
    /// whether it was the culprit.
    pub alone: Vec<SyncJob>,
    pub contacts_created: usize,
    pub activities_created: usize,
    /// Time spent finding contacts, writing them, writing activities (ms).
    pub phase_ms: [u64; 3],
}

/// Where a job stands within a round.
#[derive(Debug, Clone)]
enum State {
    /// Still on its way; at the end, landed.
    Open,
    Failed(SyncError),
    /// Waits for the next round.
    Next,
    /// Runs alone in a round of its own.
    Alone,
    /// Waits for a phone search while the round lands the callers settled without one.
    Searching,
    /// Landed before the round's searches were answered; at the end, landed.
    Landed,
}

/// A job within a round.
struct Work {
    job: SyncJob,
    /// The contact found, with its current values.
    found: Option<(u64, Values)>,
    contact_id: Option<u64>,
    logged: Option<Logged>,
    /// The planner's decisions: whether this call becomes the contact's newest, and what
    /// this job writes to its activity.
    newest: bool,
    activity: Option<ActivityOp>,
    state: State,
    /// For a leader (the first of a caller's jobs in the round), itself and the caller's later
    /// jobs (indices, in order); empty for the others.
    group: Vec<usize>,
    /// The index of this job's leader.
    leader_of: usize,
    /// For a leader: the caller as all of its jobs describe them.
    merged: Option<Caller>,
    /// For a leader: the contact write the planner made for the caller.
    contact: Option<ContactOp>,
    /// A create for this job's activity went out in this round.
    wrote: bool,
    /// For a leader known by email alone, alone in its round: its contact is created without
    /// reading first (HubSpot's 409 names the contact when the email is taken).
    create_directly: bool,
}

impl Work {
    fn new(job: SyncJob) -> Work {
        Work {
            job,
            found: None,
            contact_id: None,
            logged: None,
            newest: false,
            activity: None,
            state: State::Open,
            group: Vec::new(),
            leader_of: 0,
            merged: None,
            contact: None,
            wrote: false,
            create_directly: false,
        }
    }
    fn caller(&self) -> &Caller {
        self.merged.as_ref().unwrap_or_else(|| self.job.event.caller())
    }
    fn leader(&self) -> bool {
        !self.group.is_empty()
    }
    fn open(&self) -> bool {
        matches!(self.state, State::Open)
    }
    /// The open leader of its caller's group: it resolves and writes the contact for all.
    fn leads(&self) -> bool {
        self.leader() && self.open()
    }
    /// Open and without a contact yet: still to be found.
    fn unsettled(&self) -> bool {
        self.open() && self.found.is_none()
    }
    fn trace(&self) -> String {
        self.job.id.to_string()
    }
    fn key(&self) -> ActivityKey {
        ActivityKey::of(&self.job.event)
    }
    /// The record of the activity this job's event made or updated.
    fn record(&self, hubspot_id: u64, legacy: bool) -> ActivityRecord {
        let key = self.key();
        let (stage, occurred_at_ms) = match &self.job.event {
            Event::Call(c) => (c.stage as i64, c.occurred_at_ms),
            Event::Booking(b) => (0, b.meeting_at_ms.unwrap_or(b.received_at_ms)),
        };
        ActivityRecord {
            source: key.source.to_string(),
            key: key.key,
            kind: key.kind,
            activity: Activity {
                hubspot_id,
                contact_id: self.contact_id,
                via: if legacy { "v1" } else { "v3" }.into(),
                stage,
            },
            occurred_at_ms,
        }
    }
}

/// A contact's id and non-empty values.
pub(crate) fn values(o: CrmObject) -> Option<(u64, Values)> {
    let id = o.id_u64()?;
    Some((id, o.properties.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect()))
}

/// Lands sync jobs of one portal.
pub struct Engine {
    portal: PortalId,
    store: Arc<dyn Store>,
    hubspot: Arc<dyn HubSpotApi>,
    /// Where numbers typed without a country code are taken to be.
    region: DefaultRegion,
    /// Packs phone lookups of every round in flight into full searches.
    phones: Arc<PhoneFinder>,
    /// What a call sets beyond the caller's fields (the lead status mapping).
    rules: plan::PlanRules,
}

impl Engine {
    /// `searches_at_once`: how many searches stay in flight (HubSpot's searches per second
    /// is a good value).
    pub fn new(
        portal: PortalId,
        store: Arc<dyn Store>,
        hubspot: Arc<dyn HubSpotApi>,
        region: DefaultRegion,
        searches_at_once: usize,
        rules: plan::PlanRules,
    ) -> Engine {
        let phones = PhoneFinder::new(hubspot.clone(), searches_at_once);
        Engine { portal, store, hubspot, region, phones, rules }
    }

    pub fn portal(&self) -> &PortalId {
        &self.portal
    }

    pub fn rules(&self) -> &plan::PlanRules {
        &self.rules
    }

    /// Where numbers typed without a country code are taken to be.
    pub fn region(&self) -> DefaultRegion {
        self.region
    }

    /// Lands one round of jobs; see the module docs. An `Err` means the store failed: none of
    /// the round is known to have landed, and every job runs again (and looks up what it wrote).
    pub async fn run_round(&self, mut jobs: Vec<SyncJob>, host: &dyn RoundHost) -> Result<RoundReport, SyncError> {
        jobs.sort_by_key(|j| j.id);
        let mut works: Vec<Work> = jobs.into_iter().map(Work::new).collect();
        group_callers(&mut works);
        let mut report = RoundReport::default();
        let started = std::time::Instant::now();
        self.resolve_known(&mut works).await?;
        let searches = self.resolve_strangers(&mut works).await?;
        // Callers settled without a search land now, while the searches run: their writes
        // wait for no number they do not need, and the window slots they take free sooner.
        let waiting = searches.waiting();
        for &leader in &waiting {
            for i in works[leader].group.clone() {
                if works[i].open() {
                    works[i].state = State::Searching;
                }
            }
        }
        // One contact per round: the callers found by a search are planned against the same
        // targets as those landed before them.
        let mut targets = HashSet::new();
        let settled = async {
            let landed = if works.iter().any(Work::open) {
                self.land(&mut works, &mut targets, &mut report).await
            } else {
                Ok(vec![])
            };
            if !waiting.is_empty() {
                host.searching();
            }
            landed
        };
        let (settled, answers) = tokio::join!(settled, searches.answers());
        let mut records = settled?;
        for w in &mut works {
            w.state = match std::mem::replace(&mut w.state, State::Open) {
                State::Open => State::Landed,
                State::Searching => State::Open,
                other => other,
            };
        }
        self.take_searches(&mut works, answers);
        report.phase_ms[0] = started.elapsed().as_millis() as u64;
        if works.iter().any(Work::open) {
            let callers = callers_to_join(&works);
            if !callers.is_empty() {
                join_followers(&mut works, host.claim(callers).await);
            }
            records.extend(self.land(&mut works, &mut targets, &mut report).await?);
        }

        report.landed = Settlement { portal: self.portal.clone(), activities: records, ..Settlement::default() };
        for w in works {
            match w.state {
                State::Open | State::Landed => {
                    if let (Event::Call(c), true, Some(contact)) = (&w.job.event, w.newest, w.contact_id) {
                        report.landed.last_calls.push((contact, c.occurred_at_ms));
                    }
                    report.landed.done.push(w.job.id);
                }
                State::Failed(e) => report.failed.push((w.job.id, e)),
                // A write made for it may have reached HubSpot (its contact's update failed
                // after its activity went out): the next run looks for it before writing.
                State::Next => report.next.push(SyncJob { retrying: w.job.retrying || w.wrote, ..w.job }),
                State::Alone => report.alone.push(SyncJob { retrying: w.job.retrying || w.wrote, ..w.job }),
                // Every search is answered before the round ends; should one not be, it runs again.
                State::Searching => {
                    report.failed.push((w.job.id, SyncError::Transient("its phone search was not answered".into())))
                }
            }
        }
        Ok(report)
    }

    /// Plans and writes the open jobs (steps 3 and 4); returns the activity records to keep.
    async fn land(
        &self,
        works: &mut [Work],
        targets: &mut HashSet<String>,
        report: &mut RoundReport,
    ) -> Result<Vec<ActivityRecord>, SyncError> {
        self.plan(works, targets).await?;
        let clock = std::time::Instant::now();
        // Contacts found need only their update, and their activities only their id: both go
        // out at once. New contacts are made first, since their activities need the id HubSpot
        // gives them.
        let updates = Self::contact_updates(works);
        let (updated, written) = tokio::join!(self.send_contact_updates(&updates), async {
            let created = self.write_new_contacts(works).await?;
            let made_at = std::time::Instant::now();
            let activities = self.write_activities(works).await?;
            Ok::<_, SyncError>((created, made_at, activities))
        });
        let (created_contacts, made_at, (mut records, created)) = written?;
        self.take_contact_updates(works, updated).await?;
        records.extend(self.write_tasks(works).await);
        report.contacts_created += created_contacts;
        report.activities_created += created;
        report.phase_ms[1] += made_at.duration_since(clock).as_millis() as u64;
        report.phase_ms[2] += made_at.elapsed().as_millis() as u64;
        Ok(records)
    }

    /// What each caller's jobs make, from the planner: per caller one contact write (its
    /// jobs' wishes applied in order), per job its activity write. A caller whose contact
    /// another caller of the round also lands on waits for the next round.
    async fn plan(&self, works: &mut [Work], targets: &mut HashSet<String>) -> Result<(), SyncError> {
        let leaders = open_leaders(works);
        // What earlier runs recorded, for every job and contact of the round in two look-ups.
        let keys: Vec<ActivityKey> = leaders.iter().flat_map(|&l| &works[l].group).map(|&i| works[i].key()).collect();
        let keys: Vec<(&str, &str, &str)> = keys.iter().map(|k| (k.source, k.key.as_str(), k.kind)).collect();
        let logged = self.store.activities_by_key(&self.portal, &keys).await?;
        let contacts: Vec<u64> = leaders.iter().filter_map(|&l| works[l].found.as_ref().map(|(id, _)| *id)).collect();
        let last_calls = self.store.last_calls_at(&self.portal, &contacts).await?;
        for leader in leaders {
            let w = &works[leader];
            let target = match (&w.found, &w.caller().email, &w.caller().phone) {
                (Some((id, _)), _, _) => format!("id:{id}"),
                (None, Some(e), _) => format!("email:{e}"),
                (None, None, Some(p)) => format!("phone:{p}"),
                (None, None, None) => {
                    let e = SyncError::Permanent("the caller has neither an email nor a phone".into());
                    for i in w.group.clone() {
                        works[i].state = State::Failed(e.clone());
                    }
                    continue;
                }
            };
            let members = w.group.clone();
            if !targets.insert(target) {
                for i in members {
                    works[i].state = State::Next;
                }
                continue;
            }
            let found = works[leader].found.clone();
            let contact_id = found.as_ref().map(|(id, _)| *id);
            let last = contact_id.and_then(|id| last_calls.get(&id).copied());
            for &i in &members {
                let key = works[i].key();
                let logged = logged.get(&(key.source.to_string(), key.key, key.kind.to_string()));
                works[i].logged =
                    logged.map(|a| Logged { hubspot_id: a.hubspot_id, stage: a.stage, legacy: a.via == "v1" });
                works[i].contact_id = contact_id;
            }
            let events: Vec<PlannedEvent<'_>> = members
                .iter()
                .map(|&i| PlannedEvent { event: &works[i].job.event, logged: works[i].logged.as_ref() })
                .collect();
            let caller_plan = plan::plan_caller(found.as_ref().map(|(id, v)| (*id, v)), last, &events, &self.rules);
            for ((&i, activity), newest) in members.iter().zip(caller_plan.activities).zip(caller_plan.newest) {
                works[i].activity = activity;
                works[i].newest = newest;
            }
            works[leader].contact = caller_plan.contact;
        }
        Ok(())
    }
}

/// Where the open leaders are ([`Work::leads`]), in the round's order.
fn open_leaders(works: &[Work]) -> Vec<usize> {
    (0..works.len()).filter(|&i| works[i].leads()).collect()
}

/// Groups each caller's jobs (in id order) behind the first: the leader resolves and
/// writes the contact once for all. A later job describing the caller differently (another
/// email on the same number), or about a call another job of the group is about, waits for
/// the next round with every job after it, so the caller's order holds.
fn group_callers(works: &mut [Work]) {
    let mut leaders: HashMap<String, usize> = HashMap::new();
    let mut broken: HashSet<String> = HashSet::new();
    for i in 0..works.len() {
        let key = works[i].job.caller_key.clone();
        if broken.contains(&key) {
            works[i].state = State::Next;
            continue;
        }
        let Some(&leader) = leaders.get(&key) else {
            leaders.insert(key, i);
            works[i].leader_of = i;
            works[i].group = vec![i];
            works[i].merged = Some(works[i].caller().clone());
            continue;
        };
        // Two events about one call (its stages) make one activity: the later one updates
        // what the earlier one logged, in the next round.
        if !fits(works, leader, i) {
            broken.insert(key);
            works[i].state = State::Next;
            continue;
        }
        merge_into(works, leader, i);
    }
}

/// The callers still to land whose every job in the round is (a leader's key is its caller's
/// alone): their calls that arrived since may join them.
fn callers_to_join(works: &[Work]) -> Vec<String> {
    let mut blocked: HashSet<&str> = HashSet::new();
    for w in works.iter().filter(|w| !w.open()) {
        blocked.insert(&w.job.caller_key);
    }
    works
        .iter()
        .filter(|w| w.leads() && !blocked.contains(w.job.caller_key.as_str()))
        .map(|w| w.job.caller_key.clone())
        .collect()
}

/// Adds jobs taken behind the round's callers ([`callers_to_join`]) to their callers' groups,
/// in order. One that describes the caller differently waits for the next round with every job
/// of the caller's after it, as in [`group_callers`] — and so does one that brings an email the
/// caller was not found by (it would have been looked up by it).
fn join_followers(works: &mut Vec<Work>, mut jobs: Vec<SyncJob>) {
    jobs.sort_by_key(|j| j.id);
    let leaders: HashMap<String, usize> =
        works.iter().enumerate().filter(|(_, w)| w.leads()).map(|(i, w)| (w.job.caller_key.clone(), i)).collect();
    let mut broken: HashSet<String> = HashSet::new();
    for job in jobs {
        let i = works.len();
        let key = job.caller_key.clone();
        works.push(Work::new(job));
        let leader = match leaders.get(&key) {
            Some(&leader) if !broken.contains(&key) => leader,
            _ => {
                works[i].state = State::Next;
                continue;
            }
        };
        let found_by_email = works[leader].merged.as_ref().is_some_and(|m| m.email.is_some());
        if (works[i].caller().email.is_some() && !found_by_email) || !fits(works, leader, i) {
            broken.insert(key);
            works[i].state = State::Next;
            continue;
        }
        merge_into(works, leader, i);
    }
}

/// Whether job `i` describes its caller as the group of `leader` does (the same phone, no other
/// email) and is about another call than the group's.
fn fits(works: &[Work], leader: usize, i: usize) -> bool {
    let merged = works[leader].merged.as_ref().expect("leaders have a caller");
    let own = works[i].caller();
    let same_activity = works[leader].group.iter().any(|&j| works[j].key() == works[i].key());
    !same_activity
        && own.phone == merged.phone
        && match (&own.email, &merged.email) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
}

/// Adds job `i` to the group of `leader`, filling what the caller's jobs so far left out.
fn merge_into(works: &mut [Work], leader: usize, i: usize) {
    let own = works[i].caller().clone();
    let m = works[leader].merged.as_mut().expect("leaders have a caller");
    m.email = m.email.take().or(own.email);
    m.first_name = m.first_name.take().or(own.first_name);
    m.last_name = m.last_name.take().or(own.last_name);
    works[leader].group.push(i);
    works[i].leader_of = leader;
}

/// In each caller's group, the jobs after one that cannot land in this round follow it: to
/// the next round with it, or else to a retry after it (the queue runs a caller's jobs in order).
fn hold_back_followers(works: &mut [Work]) {
    for leader in 0..works.len() {
        if !works[leader].leader() {
            continue;
        }
        let mut blocked: Option<State> = None;
        for i in works[leader].group.clone() {
            if let Some(first) = &blocked
                && works[i].open()
            {
                works[i].state = follow(first);
            }
            if blocked.is_none() && !works[i].open() {
                blocked = Some(works[i].state.clone());
            }
        }
    }
}

/// Where a job goes behind an earlier job of its caller that is in `state`.
fn follow(state: &State) -> State {
    match state {
        State::Open | State::Landed => State::Open,
        State::Next => State::Next,
        State::Searching => State::Searching,
        // Paused is not an attempt for the first, nor for those behind it.
        State::Failed(paused @ SyncError::Paused(..)) => State::Failed(paused.clone()),
        State::Failed(_) | State::Alone => State::Failed(SyncError::Transient(
            "an earlier event of the same caller has not landed yet; this one follows it".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbridge_domain::{BookingEvent, Email};

    pub(super) fn work(id: i64, email: &str) -> Work {
        let caller = Caller { email: Some(Email::parse(email).unwrap()), ..Caller::default() };
        let event = Event::Booking(BookingEvent {
            caller,
            meeting_type: None,
            meeting_at_ms: None,
            meeting_at: None,
            lead_source: None,
            lifecycle_stage: None,
            received_at_ms: 0,
            booking_key: format!("b{id}"),
            duration_ms: None,
            notes: None,
        });
        Work::new(SyncJob { id, event, retrying: false, caller_key: "k".into() })
    }

    #[test]
    fn behind_a_callers_event_that_cannot_land_now_the_later_ones_wait() {
        let mut works = vec![work(1, "a@example.com"), work(2, "a@example.com"), work(3, "a@example.com")];
        group_callers(&mut works);
        works[1].state = State::Failed(SyncError::Transient("lookup failed".into()));
        hold_back_followers(&mut works);
        assert!(works[0].open());
        assert!(matches!(works[2].state, State::Failed(SyncError::Transient(_))));
    }

    fn phone_call(id: i64, caller_key: &str, email: Option<&str>) -> SyncJob {
        let mut job = work(id, email.unwrap_or("unused@example.com")).job;
        if let Event::Booking(b) = &mut job.event {
            b.caller.email = email.map(|e| Email::parse(e).unwrap());
            b.caller.phone = callbridge_domain::PhoneE164::parse("+14155550123", DefaultRegion::default()).ok();
        }
        SyncJob { caller_key: caller_key.into(), ..job }
    }

    #[test]
    fn calls_that_arrive_mid_round_join_their_caller_unless_they_bring_an_email_it_was_not_found_by() {
        let mut works: Vec<Work> = [phone_call(1, "k", None), phone_call(2, "other", None)].map(Work::new).into();
        group_callers(&mut works);
        works[1].state = State::Landed;
        assert_eq!(callers_to_join(&works), ["k"], "a caller landed already takes nothing more");
        join_followers(
            &mut works,
            vec![phone_call(5, "k", Some("new@example.com")), phone_call(3, "k", None), phone_call(6, "k", None)],
        );
        // In id order: 3 joins; 5 names an email the caller was not looked up by, so it and
        // 6 behind it wait for the next round.
        assert_eq!(works[0].group, [0, 2]);
        assert_eq!(works.iter().map(|w| w.job.id).collect::<Vec<_>>(), [1, 2, 3, 5, 6]);
        assert!(works[2].open() && works[2].leader_of == 0);
        assert!(matches!(works[3].state, State::Next) && matches!(works[4].state, State::Next));
        // A job of a caller the round does not hold a group for waits too.
        join_followers(&mut works, vec![phone_call(7, "stranger", None)]);
        assert!(matches!(works[5].state, State::Next));
    }

    #[test]
    fn a_callers_jobs_group_behind_the_first_until_one_names_another_email() {
        let mut works = vec![
            work(1, "a@example.com"),
            work(2, "a@example.com"),
            work(3, "z@example.com"),
            work(4, "a@example.com"),
        ];
        group_callers(&mut works);
        assert!(works[0].leader() && works[0].group == [0, 1]);
        assert!(matches!(works[2].state, State::Next) && matches!(works[3].state, State::Next), "order holds");
    }
}
