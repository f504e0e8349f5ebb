//! Properties and property groups (callbridge's own are created by `setup-properties`).

use reqwest::Method;
use serde_json::{Value, json};

use crate::error::HubSpotError;
use crate::transport::{Call, HubSpotClient};
use crate::types::*;

impl HubSpotClient {
    pub async fn property_names(&self, t: ObjectType) -> Result<Vec<String>, HubSpotError> {
        let v = self.execute(Call::new(Method::GET, self.paths.properties(t))).await?;
        Ok(v.get("results")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|p| p.get("name").and_then(Value::as_str).map(String::from)).collect())
            .unwrap_or_default())
    }

    /// The option values of an enumeration property; `None` when the property does not exist.
    pub async fn property_options(&self, t: ObjectType, name: &str) -> Result<Option<Vec<String>>, HubSpotError> {
        match self.execute(Call::new(Method::GET, format!("{}/{name}", self.paths.properties(t)))).await {
            Ok(v) => Ok(Some(
                v.get("options")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter().filter_map(|o| o.get("value").and_then(Value::as_str).map(String::from)).collect()
                    })
                    .unwrap_or_default(),
            )),
            Err(HubSpotError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces an enumeration property's options (HubSpot's PATCH replaces the whole list).
    pub async fn update_property_options(
        &self,
        t: ObjectType,
        name: &str,
        options: &[PropertyOption],
    ) -> Result<(), HubSpotError> {
        let options = serde_json::to_value(options).map_err(|e| HubSpotError::Decode(e.to_string()))?;
        let call =
            Call::new(Method::PATCH, format!("{}/{name}", self.paths.properties(t))).body(json!({"options": options}));
        self.execute(call).await.map(|_| ())
    }

    /// Whether `id` is an owner of the account (`GET /crm/v3/owners/{id}`).
    pub async fn owner_exists(&self, id: &str) -> Result<bool, HubSpotError> {
        match self.execute(Call::new(Method::GET, format!("{}/{id}", self.paths.owners()))).await {
            Ok(_) => Ok(true),
            Err(HubSpotError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn group_names(&self, t: ObjectType) -> Result<Vec<String>, HubSpotError> {
        let v = self.execute(Call::new(Method::GET, format!("{}/groups", self.paths.properties(t)))).await?;
        Ok(v.get("results")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|p| p.get("name").and_then(Value::as_str).map(String::from)).collect())
            .unwrap_or_default())
    }

    /// Creates a property group; `Ok(false)` when it already exists.
    pub async fn create_group(&self, t: ObjectType, name: &str, label: &str) -> Result<bool, HubSpotError> {
        let call = Call::new(Method::POST, format!("{}/groups", self.paths.properties(t)))
            .body(json!({"name": name, "label": label, "displayOrder": -1}));
        match self.execute(call).await {
            Ok(_) => Ok(true),
            Err(HubSpotError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates a property; `Ok(false)` when it already exists.
    pub async fn create_property(&self, t: ObjectType, spec: &PropertySpec) -> Result<bool, HubSpotError> {
        let body = serde_json::to_value(spec).map_err(|e| HubSpotError::Decode(e.to_string()))?;
        match self.execute(Call::new(Method::POST, self.paths.properties(t)).body(body)).await {
            Ok(_) => Ok(true),
            Err(HubSpotError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
