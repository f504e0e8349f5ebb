//! The OpenAPI 3.1 document of callbridge's own HTTP API, at `GET /openapi.json`: derived by
//! `utoipa` from the handlers' annotations and their answer types ([`ErrorBody`],
//! [`Acknowledged`], the store's rows), so a change to the API is a change here — and a diff
//! in the snapshot test below.

use axum::Json;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, FieldProblem};
use super::webhooks::Acknowledged;

#[derive(OpenApi)]
#[openapi(
    info(title = "callbridge", description = "Lands voice-AI calls and meeting bookings in HubSpot CRM."),
    paths(
        super::health,
        openapi_json,
        super::webhooks::webhook,
        super::hubspot::receive,
        super::tools::vapi,
        super::tools::retell,
        super::tools::elevenlabs,
        super::oauth::login,
        super::oauth::callback,
        super::admin::events,
        super::admin::event,
        super::admin::replay,
        super::admin::probe,
        super::admin::setup_properties,
        super::admin::portals,
        super::admin::sync_now,
        super::admin::token_status,
        super::admin::token_refresh,
        super::admin::dedup_start,
        super::admin::dedup_get,
        crate::meters::scrape,
    ),
    components(schemas(ErrorBody, FieldProblem, Acknowledged, callbridge_store::JobCounts, callbridge_store::AttemptRow)),
    modifiers(&AdminToken),
    tags(
        (name = "webhooks", description = "Deliveries from the voice platforms, booking tools and HubSpot"),
        (name = "tools", description = "Mid-call tools an agent calls"),
        (name = "install", description = "Installing a portal by OAuth"),
        (name = "admin", description = "For operators: the admin token as a Bearer credential"),
        (name = "operations", description = "Health and this document"),
    )
)]
pub struct ApiDoc;

/// The admin token, sent as `Authorization: Bearer`.
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_string();
        doc
    })
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "this document", body = Object)))]
pub async fn openapi_json() -> Response {
    Json(document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_any_change_to_the_api_is_a_visible_diff() {
        let doc = serde_json::to_value(document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
        let mut doc = doc;
        // The version changes with every release; the API does not.
        doc["info"]["version"] = serde_json::json!("(version)");
        insta::assert_json_snapshot!("openapi", doc);
    }
}
