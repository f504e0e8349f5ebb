//! The job bodies: land an event in HubSpot. Find the contact (what callbridge already knows
//! → email → phone in any format), create or update it through the planner's rules, then log
//! the call or meeting once, associated with it.
//!
//! Idempotency: every activity is recorded in the store under the platform's id; an event
//! seen again updates that activity instead of making another. When a job is retried after
//! a failure that may have come after HubSpot's write, the activity is looked up by the id
//! stamped on it before anything is created.

use std::collections::HashMap;
use std::sync::Arc;

use callbridge_domain::plan::{
    self, CONTACT_READ, ContactWish, PROP_MEETING_EVENT_ID, call_identity, is_older_than_last_call,
};
use callbridge_domain::{BookingEvent, CallEvent, Caller, DefaultRegion, Event};
use callbridge_hubspot::{
    CallEngagement, CrmObject, Filter, HubSpotApi, HubSpotError, Identity, ObjectInput, ObjectType, Search,
};
use callbridge_store::{Activity, Store};

use crate::batch::PhoneFinder;
use serde_json::Value;

/// Why a job failed, and whether trying again can help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
}

impl SyncError {
    /// What kind of failure, for logs: HubSpot's messages can echo property values (an
    /// email, a phone), so log lines carry the kind and the store keeps the message.
    pub fn kind(&self) -> &'static str {
        match self {
            SyncError::Transient(_) => "transient",
            SyncError::Permanent(_) => "permanent",
        }
    }
}

impl From<HubSpotError> for SyncError {
    fn from(e: HubSpotError) -> SyncError {
        if e.is_transient() { SyncError::Transient(e.to_string()) } else { SyncError::Permanent(e.to_string()) }
    }
}

impl From<callbridge_store::StoreError> for SyncError {
    fn from(e: callbridge_store::StoreError) -> SyncError {
        SyncError::Transient(e.to_string())
    }
}

pub struct Syncer {
    pub store: Arc<dyn Store>,
    pub hubspot: Arc<dyn HubSpotApi>,
    /// Where numbers typed without a country code are taken to be.
    pub region: DefaultRegion,
    /// Packs the batch path's phone lookups into full searches.
    pub phones: Arc<PhoneFinder>,
}

/// A contact's current property values.
pub type Values = HashMap<String, String>;

/// A contact's id and non-empty values.
pub fn values(o: CrmObject) -> Option<(u64, Values)> {
    let id = o.id_u64()?;
    Some((id, o.properties.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect()))
}

/// What a job did, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    pub contact_id: u64,
    pub activity_id: Option<u64>,
    pub created_activity: bool,
}

impl Syncer {
    /// `searches_at_once`: how many searches the batch path keeps in flight (HubSpot's
    /// searches per second is a good value).
    pub fn new(
        store: Arc<dyn Store>,
        hubspot: Arc<dyn HubSpotApi>,
        region: DefaultRegion,
        searches_at_once: usize,
    ) -> Syncer {
        let phones = PhoneFinder::new(hubspot.clone(), searches_at_once);
        Syncer { store, hubspot, region, phones }
    }

    pub async fn run(&self, event: &Event, retrying: bool) -> Result<Landed, SyncError> {
        match event {
            Event::Call(c) => self.sync_call(c, retrying).await,
            Event::Booking(b) => self.sync_booking(b, retrying).await,
        }
    }

