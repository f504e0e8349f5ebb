//! [`HubSpotApi`]: what the rest of callbridge may ask of HubSpot. [`HubSpotClient`] is the
//! implementation; tests point it at the sandbox or put a fake behind the trait.

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::client::{ClientStats, HubSpotClient, Identity};
use crate::error::HubSpotError;
use crate::types::*;

type R<T> = Result<T, HubSpotError>;

#[async_trait]
pub trait HubSpotApi: Send + Sync {
    async fn get(
        &self,
        t: ObjectType,
        id: &str,
        id_property: Option<&str>,
        properties: &[&str],
    ) -> R<Option<CrmObject>>;
    async fn create(&self, t: ObjectType, input: &ObjectInput, identity: Option<&Identity>) -> R<CrmObject>;
    async fn update(&self, t: ObjectType, id: u64, properties: &Map<String, Value>) -> R<CrmObject>;
    async fn batch_read(
        &self,
        t: ObjectType,
        ids: &[String],
        id_property: Option<&str>,
        properties: &[&str],
    ) -> R<BatchOutcome>;
    async fn batch_create(&self, t: ObjectType, inputs: &[ObjectInput]) -> R<BatchOutcome>;
    async fn batch_update(&self, t: ObjectType, inputs: &[UpdateInput]) -> R<BatchOutcome>;
    async fn batch_upsert(&self, t: ObjectType, inputs: &[UpsertInput]) -> R<BatchOutcome>;
    async fn search(&self, t: ObjectType, search: &Search) -> R<SearchPage>;
    async fn merge_contacts(&self, primary: u64, other: u64) -> R<CrmObject>;
    async fn associated_ids(&self, from: ObjectType, id: u64, to: ObjectType) -> R<Vec<u64>>;
    async fn find_by_identity(&self, t: ObjectType, identity: &Identity) -> R<Option<CrmObject>>;
    /// The `t` records associated with any of these contacts, by their value of `property`.
    async fn find_by_identities(
        &self,
        t: ObjectType,
        property: &str,
        contacts: &[u64],
    ) -> R<HashMap<String, CrmObject>>;
    async fn create_call_engagement(&self, e: &CallEngagement) -> R<u64>;
    async fn update_call_engagement(&self, id: u64, metadata: Value) -> R<()>;
    async fn contact_engagements(&self, contact: u64) -> R<Vec<Value>>;
    async fn property_names(&self, t: ObjectType) -> R<Vec<String>>;
    async fn group_names(&self, t: ObjectType) -> R<Vec<String>>;
    async fn create_group(&self, t: ObjectType, name: &str, label: &str) -> R<bool>;
    async fn create_property(&self, t: ObjectType, spec: &PropertySpec) -> R<bool>;
    async fn availability(&self, slug: &str, timezone: &str, month_offset: u32, duration_ms: i64) -> R<Vec<Slot>>;
    async fn book(&self, request: &BookRequest) -> R<Booking>;
    /// What the token may do (cached after the first probe).
    async fn capabilities(&self) -> R<Capabilities>;
    /// Asks HubSpot again what the token may do.
    async fn probe(&self) -> R<Capabilities>;
    fn stats(&self) -> ClientStats;
}

#[async_trait]
impl HubSpotApi for HubSpotClient {
    async fn get(
        &self,
        t: ObjectType,
        id: &str,
        id_property: Option<&str>,
        properties: &[&str],
    ) -> R<Option<CrmObject>> {
        HubSpotClient::get(self, t, id, id_property, properties).await
    }
    async fn create(&self, t: ObjectType, input: &ObjectInput, identity: Option<&Identity>) -> R<CrmObject> {
        HubSpotClient::create(self, t, input, identity).await
    }
    async fn update(&self, t: ObjectType, id: u64, properties: &Map<String, Value>) -> R<CrmObject> {
        HubSpotClient::update(self, t, id, properties).await
    }
    async fn batch_read(
        &self,
        t: ObjectType,
        ids: &[String],
        id_property: Option<&str>,
        properties: &[&str],
    ) -> R<BatchOutcome> {
        HubSpotClient::batch_read(self, t, ids, id_property, properties).await
    }
    async fn batch_create(&self, t: ObjectType, inputs: &[ObjectInput]) -> R<BatchOutcome> {
        HubSpotClient::batch_create(self, t, inputs).await
    }
    async fn batch_update(&self, t: ObjectType, inputs: &[UpdateInput]) -> R<BatchOutcome> {
        HubSpotClient::batch_update(self, t, inputs).await
    }
    async fn batch_upsert(&self, t: ObjectType, inputs: &[UpsertInput]) -> R<BatchOutcome> {
        HubSpotClient::batch_upsert(self, t, inputs).await
    }
    async fn search(&self, t: ObjectType, search: &Search) -> R<SearchPage> {
        HubSpotClient::search(self, t, search).await
    }
    async fn merge_contacts(&self, primary: u64, other: u64) -> R<CrmObject> {
        HubSpotClient::merge_contacts(self, primary, other).await
    }
    async fn associated_ids(&self, from: ObjectType, id: u64, to: ObjectType) -> R<Vec<u64>> {
        HubSpotClient::associated_ids(self, from, id, to).await
    }
    async fn find_by_identities(
        &self,
        t: ObjectType,
        property: &str,
        contacts: &[u64],
    ) -> R<HashMap<String, CrmObject>> {
        HubSpotClient::find_by_identities(self, t, property, contacts).await
    }
    async fn find_by_identity(&self, t: ObjectType, identity: &Identity) -> R<Option<CrmObject>> {
        HubSpotClient::find_by_identity(self, t, identity).await
    }
    async fn create_call_engagement(&self, e: &CallEngagement) -> R<u64> {
        HubSpotClient::create_call_engagement(self, e).await
    }
    async fn update_call_engagement(&self, id: u64, metadata: Value) -> R<()> {
        HubSpotClient::update_call_engagement(self, id, metadata).await
    }
    async fn contact_engagements(&self, contact: u64) -> R<Vec<Value>> {
        HubSpotClient::contact_engagements(self, contact).await
    }
    async fn property_names(&self, t: ObjectType) -> R<Vec<String>> {
        HubSpotClient::property_names(self, t).await
    }
    async fn group_names(&self, t: ObjectType) -> R<Vec<String>> {
        HubSpotClient::group_names(self, t).await
    }
    async fn create_group(&self, t: ObjectType, name: &str, label: &str) -> R<bool> {
        HubSpotClient::create_group(self, t, name, label).await
    }
    async fn create_property(&self, t: ObjectType, spec: &PropertySpec) -> R<bool> {
        HubSpotClient::create_property(self, t, spec).await
    }
    async fn availability(&self, slug: &str, timezone: &str, month_offset: u32, duration_ms: i64) -> R<Vec<Slot>> {
        HubSpotClient::availability(self, slug, timezone, month_offset, duration_ms).await
    }
    async fn book(&self, request: &BookRequest) -> R<Booking> {
        HubSpotClient::book(self, request).await
    }
    async fn capabilities(&self) -> R<Capabilities> {
        HubSpotClient::capabilities(self).await
    }
    async fn probe(&self) -> R<Capabilities> {
        HubSpotClient::probe(self).await
    }
    fn stats(&self) -> ClientStats {
        HubSpotClient::stats(self)
    }
}
