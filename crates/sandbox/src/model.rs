//! The sandbox's schema: object types, HubSpot-defined properties and their options,
//! association type ids, and the validation HubSpot applies to property values.

use std::collections::BTreeMap;

use serde::Serialize;

/// The CRM object types the sandbox serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Kind {
    Contact,
    Call,
    Meeting,
    Task,
    Note,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Contact, Kind::Call, Kind::Meeting, Kind::Task, Kind::Note];

    /// Parses a path segment: the type id (`0-1`), the singular or the plural name.
    pub fn parse(segment: &str) -> Option<Kind> {
        Some(match segment.to_ascii_lowercase().as_str() {
            "0-1" | "contact" | "contacts" => Kind::Contact,
            "0-48" | "call" | "calls" => Kind::Call,
            "0-47" | "meeting" | "meetings" => Kind::Meeting,
            "0-27" | "task" | "tasks" => Kind::Task,
            "0-46" | "note" | "notes" => Kind::Note,
            _ => return None,
        })
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn type_id(self) -> &'static str {
        match self {
            Kind::Contact => "0-1",
            Kind::Call => "0-48",
            Kind::Meeting => "0-47",
            Kind::Task => "0-27",
            Kind::Note => "0-46",
        }
    }

    pub fn singular(self) -> &'static str {
        match self {
            Kind::Contact => "contact",
            Kind::Call => "call",
            Kind::Meeting => "meeting",
            Kind::Task => "task",
            Kind::Note => "note",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Kind::Contact => "contacts",
            Kind::Call => "calls",
            Kind::Meeting => "meetings",
            Kind::Task => "tasks",
            Kind::Note => "notes",
        }
    }

    /// The upper-case name HubSpot uses in error messages ("CONTACT").
    pub fn upper(self) -> &'static str {
        match self {
            Kind::Contact => "CONTACT",
            Kind::Call => "CALL",
            Kind::Meeting => "MEETING",
            Kind::Task => "TASK",
            Kind::Note => "NOTE",
        }
    }

    /// First id handed out for this type; distinct ranges make a wrong-type lookup a miss.
    pub fn id_base(self) -> u64 {
        match self {
            Kind::Contact => 100_000_000,
            Kind::Call => 200_000_000,
            Kind::Meeting => 300_000_000,
            Kind::Task => 400_000_000,
            Kind::Note => 500_000_000,
        }
    }

    /// The property that holds the record's creation time.
    pub fn created_property(self) -> &'static str {
        match self {
            Kind::Contact => "createdate",
            _ => "hs_createdate",
        }
    }

    /// The property that holds the record's last modification time.
    pub fn modified_property(self) -> &'static str {
        match self {
            Kind::Contact => "lastmodifieddate",
            _ => "hs_lastmodifieddate",
        }
    }

    /// Properties returned when a request names none (DOC:search "default properties").
    pub fn default_properties(self) -> &'static [&'static str] {
        match self {
            Kind::Contact => &["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"],
            _ => &["hs_createdate", "hs_lastmodifieddate", "hs_object_id"],
        }
    }

    /// Text properties searched by the free-text `query` of a search request.
    pub fn query_properties(self) -> &'static [&'static str] {
        match self {
            Kind::Contact => {
                &["firstname", "lastname", "email", "phone", "hs_additional_emails", "fax", "mobilephone", "company"]
            }
            Kind::Call => &["hs_call_title", "hs_body_preview"],
            Kind::Meeting => &["hs_meeting_title", "hs_meeting_body"],
            Kind::Task => &["hs_task_body", "hs_task_subject"],
            Kind::Note => &["hs_note_body"],
        }
    }
}

