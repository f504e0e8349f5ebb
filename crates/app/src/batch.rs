//! The batch path. When work piles up, a worker claims many jobs at once (each the oldest
//! of a different caller, so per-caller order holds) and lands them together, each step
//! one request per 100 records instead of one per event:
//!
//! 1. **Resolve.** Callers callbridge knows come from the caller index and are read back by
//!    id (`batch/read`, which follows merges; an id HubSpot no longer has is forgotten).
//!    Strangers with an email are read by email (`batch/read`, `idProperty=email`, exact).
//!    Strangers still unresolved are searched for in bulk: one search carries 200 callers
//!    (`IN` over their national numbers on `phone` and on `mobilephone`, four filter groups
//!    of 100 values) and the answers are matched back to callers in code, oldest contact
//!    first — the same choice the single path makes.
//! 2. **Contacts.** Known contacts get `batch/update` with only what the planner changes
//!    (never blanking, lifecycle only forward). New callers are upserted: by email, or by
//!    the unique `callbridge_phone_e164` for phone-only callers, so a retried upsert
//!    finds what the first attempt made instead of making it twice.
//! 3. **Activities.** Calls and meetings are created with `batch/create` and inline
//!    associations; a later stage of a logged call is a `batch/update`. A batch create is
//!    never re-sent blindly: a job that runs again after a failure first looks up what its
//!    earlier attempt left (the contact's associations, read in one request for many
//!    contacts, then the activities' external ids).
//! 4. **Record.** Activities, newest-call times and job completion go to the store in one
//!    transaction.
//!
//! Partial failures are reconciled per input by `objectWriteTraceId` (the job id): one bad
//! input fails its job alone. A request that fails as a whole fails its jobs for a retry
//! when the cause is transient; when HubSpot rejects it (a 4xx), its jobs are handed to the
//! single path, one at a time, which isolates the culprit. Two jobs of one batch that land
//! on the same contact (an email-only caller and a phone caller with that email) cannot
//! share a batch write: the later one runs on the single path after the batch. Without the
//! Calls API (legacy engagements, which have no batch endpoint) calls take the single path.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};

use callbridge_domain::plan::{
    self, CONTACT_READ, ContactWish, PROP_MEETING_EVENT_ID, PROP_PHONE_E164, call_identity, is_older_than_last_call,
};
use callbridge_domain::{Caller, Event, PhoneE164};
use callbridge_hubspot::{
    BatchItemError, BatchOutcome, CrmObject, Filter, HubSpotApi, HubSpotError, MAX_IN_VALUES, MAX_SEARCH_PAGE,
    ObjectInput, ObjectType, Search, UpdateInput, UpsertInput,
};
use callbridge_store::{Activity, ActivityRecord, Settlement};
use futures_util::future::join_all;
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::sync::{SyncError, Syncer, Values, values};

/// An activity to create: the job (by index) and the activity's properties.
type Planned = (usize, Map<String, Value>);

/// HubSpot's batch endpoints take at most this many inputs.
const BATCH_MAX: usize = 100;

/// A claimed job for the batch path.
pub struct BatchJob {
    pub id: i64,
    pub event: Event,
    /// The job ran before: its earlier attempt may have written to HubSpot.
    pub retrying: bool,
    /// The key the queue orders the caller's jobs by.
    pub caller_key: String,
}

/// What became of a batch, job by job.
#[derive(Debug, Default)]
pub struct BatchReport {
    /// Landed and recorded as done.
    pub landed: Vec<i64>,
    pub failed: Vec<(i64, SyncError)>,
    /// To run one at a time on the single path.
    pub single: Vec<i64>,
    pub contacts_created: usize,
    pub activities_created: usize,
    /// Time spent finding contacts, writing them, writing activities, recording (ms).
    pub phase_ms: [u64; 4],
}

enum State {
    /// Still on its way; at the end, landed.
    Open,
    Failed(SyncError),
    Single,
}

struct Work {
    id: i64,
    event: Event,
    retrying: bool,
    /// The contact found, with its current values.
    found: Option<(u64, Values)>,
    contact_id: Option<u64>,
    /// For calls: whether this is the newest call synced to the contact.
    newest: bool,
    logged: Option<Activity>,
    state: State,
    /// For a leader — the first of a caller's jobs in the batch, which finds and writes the
    /// contact for all of them — itself and the caller's later jobs (indices, in order);
    /// empty for the others.
    group: Vec<usize>,
    /// The index of this job's leader.
    leader_of: usize,
    /// For a leader: the caller as all of its jobs describe them.
    merged: Option<Caller>,
    /// For a leader: the contact write (changes, or a new contact's properties).
    contact_write: Option<Map<String, Value>>,
}

impl Work {
    fn caller(&self) -> &Caller {
        if let Some(c) = &self.merged {
            return c;
        }
        match &self.event {
            Event::Call(c) => &c.caller,
            Event::Booking(b) => &b.caller,
        }
    }
    fn leader(&self) -> bool {
        !self.group.is_empty()
    }
    fn members(&self) -> Vec<usize> {
        self.group.clone()
    }
    fn open(&self) -> bool {
        matches!(self.state, State::Open)
    }
    fn trace(&self) -> String {
        self.id.to_string()
    }
}

