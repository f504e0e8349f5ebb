//! Packing the part-filled batch requests of every round in flight into fuller ones. A round
//! sends its writes (and reads) in chunks of up to 100; the last chunk of each kind is
//! usually part-filled, and the rounds in flight each send their own — during a burst, tens
//! of requests HubSpot counts against the window like full ones, and past its first 190 each
//! costs a slot that frees ten seconds after an earlier one. So, per kind of request (as
//! [`PhoneFinder`](super::PhoneFinder) does for searches): a part-filled request goes at once
//! when none of its kind is in flight (a lone event waits for nothing); while one is, the
//! part-filled ones that arrive gather and go together when it returns, or as soon as they
//! nearly fill a request.
//!
//! Every asker gets the answer to its own inputs: results are matched by
//! `objectWriteTraceId`, else by what the input was keyed by (the record id; the upsert's or
//! read's id property). A packed request HubSpot rejects as a whole is sent again unpacked, so
//! each asker learns whether its own inputs were at fault.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use callbridge_hubspot::{
    BatchItemError, BatchOutcome, CrmObject, HubSpotApi, HubSpotError, ObjectInput, ObjectType, Priority, UpdateInput,
    UpsertInput,
};
use tokio::sync::oneshot;

use super::SyncError;
use super::apply::BATCH_MAX;

type Answer = Result<BatchOutcome, HubSpotError>;

/// A request of at least this many inputs goes at once: packing could add at most a quarter.
const NEARLY_FULL: usize = BATCH_MAX * 3 / 4;

/// What a request does: requests of one lane can be packed into one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Lane {
    Create(ObjectType),
    Update(ObjectType),
    Upsert(ObjectType, String),
    /// By the id property (`None`: the record id), reading these properties.
    Read(ObjectType, Option<String>, Vec<String>),
}

/// The inputs of one request.
#[derive(Debug, Clone)]
enum Inputs {
    Create(Vec<ObjectInput>),
    Update(Vec<UpdateInput>),
    Upsert(Vec<UpsertInput>),
    Read(Vec<String>),
}

impl Inputs {
    fn len(&self) -> usize {
        match self {
            Inputs::Create(v) => v.len(),
            Inputs::Update(v) => v.len(),
            Inputs::Upsert(v) => v.len(),
            Inputs::Read(v) => v.len(),
        }
    }

    fn extend(&mut self, other: &Inputs) {
        match (self, other) {
            (Inputs::Create(a), Inputs::Create(b)) => a.extend(b.iter().cloned()),
            (Inputs::Update(a), Inputs::Update(b)) => a.extend(b.iter().cloned()),
            (Inputs::Upsert(a), Inputs::Upsert(b)) => a.extend(b.iter().cloned()),
            // Two rounds may read the same record: it is asked for once.
            (Inputs::Read(a), Inputs::Read(b)) => {
                for k in b {
                    if !a.contains(k) {
                        a.push(k.clone());
                    }
                }
            }
            _ => unreachable!("a lane holds inputs of one kind"),
        }
    }

    /// Each input's trace id and key, as an answer names them.
    fn marks(&self) -> Vec<(Option<String>, Option<String>)> {
        match self {
            Inputs::Create(v) => v.iter().map(|i| (i.trace_id.clone(), None)).collect(),
            Inputs::Update(v) => v.iter().map(|i| (i.trace_id.clone(), Some(i.id.to_string()))).collect(),
            Inputs::Upsert(v) => v.iter().map(|i| (i.trace_id.clone(), Some(i.id.to_lowercase()))).collect(),
            Inputs::Read(v) => v.iter().map(|k| (None, Some(k.to_lowercase()))).collect(),
        }
    }
}

impl Lane {
    /// The keys a result of this lane answers: the record id (and the ids merged into it, which
    /// a read by id may have asked for), or the id property's value (and, by email, the
    /// contact's other emails).
    fn keys_of(&self, r: &CrmObject) -> Vec<String> {
        let listed = |name: &str| -> Vec<String> {
            r.prop(name).into_iter().flat_map(|v| v.split(';')).map(|v| v.trim().to_lowercase()).collect()
        };
        match self {
            Lane::Create(_) => Vec::new(),
            Lane::Update(_) => vec![r.id.clone()],
            Lane::Read(_, None, _) => std::iter::once(r.id.clone()).chain(listed("hs_merged_object_ids")).collect(),
            Lane::Upsert(_, p) => listed(p),
            Lane::Read(_, Some(p), _) => {
                let mut keys = listed(p);
                if p == "email" {
                    keys.extend(listed("hs_additional_emails"));
                }
                keys
            }
        }
    }

