//! v1 engagements: how calls are logged where the token lacks the v3 Calls API.

use reqwest::Method;
use serde_json::{Value, json};

use crate::error::HubSpotError;
use crate::transport::{Call, HubSpotClient};
use crate::types::*;

impl HubSpotClient {
    pub async fn create_call_engagement(&self, e: &CallEngagement) -> Result<u64, HubSpotError> {
        let mut metadata = json!({"body": e.body, "status": e.status, "externalId": e.external_id});
        for (k, v) in [
            ("title", &e.title),
            ("fromNumber", &e.from_number),
            ("toNumber", &e.to_number),
            ("recordingUrl", &e.recording_url),
            ("disposition", &e.disposition),
        ] {
            if let Some(v) = v {
                metadata[k] = json!(v);
            }
        }
        if let Some(d) = e.duration_ms {
            metadata["durationMilliseconds"] = json!(d);
        }
        let body = json!({
            "engagement": {"active": true, "type": "CALL", "timestamp": e.timestamp_ms, "ownerId": e.owner_id},
            "associations": {"contactIds": e.contact_ids, "companyIds": [], "dealIds": [], "ownerIds": [], "ticketIds": []},
            "attachments": [],
            "metadata": metadata,
        });
        let v = self.execute(Call::new(Method::POST, self.paths.engagements()).body(body)).await?;
        v.pointer("/engagement/id")
            .and_then(Value::as_u64)
            .ok_or_else(|| HubSpotError::Decode("engagement without id".into()))
    }

    /// A contact's engagements (raw v1 objects), all pages.
    pub async fn contact_engagements(&self, contact: u64) -> Result<Vec<Value>, HubSpotError> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        loop {
            let url = format!("{}/associated/CONTACT/{contact}/paged", self.paths.engagements());
            let v = self
                .execute(Call::new(Method::GET, url).query("limit", "100").query("offset", offset.to_string()))
                .await?;
            out.extend(v.get("results").and_then(Value::as_array).cloned().unwrap_or_default());
            if v.get("hasMore").and_then(Value::as_bool) != Some(true) {
                return Ok(out);
            }
            offset = v.get("offset").and_then(Value::as_u64).unwrap_or(offset);
        }
    }

    pub async fn update_call_engagement(&self, id: u64, metadata: Value) -> Result<(), HubSpotError> {
        let url = format!("{}/{id}", self.paths.engagements());
        self.execute(Call::new(Method::PATCH, url).body(json!({"metadata": metadata}))).await.map(|_| ())
    }
}