    /// Finds the caller's contact and its current values.
    async fn resolve(&self, caller: &Caller) -> Result<Option<(u64, Values)>, SyncError> {
        if let Some(id) = self.store.known_contact(&caller.keys()).await? {
            match self.hubspot.get(ObjectType::Contacts, &id.to_string(), None, &CONTACT_READ).await? {
                // A merged-away id answers with the survivor: remember that one.
                Some(o) => return Ok(values(o)),
                None => self.store.forget_contact(id).await?,
            }
        }
        // Email alone: read it directly (exact, no index lag, no search budget).
        if let (Some(email), None) = (&caller.email, &caller.phone) {
            return Ok(self
                .hubspot
                .get(ObjectType::Contacts, email.as_str(), Some("email"), &CONTACT_READ)
                .await?
                .and_then(values));
        }
        // A phone (and maybe an email): one search covers every place the caller may be,
        // in any format. If the index lags behind a contact made moments ago, the create
        // that follows meets a 409 that names it.
        if let Some(phone) = &caller.phone {
            let values_in = phone.search_values();
            let mut search = Search::new()
                .group(vec![Filter::one_of("phone", values_in.clone())])
                .group(vec![Filter::one_of("mobilephone", values_in)])
                .group(vec![Filter::eq(plan::PROP_PHONE_E164, phone.as_str())]);
            if let Some(email) = &caller.email {
                search = search.group(vec![Filter::eq("email", email.as_str())]);
            }
            let page = self
                .hubspot
                .search(ObjectType::Contacts, &search.properties(&CONTACT_READ).sort("createdate", false).limit(10))
                .await?;
            // The same email wins over a shared number; otherwise the oldest, which dedup keeps.
            let by_email = caller
                .email
                .as_ref()
                .and_then(|e| page.results.iter().position(|o| o.prop("email") == Some(e.as_str())));
            let pick = by_email.unwrap_or(0);
            if let Some(o) = page.results.into_iter().nth(pick) {
                return Ok(values(o));
            }
        }
        Ok(None)
    }