    async fn send(&self, hubspot: &dyn HubSpotApi, inputs: &Inputs) -> Answer {
        match (self, inputs) {
            (Lane::Create(t), Inputs::Create(v)) => hubspot.batch_create(*t, v).await,
            (Lane::Update(t), Inputs::Update(v)) => hubspot.batch_update(*t, v).await,
            (Lane::Upsert(t, _), Inputs::Upsert(v)) => hubspot.batch_upsert(*t, v).await,
            (Lane::Read(t, by, props), Inputs::Read(v)) => {
                let props: Vec<&str> = props.iter().map(String::as_str).collect();
                hubspot.batch_read(*t, v, by.as_deref(), &props).await
            }
            _ => unreachable!("a lane holds inputs of one kind"),
        }
    }
}

struct Ask {
    inputs: Inputs,
    priority: Priority,
    tx: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct LaneState {
    waiting: VecDeque<Ask>,
    in_flight: usize,
}

/// Packs the part-filled batch requests of every round of a portal; see the module docs.
pub struct Packer {
    hubspot: Arc<dyn HubSpotApi>,
    lanes: Mutex<HashMap<Lane, LaneState>>,
}

impl Packer {
    pub fn new(hubspot: Arc<dyn HubSpotApi>) -> Arc<Packer> {
        Arc::new(Packer { hubspot, lanes: Mutex::default() })
    }

    pub async fn create(self: &Arc<Self>, t: ObjectType, inputs: &[ObjectInput]) -> Answer {
        self.ask(Lane::Create(t), Inputs::Create(inputs.to_vec())).await
    }

    pub async fn update(self: &Arc<Self>, t: ObjectType, inputs: &[UpdateInput]) -> Answer {
        self.ask(Lane::Update(t), Inputs::Update(inputs.to_vec())).await
    }

    /// Upserts keyed by one id property (a request's inputs share it).
    pub async fn upsert(self: &Arc<Self>, t: ObjectType, inputs: &[UpsertInput]) -> Answer {
        let Some(by) = inputs.first().map(|i| i.id_property.clone()) else {
            return Ok(BatchOutcome::default());
        };
        self.ask(Lane::Upsert(t, by), Inputs::Upsert(inputs.to_vec())).await
    }

    pub async fn read(self: &Arc<Self>, t: ObjectType, keys: &[String], by: Option<&str>, properties: &[&str]) -> Answer {
        let props = properties.iter().map(|p| p.to_string()).collect();
        self.ask(Lane::Read(t, by.map(str::to_string), props), Inputs::Read(keys.to_vec())).await
    }

