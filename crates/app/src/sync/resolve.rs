//! Finding each caller's contact, in bulk. Callers the caller index knows are read back by id;
//! strangers with an email are read by email (exact, no index lag); the rest are searched for
//! by phone through one [`PhoneFinder`] per portal, which packs every round's numbers into
//! full searches, and the answers are matched back in code, oldest contact first.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use callbridge_domain::PhoneE164;
use callbridge_domain::plan::{CONTACT_READ, PROP_PHONE_E164};
use callbridge_hubspot::{
    CrmObject, Filter, HubSpotApi, HubSpotError, MAX_IN_VALUES, MAX_SEARCH_PAGE, ObjectType, Priority, Search,
};
use tokio::sync::oneshot;

use super::apply::{BATCH_MAX, chunked, fail_request};
use super::{Engine, SyncError, Work, values};

/// Phone lookups from every round in flight, packed into full searches: each search carries
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
    /// Numbers to search for, with their asker; an agent's (interactive) go first.
    queue: VecDeque<(String, u64, Priority)>,
    waiters: HashMap<u64, Waiter>,
    in_flight: usize,
    next: u64,
}

/// A phone lookup asked of the [`PhoneFinder`]: its answer, when awaited.
pub struct Asked(Option<oneshot::Receiver<Result<Vec<CrmObject>, HubSpotError>>>);

impl Asked {
    pub async fn answer(self) -> SearchAnswer {
        match self.0 {
            None => Ok(Vec::new()),
            Some(rx) => rx
                .await
                .unwrap_or_else(|_| Err(HubSpotError::Transport { attempts: 0, message: "search abandoned".into() })),
        }
    }
}

struct Waiter {
    /// Numbers not yet searched for.
    left: usize,
    /// Its asker waits out an outage ([`callbridge_hubspot::patient`]).
    patient: bool,
    found: Vec<CrmObject>,
    tx: oneshot::Sender<Result<Vec<CrmObject>, HubSpotError>>,
}

impl PhoneFinder {
    pub fn new(hubspot: Arc<dyn HubSpotApi>, max_in_flight: usize) -> Arc<PhoneFinder> {
        Arc::new(PhoneFinder { hubspot, max_in_flight: max_in_flight.max(1), inner: Mutex::default() })
    }

    /// Every contact whose `phone` or `mobilephone` holds one of these national numbers
    /// (and maybe others: callers match the answer in code), oldest first per search. The
    /// numbers join the queue now, at the asker's priority; the answer comes when awaited.
    pub fn ask(self: &Arc<Self>, nationals: Vec<String>) -> Asked {
        if nationals.is_empty() {
            return Asked(None);
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut s = self.lock();
            let id = s.next;
            s.next += 1;
            let patient = callbridge_hubspot::breaker::is_patient();
            s.waiters.insert(id, Waiter { left: nationals.len(), patient, found: Vec::new(), tx });
            let priority = Priority::Background.effective();
            if priority == Priority::Interactive {
                for n in nationals.into_iter().rev() {
                    s.queue.push_front((n, id, priority));
                }
            } else {
                s.queue.extend(nationals.into_iter().map(|n| (n, id, priority)));
            }
        }
        self.pump();
        Asked(Some(rx))
    }