    /// Creates or updates the contact found by [`Syncer::resolve`] (or none); returns its id.
    async fn ensure_contact(&self, known: Option<(u64, Values)>, wish: &ContactWish) -> Result<u64, SyncError> {
        let id = match known {
            Some((id, current)) => {
                self.update_contact(id, &current, wish).await?;
                id
            }
            None => {
                match self.hubspot.create(ObjectType::Contacts, &ObjectInput::new(plan::new_contact(wish)), None).await
                {
                    Ok(o) => o
                        .id_u64()
                        .ok_or_else(|| SyncError::Permanent("HubSpot returned a contact without an id".into()))?,
                    // Someone (or search's index lag) beat us to it: update the one that exists.
                    Err(HubSpotError::Conflict { existing_id: Some(id), .. }) => {
                        let current = self
                            .hubspot
                            .get(ObjectType::Contacts, &id.to_string(), None, &CONTACT_READ)
                            .await?
                            .and_then(values)
                            .map(|(_, v)| v)
                            .unwrap_or_default();
                        self.update_contact(id, &current, wish).await?;
                        id
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        self.store.remember_contact(&wish.caller.keys(), id).await?;
        Ok(id)
    }

    async fn update_contact(
        &self,
        id: u64,
        current: &HashMap<String, String>,
        wish: &ContactWish,
    ) -> Result<(), SyncError> {
        let changes = plan::contact_update(current, wish);
        if changes.is_empty() {
            return Ok(());
        }
        match self.hubspot.update(ObjectType::Contacts, id, &changes).await {
            Ok(_) => Ok(()),
            Err(HubSpotError::NotFound) => {
                self.store.forget_contact(id).await?;
                Err(SyncError::Transient(format!("contact {id} disappeared from HubSpot; it will be resolved again")))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn sync_call(&self, c: &CallEvent, retrying: bool) -> Result<Landed, SyncError> {
        let known = self.resolve(&c.caller).await?;
        let last = match &known {
            Some((id, _)) => self.store.last_call_at(*id).await?,
            None => None,
        };
        let logged = self.store.activity(c.source.as_str(), &c.call_id, "call").await?;
        let stage = c.stage as i64;
        // An event about an earlier stage than what is logged (a late `call_ended` after
        // `call_analyzed`) changes nothing: the later stage already said more.
        let superseded = logged.as_ref().is_some_and(|a| a.stage > stage);
        let newest = !superseded && !is_older_than_last_call(c.occurred_at_ms, last);
        let wish = ContactWish::for_call(c, newest);
        let contact_id = self.ensure_contact(known, &wish).await?;
        let key = call_identity(c);
        let props = plan::call_properties(c);
        let (activity_id, created) = match logged {
            Some(a) if superseded => (a.hubspot_id, false),
            Some(a) => {
                // One call, one activity: a later event about it updates what was logged.
                if a.via == "v3" {
                    self.hubspot.update(ObjectType::Calls, a.hubspot_id, &props).await?;
                } else {
                    self.hubspot.update_call_engagement(a.hubspot_id, engagement_metadata(&props)).await?;
                }
                let updated = Activity { stage, ..a.clone() };
                self.store.record_activity(c.source.as_str(), &c.call_id, "call", &updated, c.occurred_at_ms).await?;
                (a.hubspot_id, false)
            }
            None => {
                let caps = self.hubspot.capabilities().await?;
                let (id, via) = if caps.calls_api {
                    let identity = Identity {
                        property: "hs_call_external_id".into(),
                        value: key.clone(),
                        contact_id: Some(contact_id),
                    };
                    let existing = if retrying {
                        self.hubspot.find_by_identity(ObjectType::Calls, &identity).await?
                    } else {
                        None
                    };
                    let id = match existing {
                        Some(o) => o.id_u64(),
                        None => {
                            let input = ObjectInput::new(props.clone())
                                .associate(contact_id, ObjectType::Calls.to_contact_type_id());
                            self.hubspot.create(ObjectType::Calls, &input, Some(&identity)).await?.id_u64()
                        }
                    };
                    (id.ok_or_else(|| SyncError::Permanent("HubSpot returned a call without an id".into()))?, "v3")
                } else {
                    let existing = if retrying { self.find_engagement(contact_id, &key).await? } else { None };
                    let id = match existing {
                        Some(id) => id,
                        None => self.hubspot.create_call_engagement(&engagement(c, contact_id, &props, &key)).await?,
                    };
                    (id, "v1")
                };
                let activity = Activity { hubspot_id: id, contact_id: Some(contact_id), via: via.into(), stage };
                self.store.record_activity(c.source.as_str(), &c.call_id, "call", &activity, c.occurred_at_ms).await?;
                (id, true)
            }
        };
        if newest {
            self.store.set_last_call_at(contact_id, c.occurred_at_ms).await?;
        }
        Ok(Landed { contact_id, activity_id: Some(activity_id), created_activity: created })
    }

    async fn find_engagement(&self, contact_id: u64, key: &str) -> Result<Option<u64>, SyncError> {
        let all = self.hubspot.contact_engagements(contact_id).await?;
        Ok(all
            .iter()
            .find(|e| e.pointer("/metadata/externalId").and_then(Value::as_str) == Some(key))
            .and_then(|e| e.pointer("/engagement/id").and_then(Value::as_u64)))
    }

    async fn sync_booking(&self, b: &BookingEvent, retrying: bool) -> Result<Landed, SyncError> {
        let wish = ContactWish::for_booking(b);
        let contact_id = self.ensure_contact(self.resolve(&b.caller).await?, &wish).await?;
        let Some(props) = plan::meeting_properties(b) else {
            return Ok(Landed { contact_id, activity_id: None, created_activity: false });
        };
        if let Some(a) = self.store.activity("generic", &b.booking_key, "meeting").await? {
            return Ok(Landed { contact_id, activity_id: Some(a.hubspot_id), created_activity: false });
        }
        let identity = Identity {
            property: PROP_MEETING_EVENT_ID.into(),
            value: b.booking_key.clone(),
            contact_id: Some(contact_id),
        };
        let existing =
            if retrying { self.hubspot.find_by_identity(ObjectType::Meetings, &identity).await? } else { None };
        let meeting = match existing {
            Some(o) => o,
            None => {
                let input = ObjectInput::new(props).associate(contact_id, ObjectType::Meetings.to_contact_type_id());
                self.hubspot.create(ObjectType::Meetings, &input, Some(&identity)).await?
            }
        };
        let id =
            meeting.id_u64().ok_or_else(|| SyncError::Permanent("HubSpot returned a meeting without an id".into()))?;
        let activity = Activity { hubspot_id: id, contact_id: Some(contact_id), via: "v3".into(), stage: 0 };
        self.store
            .record_activity(
                "generic",
                &b.booking_key,
                "meeting",
                &activity,
                b.meeting_at_ms.unwrap_or(b.received_at_ms),
            )
            .await?;
        Ok(Landed { contact_id, activity_id: Some(id), created_activity: true })
    }
}

/// The v1 engagement for a call, from the same properties as the v3 call.
fn engagement(c: &CallEvent, contact_id: u64, props: &serde_json::Map<String, Value>, key: &str) -> CallEngagement {
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

fn engagement_metadata(props: &serde_json::Map<String, Value>) -> Value {
    let mut m = serde_json::Map::new();
    for (v1, v3) in [("body", "hs_call_body"), ("title", "hs_call_title"), ("recordingUrl", "hs_call_recording_url")] {
        if let Some(v) = props.get(v3) {
            m.insert(v1.into(), v.clone());
        }
    }
    Value::Object(m)
}
