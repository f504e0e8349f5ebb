//! Carrying the planner's operations out through [`HubSpotApi`], as few requests as the round
//! allows: contacts through `batch/update` (known; sent alongside the activities) and
//! `batch/upsert` (new: by email, or by the unique `callbridge_phone_e164` for phone-only
//! callers, so a retried upsert finds what the first attempt made; a lone email-only stranger
//! through `batch/create`, whose 409 names the contact HubSpot already has); calls and
//! meetings through `batch/create` with inline associations, a caller's together and in order. Whether calls go through the v3 Calls API or v1 engagements
//! (which have no batch endpoint) is decided here, once per round, from the probe.
//!
//! A create is never re-sent blindly: a job that ran before first looks up what its earlier
//! attempt made, through its contact's associations (exact, unlike search, which lags writes).
//! A create whose answer was lost (5xx, dropped connection) sends its jobs to the next round
//! together, once, without spending an attempt: that round looks up what it made.
//! Partial answers (207) are reconciled per input by `objectWriteTraceId` (the job id): an input
//! HubSpot rejects fails alone, one left unanswered is retried. A request of several inputs
//! rejected as a whole sends its jobs to run alone, which shows which input was at fault.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use callbridge_domain::plan::{ActivityOp, ContactOp, PROP_MEETING_EVENT_ID, PROP_PHONE_E164};
use callbridge_domain::{CallEvent, Event};
use callbridge_hubspot::{
    BatchItemError, BatchOutcome, CallEngagement, CrmObject, HubSpotError, ObjectInput, ObjectType, UpdateInput,
    UpsertInput,
};
use callbridge_store::ActivityRecord;
use futures_util::future::join_all;
use serde_json::{Map, Value};

use super::{Engine, State, SyncError, Work, hold_back_followers};

/// HubSpot's batch endpoints take at most this many inputs.
pub(super) const BATCH_MAX: usize = 100;

/// A create for a job (by index): the activity's properties.
type Planned = (usize, Map<String, Value>);

/// A contact update for a job (by index).
type Update = (usize, UpdateInput);

/// What HubSpot answered to each request of contact updates, with the updates it carried.
type UpdateAnswers<'a> = Vec<(&'a [Update], Result<BatchOutcome, HubSpotError>)>;

/// What a failed request means for its jobs: transient → retry later. Rejected → a request
/// of one input names its culprit; the jobs of a larger one each run alone to find it.
pub(super) fn fail_request(works: &mut [Work], indices: &[usize], e: &HubSpotError) {
    for &i in indices {
        if works[i].open() {
            works[i].state = match SyncError::from(e.clone()) {
                SyncError::Permanent(_) if indices.len() > 1 => State::Alone,
                error => State::Failed(error),
            };
        }
    }
}

/// What a failed create means for its jobs. A create whose answer was lost (a 5xx, a dropped
/// connection) may have taken effect: its jobs go to the next round together, once, which
/// looks up what it made before writing again — rather than each failing an attempt and coming
/// back later in rounds of their own, every one reading its contact and writing in smaller
/// batches. A second loss in a row is a failure like any other (`fail_request`).
pub(super) fn fail_create(works: &mut [Work], indices: &[usize], e: &HubSpotError) {
    if matches!(e, HubSpotError::Unavailable { .. } | HubSpotError::Transport { .. }) {
        for &i in indices {
            if works[i].open() && !works[i].job.retrying {
                works[i].wrote = true;
                works[i].state = State::Next;
            }
        }
    }
    fail_request(works, indices, e);
}

