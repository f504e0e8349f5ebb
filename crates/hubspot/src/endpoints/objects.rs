//! CRM objects (contacts, calls, meetings, …): read, create, update, the batch endpoints and
//! search. A create with an [`Identity`] is looked up before it is sent again after an
//! unknown outcome; a batch create is never re-sent blindly.

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::error::HubSpotError;
use crate::transport::{Call, HubSpotClient, Identity, decode};
use crate::types::*;

impl HubSpotClient {
    pub async fn get(
        &self,
        t: ObjectType,
        id: &str,
        id_property: Option<&str>,
        properties: &[&str],
    ) -> Result<Option<CrmObject>, HubSpotError> {
        let mut call = Call::new(Method::GET, self.paths.object(t, id));
        if !properties.is_empty() {
            call = call.query("properties", properties.join(","));
        }
        if let Some(p) = id_property {
            call = call.query("idProperty", p);
        }
        match self.execute(call).await {
            Ok(v) => decode(v).map(Some),
            Err(HubSpotError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a record. With an `identity`, a retry after an unknown outcome first looks
    /// the record up, so the create happens once.
    pub async fn create(
        &self,
        t: ObjectType,
        input: &ObjectInput,
        identity: Option<&Identity>,
    ) -> Result<CrmObject, HubSpotError> {
        let mut call = Call::new(Method::POST, self.paths.objects(t)).body(input.to_json());
        call.identity = identity.map(|i| (t, i));
        decode(self.execute(call).await?)
    }

    pub async fn update(
        &self,
        t: ObjectType,
        id: u64,
        properties: &Map<String, Value>,
    ) -> Result<CrmObject, HubSpotError> {
        let call =
            Call::new(Method::PATCH, self.paths.object(t, &id.to_string())).body(json!({"properties": properties}));
        decode(self.execute(call).await?)
    }

    pub async fn batch_read(
        &self,
        t: ObjectType,
        ids: &[String],
        id_property: Option<&str>,
        properties: &[&str],
    ) -> Result<BatchOutcome, HubSpotError> {
        let mut body =
            json!({"inputs": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(), "properties": properties});
        if let Some(p) = id_property {
            body["idProperty"] = json!(p);
        }
        let v = self
            .execute(Call::new(Method::POST, format!("{}/batch/read", self.paths.objects(t))).body(body).reading())
            .await?;
        BatchOutcome::from_json(&v).map_err(|e| HubSpotError::Decode(e.to_string()))
    }

    /// Creates up to 100 records. It is never re-sent after an attempt whose outcome is
    /// unknown (a timeout, a 5xx): that error comes back, and the caller looks up what landed
    /// before trying again.
    pub async fn batch_create(&self, t: ObjectType, inputs: &[ObjectInput]) -> Result<BatchOutcome, HubSpotError> {
        let body = json!({"inputs": inputs.iter().map(ObjectInput::to_json).collect::<Vec<_>>()});
        let mut call = Call::new(Method::POST, format!("{}/batch/create", self.paths.objects(t))).body(body);
        call.once = true;
        let v = self.execute(call).await?;
        let mut out = BatchOutcome::from_json(&v).map_err(|e| HubSpotError::Decode(e.to_string()))?;
        out.reconcile(&inputs.iter().filter_map(|i| i.trace_id.clone()).collect::<Vec<_>>());
        Ok(out)
    }

    pub async fn batch_update(&self, t: ObjectType, inputs: &[UpdateInput]) -> Result<BatchOutcome, HubSpotError> {
        let body = json!({"inputs": inputs.iter().map(|i| {
            let mut v = json!({"id": i.id.to_string(), "properties": i.properties});
            if let Some(t) = &i.trace_id { v["objectWriteTraceId"] = json!(t); }
            v
        }).collect::<Vec<_>>()});
        let v =
            self.execute(Call::new(Method::POST, format!("{}/batch/update", self.paths.objects(t))).body(body)).await?;
        let mut out = BatchOutcome::from_json(&v).map_err(|e| HubSpotError::Decode(e.to_string()))?;
        out.reconcile(&inputs.iter().filter_map(|i| i.trace_id.clone()).collect::<Vec<_>>());
        Ok(out)
    }

    pub async fn batch_upsert(&self, t: ObjectType, inputs: &[UpsertInput]) -> Result<BatchOutcome, HubSpotError> {
        let body = json!({"inputs": inputs.iter().map(|i| {
            let mut v = json!({"id": i.id, "idProperty": i.id_property, "properties": i.properties});
            if let Some(t) = &i.trace_id { v["objectWriteTraceId"] = json!(t); }
            v
        }).collect::<Vec<_>>()});
        let v =
            self.execute(Call::new(Method::POST, format!("{}/batch/upsert", self.paths.objects(t))).body(body)).await?;
        BatchOutcome::from_json(&v).map_err(|e| HubSpotError::Decode(e.to_string()))
    }

    pub async fn search(&self, t: ObjectType, search: &Search) -> Result<SearchPage, HubSpotError> {
        search.validate().map_err(|e| HubSpotError::Validation { message: e.to_string(), properties: Vec::new() })?;
        let mut call = Call::new(Method::POST, format!("{}/search", self.paths.objects(t))).body(search.to_json());
        call.search = true;
        let v = self.execute(call).await?;
        let results: Vec<CrmObject> = serde_json::from_value(v.get("results").cloned().unwrap_or(json!([])))
            .map_err(|e| HubSpotError::Decode(e.to_string()))?;
        Ok(SearchPage {
            total: v.get("total").and_then(Value::as_u64).unwrap_or(0),
            results,
            next_after: v.pointer("/paging/next/after").and_then(Value::as_str).map(String::from),
        })
    }

    /// One page of every record of a type (the list endpoint: no 10,000-result ceiling, unlike
    /// search), 100 at a time, from `after`.
    pub async fn list_page(
        &self,
        t: ObjectType,
        properties: &[&str],
        after: Option<&str>,
    ) -> Result<SearchPage, HubSpotError> {
        let mut call = Call::new(Method::GET, self.paths.objects(t)).query("limit", "100");
        if !properties.is_empty() {
            call = call.query("properties", properties.join(","));
        }
        if let Some(a) = after {
            call = call.query("after", a);
        }
        let v = self.execute(call).await?;
        let results: Vec<CrmObject> = serde_json::from_value(v.get("results").cloned().unwrap_or(json!([])))
            .map_err(|e| HubSpotError::Decode(e.to_string()))?;
        Ok(SearchPage {
            total: results.len() as u64,
            results,
            next_after: v.pointer("/paging/next/after").and_then(Value::as_str).map(String::from),
        })
    }

    /// Merges contact `other` into `primary` (irreversible; HubSpot's 250-merge cap answers
    /// [`HubSpotError::MergeLimit`]). Never retried blindly: a merge whose answer was lost is
    /// seen in the next read of the contacts.
    pub async fn merge_contacts(&self, primary: u64, other: u64) -> Result<CrmObject, HubSpotError> {
        let body = json!({"primaryObjectId": primary.to_string(), "objectIdToMerge": other.to_string()});
        let mut call =
            Call::new(Method::POST, format!("{}/merge", self.paths.objects(ObjectType::Contacts))).body(body);
        call.once = true;
        decode(self.execute(call).await?)
    }
}