/// What a failed request means for its jobs: transient → retry later; rejected → the
/// single path sorts out which input was at fault.
fn fail_request(works: &mut [Work], indices: &[usize], e: &HubSpotError) {
    for &i in indices {
        if works[i].open() {
            works[i].state = if e.is_transient() { State::Failed(e.clone().into()) } else { State::Single };
        }
    }
}

fn fail_item(work: &mut Work, e: &BatchItemError) {
    let message = format!("HubSpot rejected the input: {} ({})", e.category, e.message);
    work.state = State::Failed(match e.category.as_str() {
        "VALIDATION_ERROR" | "INVALID_EMAIL" | "PROPERTY_DOESNT_EXIST" => SyncError::Permanent(message),
        _ => SyncError::Transient(message),
    });
}

/// Matches a batch write's outcome back to its jobs by trace id, or by the key the input
/// was written under; returns (work index, record) for each job that landed. Jobs neither
/// answered nor named by an error fail for a retry.
fn reconcile(
    works: &mut [Work],
    indices: &[usize],
    out: BatchOutcome,
    key_of: impl Fn(&Work) -> Option<String>,
    key_prop: Option<&str>,
) -> Vec<(usize, CrmObject)> {
    let by_trace: HashMap<String, usize> = indices.iter().map(|&i| (works[i].trace(), i)).collect();
    let by_key: HashMap<String, usize> = indices.iter().filter_map(|&i| key_of(&works[i]).map(|k| (k, i))).collect();
    let mut landed = Vec::new();
    for r in out.results {
        let hit = r
            .object_write_trace_id
            .as_ref()
            .and_then(|t| by_trace.get(t))
            .or_else(|| key_prop.and_then(|p| r.prop(p)).and_then(|k| by_key.get(&k.to_lowercase())));
        if let Some(&i) = hit {
            landed.push((i, r));
        }
    }
    for e in &out.errors {
        for t in &e.trace_ids {
            if let Some(&i) = by_trace.get(t) {
                fail_item(&mut works[i], e);
            }
        }
    }
    let answered: HashSet<usize> = landed.iter().map(|(i, _)| *i).collect();
    for &i in indices {
        if works[i].open() && !answered.contains(&i) {
            works[i].state =
                State::Failed(SyncError::Transient("HubSpot's batch answer did not account for it".into()));
        }
    }
    landed
}