fn fail_item(work: &mut Work, e: &BatchItemError) {
    let message = format!("HubSpot rejected the input: {} ({})", e.category, e.message);
    work.state = State::Failed(match e.category.as_str() {
        "PROPERTY_DOESNT_EXIST" => SyncError::Unready(message),
        "VALIDATION_ERROR" | "INVALID_EMAIL" => SyncError::Permanent(message),
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
pub(super) async fn chunked<'a, T, R, F, Fut>(items: &'a [T], size: usize, f: F) -> Vec<(&'a [T], R)>
where
    F: Fn(&'a [T]) -> Fut,
    Fut: Future<Output = R>,
{
    chunked_slices(items.chunks(size).collect(), f).await
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

/// Splits a list sorted by caller into requests of at most [`BATCH_MAX`], never splitting one
/// caller's run (callers with more than that take the next round).
fn by_caller_chunks<'a>(works: &mut [Work], list: &'a mut Vec<Planned>) -> Vec<&'a [Planned]> {
    list.sort_by_key(|(i, _)| (works[*i].leader_of, *i));
    let mut run = (usize::MAX, 0);
    list.retain(|(i, _)| {
        let leader = works[*i].leader_of;
        run = if run.0 == leader { (leader, run.1 + 1) } else { (leader, 1) };
        if run.1 > BATCH_MAX {
            works[*i].state = State::Next;
        }
        run.1 <= BATCH_MAX
    });
    let mut chunks = Vec::new();
    let (mut start, mut at) = (0, 0);
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
    chunks
}

/// Takes the contact HubSpot made or found for a job: its id, which every answer carries.
fn landed_contact(work: &mut Work, contact: &CrmObject) {
    match contact.id_u64() {
        Some(id) => work.contact_id = Some(id),
        None => work.state = State::Failed(SyncError::Permanent("HubSpot returned a contact without an id".into())),
    }
}

/// A caller's later jobs follow their leader: its contact, or its fate (the contact write was
/// the leader's and its followers': when it failed, it failed for all).
fn follow_leaders(works: &mut [Work]) {
    for leader in 0..works.len() {
        if !works[leader].leader() {
            continue;
        }
        let contact_id = works[leader].contact_id;
        let state = works[leader].state.clone();
        for i in works[leader].group.clone().into_iter().skip(1) {
            works[i].contact_id = contact_id;
            if works[i].open() {
                works[i].state = match &state {
                    State::Failed(e) => State::Failed(e.clone()),
                    other => super::follow(other),
                };
            }
        }
    }
}

impl Engine {
    /// The updates of contacts the round found (by index): known before anything is written,
    /// so they go out alongside the activities, which need only the contact's id.
    pub(super) fn contact_updates(works: &[Work]) -> Vec<Update> {
        works
            .iter()
            .enumerate()
            .filter(|(_, w)| w.leads())
            .filter_map(|(i, w)| match &w.contact {
                Some(ContactOp::Update { id, properties }) => {
                    Some((i, UpdateInput { id: *id, properties: properties.clone(), trace_id: Some(w.trace()) }))
                }
                _ => None,
            })
            .collect()
    }

    /// Sends [`Self::contact_updates`]' inputs, 100 a request, all at once. It holds no job, so
    /// it runs while the round's other writes do.
    pub(super) async fn send_contact_updates<'a>(&self, updates: &'a [Update]) -> UpdateAnswers<'a> {
        chunked(updates, BATCH_MAX, |c| async move {
            let inputs: Vec<UpdateInput> = c.iter().map(|(_, u)| u.clone()).collect();
            self.hubspot.batch_update(ObjectType::Contacts, &inputs).await
        })
        .await
    }

    /// Takes what HubSpot answered to the updates: a contact it no longer has is forgotten (the
    /// caller is resolved afresh), and a caller's later jobs follow their leader's fate.
    pub(super) async fn take_contact_updates(
        &self,
        works: &mut [Work],
        answers: UpdateAnswers<'_>,
    ) -> Result<(), SyncError> {
        let mut gone = Vec::new();
        for (chunk, answer) in answers {
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
            self.store.forget_contact(&self.portal, id).await?;
        }
        follow_leaders(works);
        Ok(())
    }

    /// Upserts the round's new contacts (by email, or by the unique E.164 property for
    /// phone-only callers) and remembers every contact found or made; returns how many were
    /// created.
    pub(super) async fn write_new_contacts(&self, works: &mut [Work]) -> Result<usize, SyncError> {
        let (mut by_email, mut by_phone, mut direct) = (Vec::new(), Vec::new(), Vec::new());
        for (i, w) in works.iter().enumerate().filter(|(_, w)| w.leads()) {
            match &w.contact {
                Some(ContactOp::Create { properties }) if w.create_directly => {
                    direct.push((i, ObjectInput::new(properties.clone()).trace(w.trace())))
                }
                Some(ContactOp::Create { .. }) if w.caller().email.is_some() => by_email.push(i),
                Some(ContactOp::Create { .. }) => by_phone.push(i),
                _ => {}
            }
        }
        let upsert = |i: usize, property: &str, key: String| UpsertInput {
            id: key,
            id_property: property.to_string(),
            properties: match &works[i].contact {
                Some(ContactOp::Create { properties }) => properties.clone(),
                _ => Map::new(),
            },
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

        let (direct_out, by_email_out, by_phone_out) = tokio::join!(
            chunked(&direct, BATCH_MAX, |c| async move {
                let inputs: Vec<ObjectInput> = c.iter().map(|(_, o)| o.clone()).collect();
                self.hubspot.batch_create(ObjectType::Contacts, &inputs).await
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
        let mut created = 0;
        // Contacts HubSpot already had: remembered, so the next round reads them by id.
        let mut known = Vec::new();
        for (chunk, answer) in direct_out {
            let indices: Vec<usize> = chunk.iter().map(|(i, _)| *i).collect();
            match answer {
                Ok(out) => {
                    for (i, r) in reconcile(works, &indices, out, email_key, Some("email")) {
                        created += 1;
                        landed_contact(&mut works[i], &r);
                    }
                }
                Err(HubSpotError::Conflict { existing_id: Some(id), .. }) if indices.len() == 1 => {
                    known.push((works[indices[0]].caller().keys(), id));
                    works[indices[0]].state = State::Next;
                }
                Err(e @ HubSpotError::Conflict { .. }) => {
                    // No id to go on: read by email when the job runs again.
                    for i in indices {
                        works[i].state = State::Failed(SyncError::Transient(e.to_string()));
                    }
                }
                Err(e) => fail_create(works, &indices, &e),
            }
        }
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
                            landed_contact(&mut works[i], &r);
                        }
                    }
                    Err(e) => fail_request(works, &indices, &e),
                }
            }
        }
        follow_leaders(works);
        // Every contact found or made is remembered under each of its caller's keys.
        let mut remembered: Vec<(Vec<String>, u64)> =
            works.iter().filter(|w| w.leads()).filter_map(|w| w.contact_id.map(|id| (w.caller().keys(), id))).collect();
        remembered.extend(known);
        if !remembered.is_empty() {
            self.store.remember_contacts(&self.portal, &remembered).await?;
        }
        Ok(created)
    }

    /// Logs each call and meeting once, or updates the call an earlier stage logged; returns
    /// what to record and how many activities were created.
    pub(super) async fn write_activities(&self, works: &mut [Work]) -> Result<(Vec<ActivityRecord>, usize), SyncError> {
        let wants_calls = works.iter().any(|w| {
            w.open() && matches!(w.activity, Some(ActivityOp::LogCall { .. } | ActivityOp::UpdateCall { .. }))
        });
        // v3 or v1: the one place it is decided.
        let legacy = wants_calls && !self.hubspot.capabilities().await?.calls_api;
        let mut records = Vec::new();
        let mut creates: HashMap<ObjectType, Vec<Planned>> = HashMap::new();
        let (mut updates, mut engagements) = (Vec::new(), Vec::new());
        for (i, w) in works.iter().enumerate().filter(|(_, w)| w.open()) {
            match &w.activity {
                None => {}
                Some(ActivityOp::LogCall { .. }) if legacy => engagements.push(i),
                Some(ActivityOp::UpdateCall { logged, .. }) if logged.legacy => engagements.push(i),
                Some(ActivityOp::LogCall { properties, .. }) => {
                    creates.entry(ObjectType::Calls).or_default().push((i, properties.clone()))
                }
                Some(ActivityOp::CreateMeeting { properties, .. }) => {
                    creates.entry(ObjectType::Meetings).or_default().push((i, properties.clone()))
                }
                Some(ActivityOp::UpdateCall { logged, properties }) => {
                    updates.push((
                        i,
                        UpdateInput {
                            id: logged.hubspot_id,
                            properties: properties.clone(),
                            trace_id: Some(w.trace()),
                        },
                    ));
                    records.push((w.trace(), w.record(logged.hubspot_id, false)));
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
        let mut created = self.write_engagements(works, &engagements, &mut records).await;
        for (t, mut list) in creates {
            let identity = if t == ObjectType::Calls { "hs_call_external_id" } else { PROP_MEETING_EVENT_ID };
            // A job that ran before may have made its activity already: find it first.
            let earlier = self.find_earlier(works, t, identity, &list).await;
            list.retain(|(i, _)| match earlier.get(i) {
                Some(Ok(id)) => {
                    records.push((works[*i].trace(), works[*i].record(*id, false)));
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
            // order they happened.
            let chunks = by_caller_chunks(works, &mut list);
            for (i, _) in chunks.iter().flat_map(|c| c.iter()) {
                works[*i].wrote = true;
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
                                    records.push((works[i].trace(), works[i].record(id, false)));
                                }
                                None => {
                                    works[i].state = State::Failed(SyncError::Permanent(
                                        "HubSpot returned a record without an id".into(),
                                    ))
                                }
                            }
                        }
                    }
                    Err(e) => fail_create(works, &indices, &e),
                }
            }
        }
        // Only jobs that landed are recorded.
        let landed: HashSet<String> = works.iter().filter(|w| w.open()).map(|w| w.trace()).collect();
        Ok((records.into_iter().filter(|(job, _)| landed.contains(job)).map(|(_, r)| r).collect(), created))
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
        let retrying: Vec<usize> = list.iter().map(|(i, _)| *i).filter(|&i| works[i].job.retrying).collect();
        let mut out = HashMap::new();
        if retrying.is_empty() {
            return out;
        }
        let contacts: Vec<u64> = retrying.iter().filter_map(|&i| works[i].contact_id).collect();
        let found = self.hubspot.find_by_identities(t, identity, &contacts).await;
        for i in retrying {
            let key = external_id(&works[i]);
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

    /// Calls through v1 engagements (no batch endpoint): one request per call, callers side
    /// by side, each caller's in order. Returns how many were created.
    async fn write_engagements(
        &self,
        works: &mut [Work],
        indices: &[usize],
        records: &mut Vec<(String, ActivityRecord)>,
    ) -> usize {
        let mut by_caller: Vec<Vec<usize>> = Vec::new();
        for &i in indices {
            works[i].wrote = true;
            match by_caller.iter_mut().find(|g| works[g[0]].leader_of == works[i].leader_of) {
                Some(g) => g.push(i),
                None => by_caller.push(vec![i]),
            }
        }
        let results = join_all(by_caller.iter().map(|group| {
            let works = &*works;
            async move {
                let mut out = Vec::new();
                for &i in group {
                    let result = self.write_engagement(&works[i]).await;
                    let failed = result.is_err();
                    out.push((i, result));
                    if failed {
                        break;
                    }
                }
                out
            }
        }))
        .await;
        let mut created = 0;
        for (i, result) in results.into_iter().flatten() {
            match result {
                Ok((id, made)) => {
                    created += usize::from(made);
                    records.push((works[i].trace(), works[i].record(id, true)));
                }
                Err(e) => works[i].state = State::Failed(e.into()),
            }
        }
        // A caller's calls after one that failed wait for it.
        hold_back_followers(works);
        created
    }

    /// One call as a v1 engagement: logged (unless an earlier attempt did), or updated.
    /// Returns its id and whether it was created now.
    async fn write_engagement(&self, w: &Work) -> Result<(u64, bool), HubSpotError> {
        let Event::Call(c) = &w.job.event else { unreachable!("only calls become engagements") };
        let contact_id = w.contact_id.expect("open jobs have a contact");
        match &w.activity {
            Some(ActivityOp::UpdateCall { logged, properties }) => {
                self.hubspot.update_call_engagement(logged.hubspot_id, engagement_metadata(properties)).await?;
                Ok((logged.hubspot_id, false))
            }
            Some(ActivityOp::LogCall { external_id, properties }) => {
                if w.job.retrying {
                    let all = self.hubspot.contact_engagements(contact_id).await?;
                    let earlier = all
                        .iter()
                        .find(|e| e.pointer("/metadata/externalId").and_then(Value::as_str) == Some(external_id))
                        .and_then(|e| e.pointer("/engagement/id").and_then(Value::as_u64));
                    if let Some(id) = earlier {
                        return Ok((id, false));
                    }
                }
                let id =
                    self.hubspot.create_call_engagement(&engagement(c, contact_id, properties, external_id)).await?;
                Ok((id, true))
            }
            _ => unreachable!("only call writes become engagements"),
        }
    }
}

/// The id an activity is stamped with (`hs_call_external_id`, or the meeting's event id).
fn external_id(w: &Work) -> String {
    match &w.activity {
        Some(ActivityOp::LogCall { external_id, .. } | ActivityOp::CreateMeeting { external_id, .. }) => {
            external_id.clone()
        }
        _ => String::new(),
    }
}

/// The v1 engagement for a call, from the same properties as the v3 call.
fn engagement(c: &CallEvent, contact_id: u64, props: &Map<String, Value>, key: &str) -> CallEngagement {
    let text = |k: &str| props.get(k).and_then(Value::as_str).map(String::from);
    CallEngagement {
        timestamp_ms: c.started_at_ms.unwrap_or(c.occurred_at_ms),
        contact_ids: vec![contact_id],
        owner_id: None,
        body: text("hs_call_body").unwrap_or_default(),
        title: text("hs_call_title"),
        status: "COMPLETED".into(),
        external_id: key.to_string(),
        duration_ms: c.duration_ms,
        from_number: text("hs_call_from_number"),
        to_number: text("hs_call_to_number"),
        recording_url: text("hs_call_recording_url"),
        disposition: None,
    }
}

/// The v1 metadata a later stage of a call changes.
fn engagement_metadata(props: &Map<String, Value>) -> Value {
    let mut m = Map::new();
    for (v1, v3) in [("body", "hs_call_body"), ("title", "hs_call_title"), ("recordingUrl", "hs_call_recording_url")] {
        if let Some(v) = props.get(v3) {
            m.insert(v1.into(), v.clone());
        }
    }
    Value::Object(m)
}

impl Engine {
    /// Makes the task each landed call asks for (a complaint, an urgent matter, a callback, a
    /// reschedule without a new time), once per call: one already recorded for the call (an
    /// earlier stage made it) or found on the contact (an earlier attempt made it) is not made
    /// again. A task HubSpot refuses as invalid is logged and left out, never costing the call;
    /// one that fails transiently runs the job again.
    pub(super) async fn write_tasks(&self, works: &mut [Work]) -> Vec<ActivityRecord> {
        use callbridge_domain::plan::{KIND_TASK, PROP_OWNER, task_identity, task_properties};
        let mut wanted: Vec<(usize, Map<String, Value>)> = Vec::new();
        // Each wanted task's record key, in the same order.
        let mut keys: Vec<(&str, &str, &str)> = Vec::new();
        for (i, w) in works.iter().enumerate().filter(|(_, w)| w.open() && w.activity.is_some()) {
            let Event::Call(c) = &w.job.event else { continue };
            let owner = works[w.leader_of].found.as_ref().and_then(|(_, v)| v.get(PROP_OWNER)).map(String::as_str);
            if let Some(props) = task_properties(c, owner, &self.rules) {
                wanted.push((i, props));
                keys.push((c.source.as_str(), c.call_id.as_str(), KIND_TASK));
            }
        }
        // Tasks already recorded for their calls, in one look-up.
        match self.store.activities_by_key(&self.portal, &keys).await {
            Ok(made) => {
                let mut made = keys.iter().map(|&(s, k, kind)| made.contains_key(&(s.into(), k.into(), kind.into())));
                wanted.retain(|_| !made.next().unwrap_or(false));
            }
            Err(e) => {
                for (i, _) in wanted.drain(..) {
                    works[i].state = State::Failed(SyncError::Transient(format!("the store failed: {e}")));
                }
            }
        }
        let record = |w: &Work, c: &CallEvent, id: u64| ActivityRecord {
            source: c.source.as_str().to_string(),
            key: c.call_id.clone(),
            kind: KIND_TASK,
            activity: callbridge_store::Activity {
                hubspot_id: id,
                contact_id: w.contact_id,
                via: "v3".into(),
                stage: 0,
            },
            occurred_at_ms: c.occurred_at_ms,
        };
        let call = |w: &Work| match &w.job.event {
            Event::Call(c) => c.clone(),
            Event::Booking(_) => unreachable!("only calls make tasks"),
        };
        let mut records = Vec::new();
        // A job that ran before may have made its task: look on its contact first.
        let contacts: Vec<u64> =
            wanted.iter().filter(|(i, _)| works[*i].job.retrying).filter_map(|(i, _)| works[*i].contact_id).collect();
        if !contacts.is_empty() {
            match self.hubspot.find_by_identities(ObjectType::Tasks, PROP_MEETING_EVENT_ID, &contacts).await {
                Ok(found) => wanted.retain(|(i, _)| {
                    let c = call(&works[*i]);
                    match found.get(&task_identity(&c)).and_then(CrmObject::id_u64) {
                        Some(id) => {
                            records.push(record(&works[*i], &c, id));
                            false
                        }
                        None => true,
                    }
                }),
                Err(e) => {
                    let indices: Vec<usize> =
                        wanted.iter().filter(|(i, _)| works[*i].job.retrying).map(|(i, _)| *i).collect();
                    fail_request(works, &indices, &e);
                    wanted.retain(|(i, _)| works[*i].open());
                }
            }
        }
        for chunk in wanted.chunks(BATCH_MAX) {
            let inputs: Vec<ObjectInput> = chunk
                .iter()
                .map(|(i, props)| {
                    let w = &works[*i];
                    ObjectInput::new(props.clone())
                        .associate(
                            w.contact_id.expect("open jobs have a contact"),
                            ObjectType::Tasks.to_contact_type_id(),
                        )
                        .trace(w.trace())
                })
                .collect();
            match self.hubspot.batch_create(ObjectType::Tasks, &inputs).await {
                Ok(out) => {
                    for r in out.results {
                        let Some(i) = chunk
                            .iter()
                            .map(|(i, _)| *i)
                            .find(|i| r.prop(PROP_MEETING_EVENT_ID) == Some(task_identity(&call(&works[*i])).as_str()))
                        else {
                            continue;
                        };
                        if let Some(id) = r.id_u64() {
                            records.push(record(&works[i], &call(&works[i]), id));
                        }
                    }
                    for e in out.errors {
                        tracing::error!(error.category = %e.category, "HubSpot refused a call's task; the call landed without it");
                    }
                }
                Err(e) if e.is_transient() => {
                    let indices: Vec<usize> = chunk.iter().map(|(i, _)| *i).collect();
                    fail_create(works, &indices, &e);
                }
                Err(e) => {
                    // Property names and codes only: HubSpot's messages may quote the values.
                    let issues = match &e {
                        HubSpotError::Validation { properties, .. } => {
                            properties.iter().map(|p| format!("{} {}", p.name, p.code)).collect::<Vec<_>>().join(", ")
                        }
                        _ => String::new(),
                    };
                    tracing::error!(
                        tasks = chunk.len(),
                        issues,
                        "HubSpot refused calls' tasks; the calls landed without them"
                    );
                }
            }
        }
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::tests::work;

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
    fn a_rejected_request_fails_a_lone_input_and_sends_several_to_run_alone() {
        let rejected = HubSpotError::Validation { message: "bad".into(), properties: vec![] };
        let mut works = vec![work(1, "a@example.com")];
        fail_request(&mut works, &[0], &rejected);
        assert!(matches!(works[0].state, State::Failed(SyncError::Permanent(_))));
        let mut works = vec![work(1, "a@example.com"), work(2, "b@example.com")];
        fail_request(&mut works, &[0, 1], &rejected);
        assert!(works.iter().all(|w| matches!(w.state, State::Alone)));
    }
}