/// HubSpot-defined association type ids between the types the sandbox serves (DOC:assoc).
/// Returns `(type id, label)` for the default association from `from` to `to`.
pub fn default_association(from: Kind, to: Kind) -> Option<(u32, &'static str)> {
    use Kind::*;
    Some(match (from, to) {
        (Contact, Call) => (193, "contact_to_call"),
        (Call, Contact) => (194, "call_to_contact"),
        (Contact, Meeting) => (199, "contact_to_meeting"),
        (Meeting, Contact) => (200, "meeting_to_contact"),
        (Contact, Task) => (203, "contact_to_task"),
        (Task, Contact) => (204, "task_to_contact"),
        (Contact, Note) => (201, "contact_to_note"),
        (Note, Contact) => (202, "note_to_contact"),
        _ => return None,
    })
}

/// The reverse of an association type id (the id stored on the other record).
pub fn reverse_association(from: Kind, to: Kind, type_id: u32) -> Option<u32> {
    let (forward, _) = default_association(from, to)?;
    (forward == type_id).then(|| default_association(to, from).map(|(id, _)| id))?
}

/// A property's value type (`type` in the Properties API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PropType {
    String,
    Number,
    Bool,
    Enumeration,
    Date,
    Datetime,
    PhoneNumber,
}

impl PropType {
    pub fn parse(s: &str) -> Option<PropType> {
        Some(match s {
            "string" => PropType::String,
            "number" => PropType::Number,
            "bool" => PropType::Bool,
            "enumeration" => PropType::Enumeration,
            "date" => PropType::Date,
            "datetime" => PropType::Datetime,
            "phone_number" => PropType::PhoneNumber,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PropType::String => "string",
            PropType::Number => "number",
            PropType::Bool => "bool",
            PropType::Enumeration => "enumeration",
            PropType::Date => "date",
            PropType::Datetime => "datetime",
            PropType::PhoneNumber => "phone_number",
        }
    }

    /// The `fieldType`s HubSpot accepts for this type (DOC:props).
    pub fn field_types(self) -> &'static [&'static str] {
        match self {
            PropType::Bool => &["booleancheckbox", "calculation_equation"],
            PropType::Enumeration => &["booleancheckbox", "checkbox", "radio", "select", "calculation_equation"],
            PropType::Date | PropType::Datetime => &["date"],
            PropType::String => &["file", "text", "textarea", "calculation_equation", "html", "phonenumber"],
            PropType::Number => &["number", "calculation_equation"],
            PropType::PhoneNumber => &["phonenumber"],
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PropOption {
    pub label: String,
    pub value: String,
    #[serde(rename = "displayOrder")]
    pub display_order: i64,
    pub hidden: bool,
    pub description: String,
}

/// A property definition, as the Properties API shows it.
#[derive(Debug, Clone)]
pub struct PropertyDef {
    pub name: String,
    pub label: String,
    pub prop_type: PropType,
    pub field_type: String,
    pub group_name: String,
    pub description: String,
    pub options: Vec<PropOption>,
    pub has_unique_value: bool,
    pub hubspot_defined: bool,
    pub read_only: bool,
    pub hidden: bool,
    pub form_field: bool,
    pub display_order: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub archived: bool,
}

impl PropertyDef {
    fn builtin(name: &str, label: &str, prop_type: PropType, group: &str) -> PropertyDef {
        let field_type = match prop_type {
            PropType::String => "text",
            PropType::Number => "number",
            PropType::Bool => "booleancheckbox",
            PropType::Enumeration => "select",
            PropType::Date | PropType::Datetime => "date",
            PropType::PhoneNumber => "phonenumber",
        };
        PropertyDef {
            name: name.to_string(),
            label: label.to_string(),
            prop_type,
            field_type: field_type.to_string(),
            group_name: group.to_string(),
            description: String::new(),
            options: Vec::new(),
            has_unique_value: false,
            hubspot_defined: true,
            read_only: false,
            hidden: false,
            form_field: false,
            display_order: -1,
            created_ms: 0,
            updated_ms: 0,
            archived: false,
        }
    }

    fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    fn field(mut self, field_type: &str) -> Self {
        self.field_type = field_type.to_string();
        self
    }

    fn with_options(mut self, values: &[(&str, &str)]) -> Self {
        self.options = values
            .iter()
            .enumerate()
            .map(|(i, (value, label))| PropOption {
                label: (*label).to_string(),
                value: (*value).to_string(),
                display_order: i as i64,
                hidden: false,
                description: String::new(),
            })
            .collect();
        self
    }

    pub fn option_values(&self) -> impl Iterator<Item = &str> {
        self.options.iter().map(|o| o.value.as_str())
    }
}

/// The order lifecycle stages move in; a write may only move a contact forward (DOC:contacts).
pub const LIFECYCLE_STAGES: [&str; 8] = [
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
];

pub fn lifecycle_rank(stage: &str) -> Option<usize> {
    LIFECYCLE_STAGES.iter().position(|s| *s == stage)
}

/// A property group.
#[derive(Debug, Clone)]
pub struct GroupDef {
    pub name: String,
    pub label: String,
    pub display_order: i64,
    pub archived: bool,
}

/// HubSpot's default property groups for a type.
pub fn default_groups(kind: Kind) -> BTreeMap<String, GroupDef> {
    let names: &[(&str, &str)] = match kind {
        Kind::Contact => &[
            ("contactinformation", "Contact information"),
            ("analyticsinformation", "Web analytics history"),
            ("sales_properties", "Sales properties"),
        ],
        Kind::Call => &[("callinformation", "Call information")],
        Kind::Meeting => &[("meetinginformation", "Meeting information")],
        Kind::Task => &[("taskinformation", "Task information")],
        Kind::Note => &[("noteinformation", "Note information")],
    };
    names
        .iter()
        .enumerate()
        .map(|(i, (name, label))| {
            (
                (*name).to_string(),
                GroupDef {
                    name: (*name).to_string(),
                    label: (*label).to_string(),
                    display_order: i as i64,
                    archived: false,
                },
            )
        })
        .collect()
}

/// HubSpot's default properties for a type: the ones callbridge and common clients touch.
pub fn default_properties(kind: Kind) -> BTreeMap<String, PropertyDef> {
    use PropType::*;
    let b = PropertyDef::builtin;
    let mut defs = vec![b("hs_object_id", "Record ID", Number, group_of(kind)).read_only()];
    match kind {
        Kind::Contact => {
            let g = "contactinformation";
            defs.extend([
                b("email", "Email", String, g),
                b("firstname", "First Name", String, g),
                b("lastname", "Last Name", String, g),
                b("phone", "Phone Number", String, g).field("phonenumber"),
                b("mobilephone", "Mobile Phone Number", String, g).field("phonenumber"),
                b("fax", "Fax Number", String, g),
                b("company", "Company Name", String, g),
                b("website", "Website URL", String, g),
                b("jobtitle", "Job Title", String, g),
                b("address", "Street Address", String, g),
                b("city", "City", String, g),
                b("state", "State/Region", String, g),
                b("zip", "Postal Code", String, g),
                b("country", "Country/Region", String, g),
                b("message", "Message", String, g).field("textarea"),
                b("hs_timezone", "Time Zone", String, g),
                b("hubspot_owner_id", "Contact owner", Enumeration, g),
                b("hs_additional_emails", "Additional email addresses", String, g).read_only(),
                b("hs_searchable_calculated_phone_number", "Calculated Phone Number", String, g).read_only(),
                b("hs_searchable_calculated_mobile_number", "Calculated Mobile Number", String, g).read_only(),
                b("hs_merged_object_ids", "Merged Contact IDs", Enumeration, g).field("checkbox").read_only(),
                b("hs_calculated_merged_vids", "Merged Contact IDs with timestamps", Enumeration, g)
                    .field("checkbox")
                    .read_only(),
                b("createdate", "Create Date", Datetime, g).read_only(),
                b("lastmodifieddate", "Last Modified Date", Datetime, g).read_only(),
                b("notes_last_contacted", "Last Contacted", Datetime, "sales_properties").read_only(),
                b("hs_lead_status", "Lead Status", Enumeration, "sales_properties").with_options(&[
                    ("NEW", "New"),
                    ("OPEN", "Open"),
                    ("IN_PROGRESS", "In Progress"),
                    ("OPEN_DEAL", "Open Deal"),
                    ("UNQUALIFIED", "Unqualified"),
                    ("ATTEMPTED_TO_CONTACT", "Attempted to Contact"),
                    ("CONNECTED", "Connected"),
                    ("BAD_TIMING", "Bad Timing"),
                ]),
                b("lifecyclestage", "Lifecycle Stage", Enumeration, g).field("radio").with_options(&[
                    ("subscriber", "Subscriber"),
                    ("lead", "Lead"),
                    ("marketingqualifiedlead", "Marketing Qualified Lead"),
                    ("salesqualifiedlead", "Sales Qualified Lead"),
                    ("opportunity", "Opportunity"),
                    ("customer", "Customer"),
                    ("evangelist", "Evangelist"),
                    ("other", "Other"),
                ]),
                b("hs_analytics_source", "Original Source", Enumeration, "analyticsinformation")
                    .with_options(&[
                        ("ORGANIC_SEARCH", "Organic Search"),
                        ("PAID_SEARCH", "Paid Search"),
                        ("EMAIL_MARKETING", "Email Marketing"),
                        ("SOCIAL_MEDIA", "Organic Social"),
                        ("REFERRALS", "Referrals"),
                        ("OTHER_CAMPAIGNS", "Other Campaigns"),
                        ("DIRECT_TRAFFIC", "Direct Traffic"),
                        ("OFFLINE", "Offline Sources"),
                        ("PAID_SOCIAL", "Paid Social"),
                    ])
                    .read_only(),
            ]);
        }
        Kind::Call => {
            let g = "callinformation";
            defs.extend([
                b("hs_timestamp", "Activity date", Datetime, g),
                b("hs_call_title", "Call Title", String, g),
                b("hs_call_body", "Call notes", String, g).field("html"),
                b("hs_body_preview", "Body preview", String, g).read_only(),
                b("hs_call_direction", "Call direction", Enumeration, g)
                    .with_options(&[("INBOUND", "Inbound"), ("OUTBOUND", "Outbound")]),
                b("hs_call_status", "Call status", Enumeration, g).with_options(&[
                    ("BUSY", "Busy"),
                    ("CALLING_CRM_USER", "Calling CRM user"),
                    ("CANCELED", "Canceled"),
                    ("COMPLETED", "Completed"),
                    ("CONNECTING", "Connecting"),
                    ("FAILED", "Failed"),
                    ("IN_PROGRESS", "In progress"),
                    ("MISSED", "Missed"),
                    ("NO_ANSWER", "No answer"),
                    ("QUEUED", "Queued"),
                    ("RINGING", "Ringing"),
                ]),
                b("hs_call_disposition", "Call outcome", String, g),
                b("hs_call_duration", "Call duration", Number, g),
                b("hs_call_from_number", "From number", String, g),
                b("hs_call_to_number", "To number", String, g),
                b("hs_call_recording_url", "Recording URL", String, g),
                b("hs_call_has_voicemail", "Has voicemail", Bool, g),
                b("hs_call_source", "Call source", Enumeration, g)
                    .with_options(&[("INTEGRATIONS_PLATFORM", "Integrations platform")]),
                b("hs_call_external_id", "External ID", String, g),
                b("hs_call_external_account_id", "External account ID", String, g),
                b("hs_call_app_id", "App ID", Number, g),
                b("hs_call_callee_object_id", "Callee object id", Number, g),
                b("hs_call_callee_object_type", "Callee object type", String, g),
                b("hs_activity_type", "Call and meeting type", String, g),
                b("hs_attachment_ids", "Attachment IDs", String, g),
                b("hubspot_owner_id", "Activity assigned to", Enumeration, g),
            ]);
        }
        Kind::Meeting => {
            let g = "meetinginformation";
            defs.extend([
                b("hs_timestamp", "Activity date", Datetime, g),
                b("hs_meeting_title", "Meeting name", String, g),
                b("hs_meeting_body", "Meeting description", String, g).field("html"),
                b("hs_internal_meeting_notes", "Internal meeting notes", String, g).field("html"),
                b("hs_meeting_start_time", "Start Time", Datetime, g),
                b("hs_meeting_end_time", "End Time", Datetime, g),
                b("hs_meeting_outcome", "Meeting outcome", Enumeration, g).with_options(&[
                    ("SCHEDULED", "Scheduled"),
                    ("COMPLETED", "Completed"),
                    ("RESCHEDULED", "Rescheduled"),
                    ("NO_SHOW", "No Show"),
                    ("CANCELED", "Canceled"),
                ]),
                b("hs_meeting_location", "Location", String, g),
                b("hs_meeting_location_type", "Location type", Enumeration, g).with_options(&[
                    ("ADDRESS", "Address"),
                    ("CUSTOM", "Custom"),
                    ("PHONE", "Phone"),
                ]),
                b("hs_meeting_external_url", "External URL", String, g),
                b("hs_attendee_owner_ids", "Attendee owner ids", Enumeration, g).field("checkbox"),
                b("hs_activity_type", "Call and meeting type", String, g),
                b("hs_attachment_ids", "Attachment IDs", String, g),
                b("hubspot_owner_id", "Activity assigned to", Enumeration, g),
            ]);
        }
        Kind::Task => {
            let g = "taskinformation";
            defs.extend([
                b("hs_timestamp", "Due date", Datetime, g),
                b("hs_task_subject", "Task Title", String, g),
                b("hs_task_body", "Notes", String, g).field("html"),
                b("hs_task_status", "Task Status", Enumeration, g).with_options(&[
                    ("NOT_STARTED", "Not started"),
                    ("IN_PROGRESS", "In progress"),
                    ("WAITING", "Waiting"),
                    ("COMPLETED", "Completed"),
                    ("DEFERRED", "Deferred"),
                ]),
                b("hs_task_priority", "Priority", Enumeration, g).with_options(&[
                    ("NONE", "None"),
                    ("LOW", "Low"),
                    ("MEDIUM", "Medium"),
                    ("HIGH", "High"),
                ]),
                b("hs_task_type", "Task Type", Enumeration, g).with_options(&[
                    ("CALL", "Call"),
                    ("EMAIL", "Email"),
                    ("TODO", "To-do"),
                ]),
                b("hs_task_reminders", "Reminders", String, g),
                b("hubspot_owner_id", "Assigned to", Enumeration, g),
            ]);
        }
        Kind::Note => {
            let g = "noteinformation";
            defs.extend([
                b("hs_timestamp", "Activity date", Datetime, g),
                b("hs_note_body", "Note body", String, g).field("html"),
                b("hs_attachment_ids", "Attachment IDs", String, g),
                b("hubspot_owner_id", "Activity assigned to", Enumeration, g),
            ]);
        }
    }
    if kind != Kind::Contact {
        defs.push(b("hs_createdate", "Create date", Datetime, group_of(kind)).read_only());
        defs.push(b("hs_lastmodifieddate", "Last modified date", Datetime, group_of(kind)).read_only());
    }
    defs.into_iter().map(|d| (d.name.clone(), d)).collect()
}

fn group_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Contact => "contactinformation",
        Kind::Call => "callinformation",
        Kind::Meeting => "meetinginformation",
        Kind::Task => "taskinformation",
        Kind::Note => "noteinformation",
    }
}
