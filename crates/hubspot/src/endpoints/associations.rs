//! Associations (v4) and finding what an earlier attempt made through them: exact where
//! search would lag writes.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{Value, json};

use crate::error::HubSpotError;
use crate::transport::{Call, HubSpotClient, Identity};
use crate::types::*;

impl HubSpotClient {
    /// Ids of `to` records associated with each of up to 1,000 records (v4 batch read);
    /// a record that does not exist is absent from the map.
    pub async fn batch_associated_ids(
        &self,
        from: ObjectType,
        ids: &[u64],
        to: ObjectType,
    ) -> Result<HashMap<u64, Vec<u64>>, HubSpotError> {
        let mut out = HashMap::new();
        let number = |v: &Value| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
        for chunk in ids.chunks(1000) {
            let body = json!({"inputs": chunk.iter().map(|id| json!({"id": id.to_string()})).collect::<Vec<_>>()});
            let url = format!("{}/crm/v4/associations/{}/{}/batch/read", self.paths.base(), from.as_str(), to.as_str());
            let v = self.execute(Call::new(Method::POST, url).body(body).reading()).await?;
            for r in v.get("results").and_then(Value::as_array).into_iter().flatten() {
                let Some(from_id) = r.pointer("/from/id").and_then(number) else { continue };
                let to_ids = r
                    .get("to")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|t| t.get("toObjectId").and_then(number)).collect())
                    .unwrap_or_default();
                out.insert(from_id, to_ids);
            }
            for id in chunk {
                out.entry(*id).or_insert_with(Vec::new);
            }
        }
        Ok(out)
    }

    /// Finds an activity created earlier by the property that names it.
    pub async fn find_by_identity(
        &self,
        t: ObjectType,
        identity: &Identity,
    ) -> Result<Option<CrmObject>, HubSpotError> {
        if t == ObjectType::Contacts {
            // Contacts are keyed by email or a unique property: read it directly.
            return self.get(t, &identity.value, Some(&identity.property), &[]).await;
        }
        if let Some(contact) = identity.contact_id {
            return Ok(self.find_by_identities(t, &identity.property, &[contact]).await?.remove(&identity.value));
        }
        let search = Search::new()
            .group(vec![Filter::eq(&identity.property, identity.value.clone())])
            .limit(1)
            .properties(&[identity.property.as_str()]);
        Ok(self.search(t, &search).await?.results.into_iter().next())
    }

    /// The `t` records associated with any of these contacts, by their value of `property`
    /// (the id callbridge stamps on activities): exact where search would lag writes. One
    /// association read for up to 1,000 contacts, then a batch read per 100 records.
    pub async fn find_by_identities(
        &self,
        t: ObjectType,
        property: &str,
        contacts: &[u64],
    ) -> Result<HashMap<String, CrmObject>, HubSpotError> {
        let linked = self.batch_associated_ids(ObjectType::Contacts, contacts, t).await?;
        let ids: Vec<String> = linked.values().flatten().map(u64::to_string).collect();
        let mut found = HashMap::new();
        for chunk in ids.chunks(100) {
            for r in self.batch_read(t, chunk, None, &[property]).await?.results {
                if let Some(value) = r.prop(property) {
                    found.insert(value.to_string(), r);
                }
            }
        }
        Ok(found)
    }
}
