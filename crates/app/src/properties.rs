//! callbridge's own HubSpot properties: a `callbridge` group on contacts and meetings and the
//! fields where a rep sees the caller's last call (summary, outcome, sentiment, intent, next
//! steps). Created idempotently: what exists is left alone.

use callbridge_domain::plan::*;
use callbridge_hubspot::{HubSpotApi, HubSpotError, ObjectType, PropertyOption, PropertySpec};
use serde::Serialize;

fn text(name: &str, label: &str, description: &str) -> PropertySpec {
    PropertySpec {
        name: name.into(),
        label: label.into(),
        prop_type: "string".into(),
        field_type: "text".into(),
        group_name: GROUP.into(),
        description: description.into(),
        options: Vec::new(),
        has_unique_value: false,
    }
}

fn choice(name: &str, label: &str, description: &str, values: &[&str]) -> PropertySpec {
    PropertySpec {
        prop_type: "enumeration".into(),
        field_type: "select".into(),
        options: values
            .iter()
            .enumerate()
            .map(|(i, v)| PropertyOption {
                label: capitalise(v),
                value: v.to_string(),
                display_order: i as i64,
                hidden: false,
            })
            .collect(),
        ..text(name, label, description)
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// Every property callbridge writes, by object type.
pub fn definitions() -> Vec<(ObjectType, PropertySpec)> {
    let c = ObjectType::Contacts;
    vec![
        (c, text(PROP_LEAD_SOURCE, "Lead source (callbridge)", "Where the caller first came from")),
        (
            c,
            PropertySpec {
                prop_type: "datetime".into(),
                field_type: "date".into(),
                ..text(PROP_LAST_CALL_AT, "Last AI call", "When the caller last spoke to the AI receptionist")
            },
        ),
        (
            c,
            PropertySpec {
                field_type: "textarea".into(),
                ..text(PROP_LAST_CALL_SUMMARY, "Last AI call summary", "What the last call was about")
            },
        ),
        (c, text(PROP_LAST_CALL_OUTCOME, "Last AI call outcome", "How the last call ended")),
        (
            c,
            choice(
                PROP_LAST_SENTIMENT,
                "Last AI call sentiment",
                "How the caller felt on the last call",
                &["positive", "neutral", "negative"],
            ),
        ),
        (
            c,
            choice(
                PROP_LAST_INTENT,
                "Last AI call intent",
                "What the caller wanted",
                &["book", "reschedule", "cancel", "complaint", "inquiry", "urgent", "callback"],
            ),
        ),
        (
            c,
            PropertySpec {
                field_type: "textarea".into(),
                ..text(PROP_NEXT_STEPS, "Next steps (callbridge)", "What happens next, from the last call")
            },
        ),
        (c, text(PROP_SOURCE_PLATFORM, "Voice platform", "The platform of the last call")),
        (
            c,
            PropertySpec {
                has_unique_value: true,
                ..text(PROP_PHONE_E164, "Phone (E.164)", "The caller's number as callbridge normalised it")
            },
        ),
        (
            c,
            PropertySpec {
                prop_type: "datetime".into(),
                field_type: "date".into(),
                ..text(
                    PROP_NEXT_MEETING_AT,
                    "Next meeting (callbridge)",
                    "When the caller's next booked meeting starts",
                )
            },
        ),
        (c, text(PROP_NEXT_MEETING_TYPE, "Next meeting type (callbridge)", "What the caller's next meeting is")),
        (
            c,
            choice(
                PROP_NEXT_MEETING_OUTCOME,
                "Next meeting outcome (callbridge)",
                "Whether the caller's next meeting stands, moved or was called off",
                &["SCHEDULED", "RESCHEDULED", "CANCELED"],
            ),
        ),
        (
            ObjectType::Meetings,
            text(PROP_MEETING_EVENT_ID, "callbridge event", "The booking this meeting was made from"),
        ),
        (ObjectType::Tasks, text(PROP_MEETING_EVENT_ID, "callbridge event", "The call this task was made for")),
    ]
}

#[derive(Debug, Default, Serialize)]
pub struct SetupReport {
    pub created_groups: Vec<String>,
    pub created_properties: Vec<String>,
    pub existing_properties: Vec<String>,
    /// Existing choice properties that gained options.
    pub updated_properties: Vec<String>,
}

/// Adds the options `spec` has and the property lacks, keeping the options it has; true when
/// it changed.
async fn add_missing_options(
    client: &dyn HubSpotApi,
    t: ObjectType,
    spec: &PropertySpec,
) -> Result<bool, HubSpotError> {
    let Some(have) = client.property_options(t, &spec.name).await? else { return Ok(false) };
    if spec.options.iter().all(|o| have.contains(&o.value)) {
        return Ok(false);
    }
    let mut options = spec.options.clone();
    for (i, value) in have.iter().filter(|v| !spec.options.iter().any(|o| &o.value == *v)).enumerate() {
        options.push(PropertyOption {
            label: value.clone(),
            value: value.clone(),
            display_order: (spec.options.len() + i) as i64,
            hidden: false,
        });
    }
    client.update_property_options(t, &spec.name, &options).await?;
    Ok(true)
}

/// What setup did to one property.
enum Outcome {
    Created,
    Existing,
    Updated,
}

/// Creates what is missing and reports what it did. The object types are set up side by side,
/// and each type's properties too once its group exists: a few round trips, not one per
/// property, so a restart is not held up by setup.
pub async fn setup(client: &dyn HubSpotApi) -> Result<SetupReport, HubSpotError> {
    let types = [ObjectType::Contacts, ObjectType::Meetings, ObjectType::Tasks];
    let done = futures_util::future::try_join_all(types.map(|t| setup_type(client, t))).await?;
    let mut report = SetupReport::default();
    for (t, (created_group, properties)) in types.iter().zip(done) {
        if created_group {
            report.created_groups.push(format!("{}.{GROUP}", t.as_str()));
        }
        for (name, outcome) in properties {
            let name = format!("{}.{name}", t.as_str());
            match outcome {
                Outcome::Created => report.created_properties.push(name),
                Outcome::Updated => {
                    report.updated_properties.push(name.clone());
                    report.existing_properties.push(name);
                }
                Outcome::Existing => report.existing_properties.push(name),
            }
        }
    }
    Ok(report)
}

/// One object type's group and properties: whether the group was created, and what became of
/// each property, in definition order.
async fn setup_type(client: &dyn HubSpotApi, t: ObjectType) -> Result<(bool, Vec<(String, Outcome)>), HubSpotError> {
    let (groups, existing) = tokio::try_join!(client.group_names(t), client.property_names(t))?;
    let created_group = !groups.iter().any(|g| g == GROUP) && client.create_group(t, GROUP, "callbridge").await?;
    let specs: Vec<PropertySpec> = definitions().into_iter().filter(|(ot, _)| *ot == t).map(|(_, s)| s).collect();
    let outcomes = futures_util::future::try_join_all(specs.iter().map(|spec| {
        let existing = &existing;
        async move {
            let outcome = if existing.contains(&spec.name) || !client.create_property(t, spec).await? {
                // A choice property from an earlier release gains the options added since.
                if !spec.options.is_empty() && add_missing_options(client, t, spec).await? {
                    Outcome::Updated
                } else {
                    Outcome::Existing
                }
            } else {
                Outcome::Created
            };
            Ok::<_, HubSpotError>((spec.name.clone(), outcome))
        }
    }))
    .await?;
    Ok((created_group, outcomes))
}