/// Runs `f` over `items` in chunks of `size`, all chunks at once.
async fn chunked<'a, T, R, F, Fut>(items: &'a [T], size: usize, f: F) -> Vec<(&'a [T], R)>
where
    F: Fn(&'a [T]) -> Fut,
    Fut: Future<Output = R>,
{
    chunked_slices(items.chunks(size).collect(), f).await
}

/// Phone lookups from every batch in flight, packed into full searches: each search carries
/// up to 200 numbers, whoever asked for them, and at most `max_in_flight` searches run at
/// once (the client's limiter paces them to HubSpot's rate). A lone lookup on an idle
/// finder is searched at once; while searches run, a part-filled one waits for them.
pub struct PhoneFinder {
    hubspot: Arc<dyn HubSpotApi>,
    max_in_flight: usize,
    inner: Mutex<FinderState>,
}

#[derive(Default)]
struct FinderState {
    queue: VecDeque<(String, u64)>,
    waiters: HashMap<u64, Waiter>,
    in_flight: usize,
    next: u64,
}

struct Waiter {
    /// Numbers not yet searched for.
    left: usize,
    found: Vec<CrmObject>,
    tx: oneshot::Sender<Result<Vec<CrmObject>, HubSpotError>>,
}

impl PhoneFinder {
    pub fn new(hubspot: Arc<dyn HubSpotApi>, max_in_flight: usize) -> Arc<PhoneFinder> {
        Arc::new(PhoneFinder { hubspot, max_in_flight: max_in_flight.max(1), inner: Mutex::default() })
    }

    /// Every contact whose `phone` or `mobilephone` holds one of these national numbers
    /// (and maybe others: callers match the answer in code), oldest first per search.
    pub async fn find(self: &Arc<Self>, nationals: Vec<String>) -> Result<Vec<CrmObject>, HubSpotError> {
        if nationals.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut s = self.lock();
            let id = s.next;
            s.next += 1;
            s.waiters.insert(id, Waiter { left: nationals.len(), found: Vec::new(), tx });
            s.queue.extend(nationals.into_iter().map(|n| (n, id)));
        }
        self.pump();
        rx.await.unwrap_or_else(|_| Err(HubSpotError::Transport { attempts: 0, message: "search abandoned".into() }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FinderState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts searches while numbers wait and fewer than `max_in_flight` run.
    fn pump(self: &Arc<Self>) {
        loop {
            let taken: Vec<(String, u64)> = {
                let mut s = self.lock();
                // A part-filled search goes only when none runs: while one does, more numbers
                // gather for a full one (a search costs the same at 1 number or 200).
                let full = s.queue.len() >= 2 * MAX_IN_VALUES;
                if s.in_flight >= self.max_in_flight || s.queue.is_empty() || (!full && s.in_flight > 0) {
                    return;
                }
                s.in_flight += 1;
                let n = s.queue.len().min(2 * MAX_IN_VALUES);
                s.queue.drain(..n).collect()
            };
            let me = self.clone();
            tokio::spawn(async move {
                let numbers: Vec<String> = taken.iter().map(|(n, _)| n.clone()).collect();
                let result = search_phones(me.hubspot.as_ref(), &numbers).await;
                me.deliver(&taken, result);
                me.lock().in_flight -= 1;
                me.pump();
            });
        }
    }

    fn deliver(&self, taken: &[(String, u64)], result: Result<Vec<CrmObject>, HubSpotError>) {
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for (_, id) in taken {
            *counts.entry(*id).or_default() += 1;
        }
        let mut s = self.lock();
        for (id, n) in counts {
            let Some(mut w) = s.waiters.remove(&id) else { continue };
            match &result {
                Err(e) => {
                    let _ = w.tx.send(Err(e.clone()));
                    // Its other numbers are still queued: take them out.
                    s.queue.retain(|(_, q)| *q != id);
                }
                Ok(contacts) => {
                    w.left -= n;
                    w.found.extend(contacts.iter().cloned());
                    if w.left == 0 {
                        let _ = w.tx.send(Ok(w.found));
                    } else {
                        s.waiters.insert(id, w);
                    }
                }
            }
        }
    }
}

/// Every contact whose `phone` or `mobilephone` has one of these national numbers (at most
/// 200: two `IN` lists of 100 on each property), oldest first, all pages.
async fn search_phones(hubspot: &dyn HubSpotApi, nationals: &[String]) -> Result<Vec<CrmObject>, HubSpotError> {
    let mut search = Search::new();
    for half in nationals.chunks(MAX_IN_VALUES) {
        search = search
            .group(vec![Filter::one_of("phone", half.to_vec())])
            .group(vec![Filter::one_of("mobilephone", half.to_vec())]);
    }
    let search = search.properties(&CONTACT_READ).sort("createdate", false).limit(MAX_SEARCH_PAGE);
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = hubspot.search(ObjectType::Contacts, &search.clone().after(after)).await?;
        out.extend(page.results);
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(out),
        }
    }
}

/// National numbers to search for and the jobs waiting on each.
type PhoneQuery = HashMap<String, Vec<usize>>;

/// Open, unresolved jobs with a phone that `pick` selects, grouped by national number.
fn phones_to_find(works: &[Work], pick: impl Fn(&Work) -> bool) -> PhoneQuery {
    let mut by_national: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, w) in works.iter().enumerate().filter(|(_, w)| w.leader()) {
        if let (true, None, Some(p), true) = (w.open(), &w.found, &w.caller().phone, pick(w)) {
            by_national.entry(p.national().to_string()).or_default().push(i);
        }
    }
    by_national
}

/// Groups each caller's jobs (in id order) behind the first: the leader resolves and
/// writes the contact once for all. A later job describing the caller differently (another
/// email on the same number), or about a call another job of the group is about, leaves
/// the batch with every job after it, for the single path, so the caller's order holds.
fn group_callers(works: &mut [Work], keys: &[String]) {
    let mut leaders: HashMap<&str, usize> = HashMap::new();
    let mut broken: HashSet<&str> = HashSet::new();
    for i in 0..works.len() {
        let key = keys[i].as_str();
        if broken.contains(key) {
            works[i].state = State::Single;
            continue;
        }
        let Some(&leader) = leaders.get(key) else {
            leaders.insert(key, i);
            works[i].leader_of = i;
            works[i].group = vec![i];
            works[i].merged = Some(works[i].caller().clone());
            continue;
        };
        let merged = works[leader].merged.clone().unwrap_or_default();
        let own = works[i].caller().clone();
        // Two events about one call (its stages) make one activity: the later one updates
        // what the earlier one logged, which the single path does after the batch.
        let same_activity = works[leader].group.iter().any(|&j| external_key(&works[j]) == external_key(&works[i]));
        let fits = !same_activity
            && own.phone == merged.phone
            && match (&own.email, &merged.email) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
        if !fits {
            broken.insert(key);
            works[i].state = State::Single;
            continue;
        }
        let m = works[leader].merged.as_mut().expect("leaders have a caller");
        m.email = m.email.take().or(own.email);
        m.first_name = m.first_name.take().or(own.first_name);
        m.last_name = m.last_name.take().or(own.last_name);
        works[leader].group.push(i);
        works[i].leader_of = leader;
    }
}

/// In each caller's group, the jobs after one that failed or left the batch fail too, to be
/// retried after it (the queue runs a caller's jobs in order).
fn hold_back_followers(works: &mut [Work]) {
    for leader in 0..works.len() {
        if !works[leader].leader() {
            continue;
        }
        let mut blocked = false;
        for i in works[leader].members() {
            if blocked && works[i].open() {
                works[i].state = State::Failed(SyncError::Transient(
                    "an earlier event of the same caller has not landed yet; this one follows it".into(),
                ));
            }
            blocked |= !works[i].open();
        }
    }
}

/// Runs `f` over each of `chunks`, all at once.
async fn chunked_slices<'a, T, R, F, Fut>(chunks: Vec<&'a [T]>, f: F) -> Vec<(&'a [T], R)>
where
    F: Fn(&'a [T]) -> Fut,
    Fut: Future<Output = R>,
{
    let results = join_all(chunks.iter().map(|c| f(c))).await;
    chunks.into_iter().zip(results).collect()
}

/// Digits of a stored phone value.
fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

impl Syncer {
    /// Lands a batch of jobs, grouped by caller; see the module docs.
    pub async fn run_batch(&self, mut jobs: Vec<BatchJob>) -> Result<BatchReport, SyncError> {
        jobs.sort_by_key(|j| j.id);
        let keys: Vec<String> = jobs.iter().map(|j| j.caller_key.clone()).collect();
        let mut works: Vec<Work> = jobs
            .into_iter()
            .map(|j| Work {
                id: j.id,
                event: j.event,
                retrying: j.retrying,
                found: None,
                contact_id: None,
                newest: false,
                logged: None,
                state: State::Open,
                group: Vec::new(),
                leader_of: 0,
                merged: None,
                contact_write: None,
            })
            .collect();
        group_callers(&mut works, &keys);
        let mut report = BatchReport::default();
        let mut clock = std::time::Instant::now();
        let mut lap = |phase: usize, report: &mut BatchReport| {
            report.phase_ms[phase] = clock.elapsed().as_millis() as u64;
            clock = std::time::Instant::now();
        };
        self.resolve_known(&mut works).await?;
        self.resolve_strangers(&mut works).await?;
        self.plan(&mut works).await?;
        lap(0, &mut report);
        report.contacts_created = self.write_contacts(&mut works).await?;
        lap(1, &mut report);
        let (records, created) = self.write_activities(&mut works).await?;
        report.activities_created = created;
        lap(2, &mut report);

        let mut settlement = Settlement { activities: records, ..Settlement::default() };
        for w in &mut works {
            match std::mem::replace(&mut w.state, State::Open) {
                State::Open => {
                    if let (Event::Call(c), true, Some(contact)) = (&w.event, w.newest, w.contact_id) {
                        settlement.last_calls.push((contact, c.occurred_at_ms));
                    }
                    settlement.done.push(w.id);
                    report.landed.push(w.id);
                }
                State::Failed(e) => report.failed.push((w.id, e)),
                State::Single => report.single.push(w.id),
            }
        }
        self.store.settle(&settlement).await?;
        lap(3, &mut report);
        Ok(report)
    }

    /// Callers the index knows: read their contacts back by id, 100 per request.
    async fn resolve_known(&self, works: &mut [Work]) -> Result<(), SyncError> {
        let mut by_id: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, w) in works.iter().enumerate().filter(|(_, w)| w.leader() && w.open()) {
            if let Some(id) = self.store.known_contact(&w.caller().keys()).await? {
                by_id.entry(id).or_default().push(i);
            }
        }
        let ids: Vec<u64> = by_id.keys().copied().collect();
        let read: Vec<&str> = CONTACT_READ.iter().copied().chain(["hs_merged_object_ids"]).collect();
        let answers = chunked(&ids, BATCH_MAX, |chunk| {
            let keys: Vec<String> = chunk.iter().map(u64::to_string).collect();
            let read = &read;
            async move { self.hubspot.batch_read(ObjectType::Contacts, &keys, None, read).await }
        })
        .await;
        let mut forgotten = Vec::new();
        for (chunk, answer) in answers {
            let out = match answer {
                Ok(out) => out,
                Err(e) => {
                    let indices: Vec<usize> = chunk.iter().flat_map(|id| by_id[id].clone()).collect();
                    fail_request(works, &indices, &e);
                    continue;
                }
            };
            let mut seen = HashSet::new();
            for r in out.results {
                let Some(id) = r.id_u64() else { continue };
                // A merged-away id answers with the survivor, which lists it.
                let mut asked: Vec<u64> = vec![id];
                asked.extend(
                    r.prop("hs_merged_object_ids")
                        .unwrap_or("")
                        .split(';')
                        .filter_map(|s| s.trim().parse::<u64>().ok()),
                );
                let found = values(r);
                for a in asked.into_iter().filter(|a| by_id.contains_key(a)) {
                    seen.insert(a);
                    for &i in &by_id[&a] {
                        works[i].found = found.clone();
                    }
                }
            }
            // Gone from HubSpot (deleted, or merged past what the answer says): forget it,
            // and the caller is resolved afresh below.
            forgotten.extend(chunk.iter().filter(|id| !seen.contains(id)).copied());
        }
        for id in forgotten {
            self.store.forget_contact(id).await?;
        }
        Ok(())
    }

    /// Callers the index does not know. Those with an email are read by email, 100 per
    /// request (exact, no index lag), while phone-only callers are searched for; then
    /// callers whose email HubSpot does not have are searched for by phone too, as the
    /// single path does.
    async fn resolve_strangers(&self, works: &mut [Work]) -> Result<(), SyncError> {
        let mut by_email: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, w) in works.iter().enumerate().filter(|(_, w)| w.leader()) {
            if let (true, None, Some(e)) = (w.open(), &w.found, &w.caller().email) {
                by_email.entry(e.as_str().to_string()).or_default().push(i);
            }
        }
        let phone_only = phones_to_find(works, |w| w.caller().email.is_none());
        let emails: Vec<String> = by_email.keys().cloned().collect();
        let read: Vec<&str> = CONTACT_READ.iter().copied().chain(["hs_additional_emails"]).collect();
        let (by_email_answers, phone_answers) = tokio::join!(
            chunked(&emails, BATCH_MAX, |chunk| {
                let read = &read;
                async move { self.hubspot.batch_read(ObjectType::Contacts, chunk, Some("email"), read).await }
            }),
            self.phones.find(phone_only.keys().cloned().collect()),
        );
        for (chunk, answer) in by_email_answers {
            match answer {
                Ok(out) => {
                    for r in out.results {
                        // The answer names the contact, not the input: match on its emails.
                        let mut names: Vec<String> =
                            r.prop("email").map(|e| vec![e.to_lowercase()]).unwrap_or_default();
                        names.extend(
                            r.prop("hs_additional_emails").unwrap_or("").split(';').map(|e| e.trim().to_lowercase()),
                        );
                        let found = values(r);
                        for n in names {
                            for &i in by_email.get(&n).into_iter().flatten() {
                                works[i].found = found.clone();
                            }
                        }
                    }
                }
                Err(e) => {
                    let indices: Vec<usize> = chunk.iter().flat_map(|e| by_email[e].clone()).collect();
                    fail_request(works, &indices, &e);
                }
            }
        }
        self.take_phone_answers(works, &phone_only, phone_answers);
        let rest = phones_to_find(works, |w| w.caller().email.is_some());
        let answer = self.phones.find(rest.keys().cloned().collect()).await;
        self.take_phone_answers(works, &rest, answer);
        Ok(())
    }

    /// Matches what the phone finder answered back to callers: the oldest contact
    /// holding the number.
    fn take_phone_answers(&self, works: &mut [Work], query: &PhoneQuery, answer: Result<Vec<CrmObject>, HubSpotError>) {
        let indices: Vec<usize> = query.values().flatten().copied().collect();
        match answer {
            Ok(mut contacts) => {
                // Answers from several searches: oldest first across them.
                contacts.sort_by_key(|c| (c.created_at.clone(), c.id_u64().unwrap_or(u64::MAX)));
                for i in indices {
                    let Some(phone) = works[i].caller().phone.clone() else { continue };
                    if let Some(c) = contacts.iter().find(|c| self.holds(c, &phone)) {
                        works[i].found = values(c.clone());
                    }
                }
            }
            Err(e) => fail_request(works, &indices, &e),
        }
    }

    /// Whether a contact holds this number in any of the places callbridge looks, in any
    /// format it was typed in.
    fn holds(&self, contact: &CrmObject, phone: &PhoneE164) -> bool {
        ["phone", "mobilephone", PROP_PHONE_E164].iter().filter_map(|p| contact.prop(p)).any(
            |v| match PhoneE164::parse(v, self.region) {
                Ok(p) => &p == phone,
                Err(_) => digits(v).ends_with(phone.national()),
            },
        )
    }

    /// What each caller's jobs want written: per job, whether its call is the newest and
    /// what it wants on the contact; per caller, those wishes applied in order into one
    /// contact write. A caller whose contact another caller of the batch also lands on
    /// leaves the batch for the single path.
    async fn plan(&self, works: &mut [Work]) -> Result<(), SyncError> {
        let mut targets = HashSet::new();
        for leader in 0..works.len() {
            if !works[leader].leader() || !works[leader].open() {
                continue;
            }
            let w = &works[leader];
            let target = match (&w.found, &w.caller().email, &w.caller().phone) {
                (Some((id, _)), _, _) => format!("id:{id}"),
                (None, Some(e), _) => format!("email:{e}"),
                (None, None, Some(p)) => format!("phone:{p}"),
                (None, None, None) => {
                    let e = SyncError::Permanent("the caller has neither an email nor a phone".into());
                    for i in w.members() {
                        works[i].state = State::Failed(e.clone());
                    }
                    continue;
                }
            };
            if !targets.insert(target) {
                for i in w.members() {
                    works[i].state = State::Single;
                }
                continue;
            }
            let found = w.found.clone();
            let contact_id = found.as_ref().map(|(id, _)| *id);
            let mut last = match contact_id {
                Some(id) => self.store.last_call_at(id).await?,
                None => None,
            };
            let mut current: Values = found.as_ref().map(|(_, v)| v.clone()).unwrap_or_default();
            let mut write = Map::new();
            for i in w.members() {
                let w = &mut works[i];
                w.contact_id = contact_id;
                let wish = match &w.event {
                    Event::Call(c) => {
                        w.logged = self.store.activity(c.source.as_str(), &c.call_id, "call").await?;
                        let superseded = w.logged.as_ref().is_some_and(|a| a.stage > c.stage as i64);
                        w.newest = !superseded && !is_older_than_last_call(c.occurred_at_ms, last);
                        if w.newest {
                            last = Some(last.map_or(c.occurred_at_ms, |l| l.max(c.occurred_at_ms)));
                        }
                        ContactWish::for_call(c, w.newest)
                    }
                    Event::Booking(b) => {
                        w.logged = self.store.activity("generic", &b.booking_key, "meeting").await?;
                        ContactWish::for_booking(b)
                    }
                };
                // Later jobs apply on top of what earlier ones wrote, by the same rules.
                let changes = if found.is_none() && write.is_empty() {
                    plan::new_contact(&wish)
                } else {
                    plan::contact_update(&current, &wish)
                };
                for (k, v) in changes {
                    current.insert(k.clone(), v.as_str().map(String::from).unwrap_or_else(|| v.to_string()));
                    write.insert(k, v);
                }
            }
            works[leader].contact_write = Some(write);
        }
        Ok(())
    }

    /// Updates known contacts and upserts new ones; returns how many were created.
    async fn write_contacts(&self, works: &mut [Work]) -> Result<usize, SyncError> {
        let mut updates = Vec::new();
        let (mut by_email, mut by_phone) = (Vec::new(), Vec::new());
        for (i, w) in works.iter().enumerate().filter(|(_, w)| w.open() && w.leader()) {
            let write = w.contact_write.clone().unwrap_or_default();
            match (&w.found, &w.caller().email) {
                (Some((id, _)), _) => {
                    if !write.is_empty() {
                        updates.push((i, UpdateInput { id: *id, properties: write, trace_id: Some(w.trace()) }));
                    }
                }
                (None, Some(_)) => by_email.push(i),
                (None, None) => by_phone.push(i),
            }
        }
        let upsert = |i: usize, property: &str, key: String| UpsertInput {
            id: key,
            id_property: property.to_string(),
            properties: works[i].contact_write.clone().unwrap_or_default(),
            trace_id: Some(works[i].trace()),
        };
        let email_key = |w: &Work| w.caller().email.as_ref().map(|e| e.as_str().to_string());
        let phone_key = |w: &Work| w.caller().phone.as_ref().map(|p| p.as_str().to_lowercase());
        let email_inputs: Vec<(usize, UpsertInput)> =
            by_email.iter().map(|&i| (i, upsert(i, "email", email_key(&works[i]).unwrap_or_default()))).collect();
        let phone_inputs: Vec<(usize, UpsertInput)> = by_phone
            .iter()
            .map(|&i| (i, upsert(i, PROP_PHONE_E164, phone_key(&works[i]).unwrap_or_default())))
            .collect();

        let (updated, by_email_out, by_phone_out) = tokio::join!(
            chunked(&updates, BATCH_MAX, |c| async move {
                let inputs: Vec<UpdateInput> = c.iter().map(|(_, u)| u.clone()).collect();
                self.hubspot.batch_update(ObjectType::Contacts, &inputs).await
            }),
            chunked(&email_inputs, BATCH_MAX, |c| async move {
                let inputs: Vec<UpsertInput> = c.iter().map(|(_, u)| u.clone()).collect();
                self.hubspot.batch_upsert(ObjectType::Contacts, &inputs).await
            }),
            chunked(&phone_inputs, BATCH_MAX, |c| async move {
                let inputs: Vec<UpsertInput> = c.iter().map(|(_, u)| u.clone()).collect();
                self.hubspot.batch_upsert(ObjectType::Contacts, &inputs).await
            }),
        );
        let mut gone = Vec::new();
        for (chunk, answer) in updated {
            let indices: Vec<usize> = chunk.iter().map(|(i, _)| *i).collect();
            match answer {
                Ok(out) => {
                    for e in out.errors.iter().filter(|e| e.category == "OBJECT_NOT_FOUND") {
                        for t in &e.trace_ids {
                            if let Some((_, u)) = chunk.iter().find(|(_, u)| u.trace_id.as_ref() == Some(t)) {
                                gone.push(u.id);
                            }
                        }
                    }
                    reconcile(works, &indices, out, |_| None, None);
                }
                Err(e) => fail_request(works, &indices, &e),
            }
        }
        for id in gone {
            self.store.forget_contact(id).await?;
        }
        let mut created = 0;
        for (answers, key_of, key_prop) in [
            (by_email_out, &email_key as &dyn Fn(&Work) -> Option<String>, "email"),
            (by_phone_out, &phone_key as &dyn Fn(&Work) -> Option<String>, PROP_PHONE_E164),
        ] {
            for (chunk, answer) in answers {
                let indices: Vec<usize> = chunk.iter().map(|(i, _)| *i).collect();
                match answer {
                    Ok(out) => {
                        for (i, r) in reconcile(works, &indices, out, key_of, Some(key_prop)) {
                            created += usize::from(r.new == Some(true));
                            match r.id_u64() {
                                Some(id) => works[i].contact_id = Some(id),
                                None => {
                                    works[i].state = State::Failed(SyncError::Permanent(
                                        "HubSpot returned a contact without an id".into(),
                                    ))
                                }
                            }
                        }
                    }
                    Err(e) => fail_request(works, &indices, &e),
                }
            }
        }
        // A caller's later jobs follow their leader: its contact, or its failure.
        for leader in 0..works.len() {
            if !works[leader].leader() {
                continue;
            }
            let contact_id = works[leader].contact_id;
            let failed = match &works[leader].state {
                State::Failed(e) => Some(State::Failed(e.clone())),
                State::Single => Some(State::Single),
                State::Open => None,
            };
            for i in works[leader].members().into_iter().skip(1) {
                works[i].contact_id = contact_id;
                if let Some(state) = &failed {
                    works[i].state = match state {
                        State::Failed(e) => State::Failed(e.clone()),
                        _ => State::Single,
                    };
                }
            }
        }
        // Every contact found or made is remembered under each of its caller's keys.
        let remembered: Vec<(Vec<String>, u64)> = works
            .iter()
            .filter(|w| w.open() && w.leader())
            .filter_map(|w| w.contact_id.map(|id| (w.caller().keys(), id)))
            .collect();
        self.store.remember_contacts(&remembered).await?;
        Ok(created)
    }

    /// Logs each call and meeting once; returns what to record and how many were created.
    async fn write_activities(&self, works: &mut [Work]) -> Result<(Vec<ActivityRecord>, usize), SyncError> {
        let calls_api = self.hubspot.capabilities().await?.calls_api;
        let mut records = Vec::new();
        let mut creates: HashMap<ObjectType, Vec<Planned>> = HashMap::new();
        let mut updates = Vec::new();
        for (i, w) in works.iter_mut().enumerate().filter(|(_, w)| w.open()) {
            match &w.event {
                Event::Call(_) if !calls_api => w.state = State::Single,
                Event::Call(c) => match &w.logged {
                    Some(a) if a.stage > c.stage as i64 => {}
                    Some(a) if a.via == "v3" => {
                        let input = UpdateInput {
                            id: a.hubspot_id,
                            properties: plan::call_properties(c),
                            trace_id: Some(w.trace()),
                        };
                        updates.push((i, input));
                        let record = call_record(c, Activity { stage: c.stage as i64, ..a.clone() });
                        records.push(PendingRecord { job: w.trace(), record });
                    }
                    Some(_) => w.state = State::Single,
                    None => creates.entry(ObjectType::Calls).or_default().push((i, plan::call_properties(c))),
                },
                Event::Booking(b) => {
                    if let (None, Some(props)) = (&w.logged, plan::meeting_properties(b)) {
                        creates.entry(ObjectType::Meetings).or_default().push((i, props));
                    }
                }
            }
        }
        let updated = chunked(&updates, BATCH_MAX, |c| async move {
            let inputs: Vec<UpdateInput> = c.iter().map(|(_, u)| u.clone()).collect();
            self.hubspot.batch_update(ObjectType::Calls, &inputs).await
        })
        .await;
        for (chunk, answer) in updated {
            let indices: Vec<usize> = chunk.iter().map(|(i, _)| *i).collect();
            match answer {
                Ok(out) => {
                    reconcile(works, &indices, out, |_| None, None);
                }
                Err(e) => fail_request(works, &indices, &e),
            }
        }
        let mut created = 0;
        for (t, mut list) in creates {
            let identity = if t == ObjectType::Calls { "hs_call_external_id" } else { PROP_MEETING_EVENT_ID };
            // A job that ran before may have made its activity already: find it first.
            let earlier = self.find_earlier(works, t, identity, &list).await;
            list.retain(|(i, _)| match earlier.get(i) {
                Some(Ok(id)) => {
                    records.push(activity_record(&works[*i], *id));
                    false
                }
                Some(Err(e)) => {
                    fail_request(works, &[*i], e);
                    false
                }
                None => true,
            });
            // A caller's events land in order: behind one that cannot land now, the rest wait.
            hold_back_followers(works);
            list.retain(|(i, _)| works[*i].open());
            // A caller's activities go in one request, in order, so HubSpot makes them in the
            // order they happened; past what one request holds, they take the single path.
            list.sort_by_key(|(i, _)| (works[*i].leader_of, *i));
            let mut kept = Vec::with_capacity(list.len());
            let mut run = (usize::MAX, 0);
            for (i, props) in list {
                let leader = works[i].leader_of;
                run = if run.0 == leader { (leader, run.1 + 1) } else { (leader, 1) };
                if run.1 > BATCH_MAX {
                    works[i].state = State::Single;
                } else {
                    kept.push((i, props));
                }
            }
            let list = kept;
            let mut chunks: Vec<&[Planned]> = Vec::new();
            let mut start = 0;
            let mut at = 0;
            while at < list.len() {
                let leader = works[list[at].0].leader_of;
                let group = list[at..].iter().take_while(|(i, _)| works[*i].leader_of == leader).count();
                if at + group - start > BATCH_MAX {
                    chunks.push(&list[start..at]);
                    start = at;
                }
                at += group;
            }
            if start < list.len() {
                chunks.push(&list[start..]);
            }
            let answers = chunked_slices(chunks, |c| {
                let works = &*works;
                async move {
                    let inputs: Vec<ObjectInput> = c
                        .iter()
                        .map(|(i, props)| {
                            let w = &works[*i];
                            ObjectInput::new(props.clone())
                                .associate(w.contact_id.expect("open jobs have a contact"), t.to_contact_type_id())
                                .trace(w.trace())
                        })
                        .collect();
                    self.hubspot.batch_create(t, &inputs).await
                }
            })
            .await;
            for (chunk, answer) in answers {
                let indices: Vec<usize> = chunk.iter().map(|(i, _)| *i).collect();
                match answer {
                    Ok(out) => {
                        for (i, r) in reconcile(works, &indices, out, |_| None, None) {
                            match r.id_u64() {
                                Some(id) => {
                                    created += 1;
                                    records.push(activity_record(&works[i], id));
                                }
                                None => {
                                    works[i].state = State::Failed(SyncError::Permanent(
                                        "HubSpot returned a record without an id".into(),
                                    ))
                                }
                            }
                        }
                    }
                    Err(e) => fail_request(works, &indices, &e),
                }
            }
        }
        // Only jobs that landed are recorded.
        let landed: HashSet<String> = works.iter().filter(|w| w.open()).map(|w| w.trace()).collect();
        records.retain(|r| landed.contains(&r.job));
        Ok((records.into_iter().map(|r| r.record).collect(), created))
    }

    /// For jobs that ran before: the activity their earlier attempt made, if any, found
    /// through their contacts' associations (exact, unlike search, which lags writes).
    async fn find_earlier(
        &self,
        works: &[Work],
        t: ObjectType,
        identity: &str,
        list: &[Planned],
    ) -> HashMap<usize, Result<u64, HubSpotError>> {
        let retrying: Vec<usize> = list.iter().map(|(i, _)| *i).filter(|&i| works[i].retrying).collect();
        let mut out = HashMap::new();
        if retrying.is_empty() {
            return out;
        }
        let contacts: Vec<u64> = retrying.iter().filter_map(|&i| works[i].contact_id).collect();
        let found = self.hubspot.find_by_identities(t, identity, &contacts).await;
        for i in retrying {
            let key = external_key(&works[i]);
            match &found {
                Ok(by_key) => {
                    if let Some(id) = by_key.get(&key).and_then(CrmObject::id_u64) {
                        out.insert(i, Ok(id));
                    }
                }
                Err(e) => {
                    out.insert(i, Err(e.clone()));
                }
            }
        }
        out
    }
}

