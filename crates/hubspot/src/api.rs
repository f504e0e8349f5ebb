//! [`HubSpotApi`]: what the rest of callbridge may ask of HubSpot. [`HubSpotClient`] is the
//! implementation; tests point it at the sandbox or put a fake behind the trait.

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::Value;

use crate::auth::{OAuthStatus, OAuthTokens};
use crate::endpoints::scheduler::{LinkAvailability, LinkBooked, LinkBooking};
use crate::error::HubSpotError;
use crate::transport::{ClientStats, HubSpotClient};
use crate::types::*;

type R<T> = Result<T, HubSpotError>;

#[async_trait]
pub trait HubSpotApi: Send + Sync {
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
    /// One page (100) of every record of a type, from `after`.
    async fn list_page(&self, t: ObjectType, properties: &[&str], after: Option<&str>) -> R<SearchPage>;
    /// Merges contact `other` into `primary`.
    async fn merge_contacts(&self, primary: u64, other: u64) -> R<CrmObject>;
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
    /// The option values of an enumeration property; `None` when it does not exist.
    async fn property_options(&self, t: ObjectType, name: &str) -> R<Option<Vec<String>>>;
    /// Replaces an enumeration property's options.
    async fn update_property_options(&self, t: ObjectType, name: &str, options: &[PropertyOption]) -> R<()>;
    /// Whether `id` is an owner of the account.
    async fn owner_exists(&self, id: &str) -> R<bool>;
    async fn group_names(&self, t: ObjectType) -> R<Vec<String>>;
    async fn create_group(&self, t: ObjectType, name: &str, label: &str) -> R<bool>;
    async fn create_property(&self, t: ObjectType, spec: &PropertySpec) -> R<bool>;
    /// The open times of a scheduler meeting link, a month from `month_offset` months ahead.
    async fn link_availability(&self, slug: &str, time_zone: &str, month_offset: u32) -> R<LinkAvailability>;
    /// Books through a scheduler meeting link (HubSpot matches or creates the contact).
    async fn book_link(&self, booking: &LinkBooking) -> R<LinkBooked>;
    /// What the token may do (cached after the first probe).
    async fn capabilities(&self) -> R<Capabilities>;
    /// Asks HubSpot again what the token may do.
    async fn probe(&self) -> R<Capabilities>;
    fn stats(&self) -> ClientStats;
    /// Installs the portal from an OAuth authorization code: exchanges it, keeps the tokens.
    async fn install_oauth(&self, _code: &str) -> R<OAuthTokens> {
        Err(HubSpotError::Unauthorized { category: "this portal uses a private-app token, not OAuth".into() })
    }
    /// Where an OAuth portal's connection stands (`None`: not OAuth).
    async fn oauth_status(&self) -> Option<OAuthStatus> {
        None
    }
    /// Whether requests wait for the portal's rate budget now (work is piling up).
    fn backlogged(&self) -> bool;
    /// While the circuit breaker holds requests back (HubSpot keeps failing): how long until
    /// the next probe may go (zero: now). Work for this portal can wait that long unclaimed.
    fn paused_for(&self) -> Option<std::time::Duration> {
        None
    }
    /// The daily requests left and the daily limit, once HubSpot's headers have stated them.
    fn daily(&self) -> Option<(u64, u64)> {
        None
    }
    /// What is left of each budget window now (`ten_second`, `search`, `daily`).
    fn budget_remaining(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

#[async_trait]
impl HubSpotApi for HubSpotClient {
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
    async fn list_page(&self, t: ObjectType, properties: &[&str], after: Option<&str>) -> R<SearchPage> {
        HubSpotClient::list_page(self, t, properties, after).await
    }
    async fn merge_contacts(&self, primary: u64, other: u64) -> R<CrmObject> {
        HubSpotClient::merge_contacts(self, primary, other).await
    }
    async fn find_by_identities(
        &self,
        t: ObjectType,
        property: &str,
        contacts: &[u64],
    ) -> R<HashMap<String, CrmObject>> {
        HubSpotClient::find_by_identities(self, t, property, contacts).await
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
    async fn property_options(&self, t: ObjectType, name: &str) -> R<Option<Vec<String>>> {
        HubSpotClient::property_options(self, t, name).await
    }
    async fn update_property_options(&self, t: ObjectType, name: &str, options: &[PropertyOption]) -> R<()> {
        HubSpotClient::update_property_options(self, t, name, options).await
    }
    async fn owner_exists(&self, id: &str) -> R<bool> {
        HubSpotClient::owner_exists(self, id).await
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
    async fn link_availability(&self, slug: &str, time_zone: &str, month_offset: u32) -> R<LinkAvailability> {
        HubSpotClient::link_availability(self, slug, time_zone, month_offset).await
    }
    async fn book_link(&self, booking: &LinkBooking) -> R<LinkBooked> {
        HubSpotClient::book_link(self, booking).await
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
    async fn install_oauth(&self, code: &str) -> R<OAuthTokens> {
        let app = self.tokens().oauth_app().cloned().ok_or_else(|| HubSpotError::Unauthorized {
            category: "this portal uses a private-app token, not OAuth".into(),
        })?;
        self.exchange_code(&app, code).await
    }
    async fn oauth_status(&self) -> Option<OAuthStatus> {
        self.tokens().status().await
    }
    fn budget_remaining(&self) -> Vec<(&'static str, u64)> {
        self.budget().remaining()
    }
    fn backlogged(&self) -> bool {
        self.budget().backlogged()
    }
    fn paused_for(&self) -> Option<std::time::Duration> {
        self.breaker().paused_for()
    }
    fn daily(&self) -> Option<(u64, u64)> {
        self.budget().daily()
    }
}