    async fn ask(self: &Arc<Self>, lane: Lane, inputs: Inputs) -> Answer {
        let priority = Priority::Background.effective();
        // A nearly full request has little to gain from packing; an agent's waits for no other.
        if inputs.len() >= NEARLY_FULL || priority == Priority::Interactive {
            return lane.send(self.hubspot.as_ref(), &inputs).await;
        }
        let (tx, rx) = oneshot::channel();
        self.lock().entry(lane.clone()).or_default().waiting.push_back(Ask { inputs, priority, tx });
        self.pump(&lane);
        rx.await
            .unwrap_or_else(|_| Err(HubSpotError::Transport { attempts: 0, message: "packed request abandoned".into() }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Lane, LaneState>> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends what waits in `lane`: a pack as full as what waits allows, at once when none of
    /// the lane is in flight or when it is nearly full; otherwise it waits for the one in
    /// flight and gathers meanwhile.
    fn pump(self: &Arc<Self>, lane: &Lane) {
        loop {
            let asks: Vec<Ask> = {
                let mut lanes = self.lock();
                let Some(state) = lanes.get_mut(lane) else { return };
                let (mut count, mut inputs) = (0, 0);
                for next in &state.waiting {
                    if count > 0 && inputs + next.inputs.len() > BATCH_MAX {
                        break;
                    }
                    count += 1;
                    inputs += next.inputs.len();
                }
                if count == 0 || (state.in_flight > 0 && inputs < NEARLY_FULL) {
                    return;
                }
                state.in_flight += 1;
                state.waiting.drain(..count).collect()
            };
            let (me, lane) = (self.clone(), lane.clone());
            tokio::spawn(async move {
                me.send_packed(&lane, asks).await;
                if let Some(state) = me.lock().get_mut(&lane) {
                    state.in_flight -= 1;
                }
                me.pump(&lane);
            });
        }
    }

    async fn send_packed(&self, lane: &Lane, asks: Vec<Ask>) {
        let mut inputs = asks[0].inputs.clone();
        for a in &asks[1..] {
            inputs.extend(&a.inputs);
        }
        let send = lane.send(self.hubspot.as_ref(), &inputs);
        // Packed with other work, a sweep's request goes out as the others' (it would yield).
        let answer = if asks.iter().all(|a| a.priority == Priority::Bulk) {
            callbridge_hubspot::bulk(send).await
        } else {
            send.await
        };
        match answer {
            Ok(out) => {
                let parts = split(lane, &asks, out);
                for (ask, part) in asks.into_iter().zip(parts) {
                    let _ = ask.tx.send(Ok(part));
                }
            }
            // Rejected as a whole: each asker's inputs go again on their own, so no asker is
            // told its inputs were at fault for another's.
            Err(e) if asks.len() > 1 && matches!(SyncError::from(e.clone()), SyncError::Permanent(_)) => {
                let hubspot = self.hubspot.as_ref();
                let answers = futures_util::future::join_all(asks.iter().map(|a| lane.send(hubspot, &a.inputs))).await;
                for (ask, answer) in asks.into_iter().zip(answers) {
                    let _ = ask.tx.send(answer);
                }
            }
            Err(e) => {
                for ask in asks {
                    let _ = ask.tx.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Splits a packed request's answer among its askers, each getting the results and errors
/// that name its inputs.
fn split(lane: &Lane, asks: &[Ask], out: BatchOutcome) -> Vec<BatchOutcome> {
    let mut by_trace: HashMap<String, usize> = HashMap::new();
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    for (n, ask) in asks.iter().enumerate() {
        for (trace, key) in ask.inputs.marks() {
            if let Some(t) = trace {
                by_trace.insert(t, n);
            }
            if let Some(k) = key {
                by_key.entry(k).or_default().push(n);
            }
        }
    }
    let owners = |mark: &str| -> Vec<usize> {
        match by_trace.get(mark) {
            Some(n) => vec![*n],
            None => by_key.get(&mark.to_lowercase()).cloned().unwrap_or_default(),
        }
    };
    let mut parts = vec![BatchOutcome::default(); asks.len()];
    for r in out.results {
        let mut to: Vec<usize> = match r.object_write_trace_id.as_deref().and_then(|t| by_trace.get(t)) {
            Some(n) => vec![*n],
            None => lane.keys_of(&r).iter().filter_map(|k| by_key.get(k)).flatten().copied().collect(),
        };
        to.sort_unstable();
        to.dedup();
        for n in to {
            parts[n].results.push(r.clone());
        }
    }
    for e in out.errors {
        let mut named: HashMap<usize, BatchItemError> = HashMap::new();
        let blank = || BatchItemError { trace_ids: Vec::new(), ids: Vec::new(), ..e.clone() };
        for t in &e.trace_ids {
            for n in owners(t) {
                named.entry(n).or_insert_with(blank).trace_ids.push(t.clone());
            }
        }
        for id in &e.ids {
            for n in owners(id) {
                named.entry(n).or_insert_with(blank).ids.push(id.clone());
            }
        }
        for (n, err) in named {
            parts[n].errors.push(err);
        }
    }
    for u in out.unaccounted {
        for n in owners(&u) {
            parts[n].unaccounted.push(u.clone());
        }
    }
    parts
}