/// The id an activity is stamped with (`hs_call_external_id`, or the meeting's event id).
fn external_key(w: &Work) -> String {
    match &w.event {
        Event::Call(c) => call_identity(c),
        Event::Booking(b) => b.booking_key.clone(),
    }
}

struct PendingRecord {
    job: String,
    record: ActivityRecord,
}

fn call_record(c: &callbridge_domain::CallEvent, activity: Activity) -> ActivityRecord {
    ActivityRecord {
        source: c.source.as_str().to_string(),
        key: c.call_id.clone(),
        kind: "call",
        activity,
        occurred_at_ms: c.occurred_at_ms,
    }
}

fn activity_record(w: &Work, hubspot_id: u64) -> PendingRecord {
    let contact_id = w.contact_id;
    let record = match &w.event {
        Event::Call(c) => call_record(c, Activity { hubspot_id, contact_id, via: "v3".into(), stage: c.stage as i64 }),
        Event::Booking(b) => ActivityRecord {
            source: "generic".into(),
            key: b.booking_key.clone(),
            kind: "meeting",
            activity: Activity { hubspot_id, contact_id, via: "v3".into(), stage: 0 },
            occurred_at_ms: b.meeting_at_ms.unwrap_or(b.received_at_ms),
        },
    };
    PendingRecord { job: w.trace(), record }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbridge_domain::{BookingEvent, Email};

    fn work(id: i64, email: &str) -> Work {
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
        });
        Work {
            id,
            event,
            retrying: false,
            found: None,
            contact_id: None,
            newest: false,
            logged: None,
            state: State::Open,
            group: vec![],
            leader_of: 0,
            merged: None,
            contact_write: None,
        }
    }

    #[test]
    fn a_partial_answer_lands_some_inputs_fails_the_named_ones_and_retries_the_unanswered() {
        let mut works = vec![work(1, "a@example.com"), work(2, "b@example.com"), work(3, "c@example.com")];
        let body = serde_json::json!({
            "status": "COMPLETE",
            "results": [{"id": "11", "properties": {"email": "a@example.com"}, "objectWriteTraceId": "1"}],
            "errors": [{"status": "error", "category": "VALIDATION_ERROR", "message": "Property values were not valid",
                        "context": {"objectWriteTraceId": ["2"]}}],
        });
        let out = BatchOutcome::from_json(&body).unwrap();
        let landed = reconcile(&mut works, &[0, 1, 2], out, |_| None, None);
        assert_eq!(landed.iter().map(|(i, r)| (*i, r.id.as_str())).collect::<Vec<_>>(), [(0, "11")]);
        assert!(works[0].open());
        assert!(matches!(works[1].state, State::Failed(SyncError::Permanent(_))), "a rejected input is not retried");
        assert!(matches!(works[2].state, State::Failed(SyncError::Transient(_))), "an unanswered input is retried");
    }

    #[test]
    fn an_upsert_answer_without_trace_ids_is_matched_by_its_key() {
        let mut works = vec![work(1, "a@example.com"), work(2, "b@example.com")];
        let body = serde_json::json!({"results": [
            {"id": "22", "properties": {"email": "B@example.com"}, "new": true},
            {"id": "21", "properties": {"email": "a@example.com"}, "new": false},
        ]});
        let key = |w: &Work| w.caller().email.as_ref().map(|e| e.as_str().to_string());
        let landed = reconcile(&mut works, &[0, 1], BatchOutcome::from_json(&body).unwrap(), key, Some("email"));
        let mut ids: Vec<(usize, String)> = landed.into_iter().map(|(i, r)| (i, r.id)).collect();
        ids.sort();
        assert_eq!(ids, [(0, "21".to_string()), (1, "22".to_string())]);
    }

    #[test]
    fn behind_a_callers_event_that_cannot_land_now_the_later_ones_wait() {
        let mut works = vec![work(1, "a@example.com"), work(2, "a@example.com"), work(3, "a@example.com")];
        group_callers(&mut works, &vec!["k".to_string(); 3]);
        works[1].state = State::Failed(SyncError::Transient("lookup failed".into()));
        hold_back_followers(&mut works);
        assert!(works[0].open());
        assert!(matches!(works[2].state, State::Failed(SyncError::Transient(_))));
    }

    #[test]
    fn a_callers_jobs_group_behind_the_first_until_one_names_another_email() {
        let mut works = vec![
            work(1, "a@example.com"),
            work(2, "a@example.com"),
            work(3, "z@example.com"),
            work(4, "a@example.com"),
        ];
        let keys = vec!["k".to_string(); 4];
        group_callers(&mut works, &keys);
        assert!(works[0].leader() && works[0].group == [0, 1]);
        assert!(matches!(works[2].state, State::Single) && matches!(works[3].state, State::Single), "order holds");
    }
}