    /// Whether no search runs or waits: one asked for now goes at once.
    pub fn is_idle(&self) -> bool {
        let s = self.lock();
        s.in_flight == 0 && s.queue.is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FinderState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts searches while numbers wait and fewer than `max_in_flight` run.
    fn pump(self: &Arc<Self>) {
        loop {
            let (taken, patient): (Vec<(String, u64, Priority)>, bool) = {
                let mut s = self.lock();
                // A part-filled search goes only when none runs: while one does, more numbers
                // gather for a full one (a search costs the same at 1 number or 200).
                let full = s.queue.len() >= 2 * MAX_IN_VALUES;
                if s.in_flight >= self.max_in_flight || s.queue.is_empty() || (!full && s.in_flight > 0) {
                    return;
                }
                s.in_flight += 1;
                let n = s.queue.len().min(2 * MAX_IN_VALUES);
                let taken: Vec<_> = s.queue.drain(..n).collect();
                let patient = taken.iter().all(|(_, id, _)| s.waiters.get(id).is_some_and(|w| w.patient));
                (taken, patient)
            };
            let me = self.clone();
            tokio::spawn(async move {
                let numbers: Vec<String> = taken.iter().map(|(n, _, _)| n.clone()).collect();
                let search = search_phones(me.hubspot.as_ref(), &numbers);
                // A search an agent waits on goes out as theirs (it may use the reserves); one
                // only patient rounds wait on waits out an outage with them.
                let result = if taken.iter().any(|(_, _, p)| *p == Priority::Interactive) {
                    callbridge_hubspot::interactive(search).await
                } else if patient {
                    callbridge_hubspot::patient(search).await
                } else {
                    search.await
                };
                me.deliver(&taken, result);
                me.lock().in_flight -= 1;
                me.pump();
            });
        }
    }

    fn deliver(&self, taken: &[(String, u64, Priority)], result: Result<Vec<CrmObject>, HubSpotError>) {
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for (_, id, _) in taken {
            *counts.entry(*id).or_default() += 1;
        }
        let mut s = self.lock();
        for (id, n) in counts {
            let Some(mut w) = s.waiters.remove(&id) else { continue };
            match &result {
                Err(e) => {
                    let _ = w.tx.send(Err(e.clone()));
                    // Its other numbers are still queued: take them out.
                    s.queue.retain(|(_, q, _)| *q != id);
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
pub(super) type PhoneQuery = HashMap<String, Vec<usize>>;

/// What a phone search found.
pub(super) type SearchAnswer = Result<Vec<CrmObject>, HubSpotError>;

/// The phone searches a round asked for, still running, with the callers waiting on each.
pub(super) struct Searches(Vec<(PhoneQuery, Asked)>);

impl Searches {
    /// The callers (their leaders' indices) waiting on a search.
    pub(super) fn waiting(&self) -> Vec<usize> {
        self.0.iter().flat_map(|(q, _)| q.values().flatten().copied()).collect()
    }

    pub(super) async fn answers(self) -> Vec<(PhoneQuery, SearchAnswer)> {
        let (queries, asked): (Vec<PhoneQuery>, Vec<Asked>) = self.0.into_iter().unzip();
        let answers = futures_util::future::join_all(asked.into_iter().map(Asked::answer)).await;
        queries.into_iter().zip(answers).collect()
    }
}

/// Open, unresolved jobs with a phone that `pick` selects, grouped by national number.
fn phones_to_find(works: &[Work], pick: impl Fn(&Work) -> bool) -> PhoneQuery {
    let mut by_national: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, w) in works.iter().enumerate().filter(|(_, w)| w.leader()) {
        if let (true, Some(p), true) = (w.unsettled(), &w.caller().phone, pick(w)) {
            by_national.entry(p.national().to_string()).or_default().push(i);
        }
    }
    by_national
}

/// `query` without the callers that are no longer open or were found meanwhile.
fn only_unsettled(works: &[Work], query: PhoneQuery) -> PhoneQuery {
    query
        .into_iter()
        .filter_map(|(national, callers)| {
            let callers: Vec<usize> = callers.into_iter().filter(|&i| works[i].unsettled()).collect();
            (!callers.is_empty()).then_some((national, callers))
        })
        .collect()
}

/// Digits of a stored phone value.
fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

impl Engine {
    /// Callers the index knows: read their contacts back by id, 100 per request.
    pub(super) async fn resolve_known(&self, works: &mut [Work]) -> Result<(), SyncError> {
        let leaders = super::open_leaders(works);
        let keys: Vec<Vec<String>> = leaders.iter().map(|&i| works[i].caller().keys()).collect();
        let known = self.store.known_contacts(&self.portal, &keys).await?;
        let mut by_id: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, id) in leaders.into_iter().zip(known) {
            if let Some(id) = id {
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
            self.store.forget_contact(&self.portal, id).await?;
        }
        Ok(())
    }

    /// Callers the index does not know. Those with an email are read by email, 100 per
    /// request (exact, no index lag), while phone-only callers are searched for; then
    /// callers whose email HubSpot does not have are searched for by phone too — alongside
    /// the read instead of after it when the finder is idle. Returns the searches asked for,
    /// still running: the callers settled without one need not wait for them.
    pub(super) async fn resolve_strangers(&self, works: &mut [Work]) -> Result<Searches, SyncError> {
        let mut by_email: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, w) in works.iter().enumerate().filter(|(_, w)| w.leader()) {
            if let (true, Some(e)) = (w.unsettled(), &w.caller().email) {
                by_email.entry(e.as_str().to_string()).or_default().push(i);
            }
        }
        // A lone stranger known by email alone is not read first: the contact is created
        // directly, and if HubSpot has the email already its 409 names the contact (see
        // `write_new_contacts`). A new caller lands a round trip sooner; one HubSpot knows costs
        // the same requests as reading first. A batch still reads: one taken email fails a
        // whole batch create. A job that ran before reads, so this is tried once.
        if let [(_, only)] = by_email.iter().collect::<Vec<_>>()[..]
            && let [i] = only[..]
            && works[i].caller().phone.is_none()
            && !works[i].job.retrying
        {
            works[i].create_directly = true;
            by_email.clear();
        }
        // On an idle finder the numbers of callers with an email too are searched for alongside
        // the read by email, not after it: a new caller with both lands a round trip sooner, and
        // when HubSpot has the email the search (outside the 10-second window) goes unused. In a
        // burst the finder is busy, and those numbers wait for the read as before, so no search
        // is spent on callers an email settles.
        let mut searched_first = phones_to_find(works, |w| w.caller().email.is_none());
        let with_email = if self.phones.is_idle() {
            phones_to_find(works, |w| w.caller().email.is_some())
        } else {
            PhoneQuery::new()
        };
        let early = !with_email.is_empty() && searched_first.len() + with_email.len() <= 2 * MAX_IN_VALUES;
        if early {
            for (national, callers) in with_email {
                searched_first.entry(national).or_default().extend(callers);
            }
        }
        let first = self.phones.ask(searched_first.keys().cloned().collect());
        let emails: Vec<String> = by_email.keys().cloned().collect();
        let read: Vec<&str> = CONTACT_READ.iter().copied().chain(["hs_additional_emails"]).collect();
        let by_email_answers = chunked(&emails, BATCH_MAX, |chunk| {
            let read = &read;
            async move { self.hubspot.batch_read(ObjectType::Contacts, chunk, Some("email"), read).await }
        })
        .await;
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
        if early {
            // Callers the read settled (or failed) take nothing from the search.
            let query = only_unsettled(works, searched_first);
            let first = if query.is_empty() { Asked(None) } else { first };
            return Ok(Searches(vec![(query, first)]));
        }
        let rest = phones_to_find(works, |w| w.caller().email.is_some());
        let second = self.phones.ask(rest.keys().cloned().collect());
        Ok(Searches(vec![(searched_first, first), (rest, second)]))
    }

    /// Takes the searches' answers: each caller waiting on one gets the oldest contact holding
    /// their number, or stays a stranger.
    pub(super) fn take_searches(&self, works: &mut [Work], answers: Vec<(PhoneQuery, SearchAnswer)>) {
        for (query, answer) in answers {
            self.take_phone_answers(works, &query, answer);
        }
    }

    /// Matches what the phone finder answered back to callers: the oldest contact
    /// holding the number.
    fn take_phone_answers(&self, works: &mut [Work], query: &PhoneQuery, answer: SearchAnswer) {
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
}
