//! HubSpot's own webhooks keep callbridge's records about a portal's contacts true: the
//! `contact_change` job ([`apply`]) makes the caller index — and, for a privacy deletion,
//! everything kept about the contact — match a change HubSpot reported. The route that takes
//! the deliveries is `http::hubspot`.
//!
//! | change | what callbridge does |
//! |---|---|
//! | merge | the merged ids' callers, activities and newest call point at the survivor (the next call from any of their numbers lands there without a search) |
//! | deletion | the contact's index entries go (its next caller is looked up again) |
//! | privacy deletion | everything received about it before the deletion goes: raw bodies, events, jobs, bookings, activities, index entries ([`callbridge_store::CallerIndex::erase_contact`]) |
//! | phone, mobile, email change | the contact is read and indexed under exactly the numbers and emails it has now |

use std::time::Duration;

use callbridge_domain::{ContactChange, ContactChangeKind};
use callbridge_hubspot::ObjectType;
use callbridge_store::Store;

use crate::portals::Portal;
use crate::sync::SyncError;

/// How long a privacy deletion waits for a running call of the contact's callers to land
/// before erasing (it then erases what that call wrote too).
const ERASE_WAIT: Duration = Duration::from_secs(1);

/// The caller key HubSpot's changes to `contact` are queued under: a privacy deletion erases
/// them with the rest.
pub fn change_key(contact: u64) -> String {
    format!("hubspot-contact:{contact}")
}

/// Makes the portal's records match `change`. Running it twice changes nothing more.
pub async fn apply(store: &dyn Store, portal: &Portal, change: &ContactChange) -> Result<(), SyncError> {
    let (id, contact) = (portal.id(), change.contact_id);
    match &change.what {
        ContactChangeKind::Merge { survivor, merged } => {
            for m in merged {
                store.merged_contact(id, *m, *survivor).await?;
            }
            tracing::info!(portal.id = %id, merged = merged.len(), "a HubSpot merge moved callers to the survivor");
        }
        ContactChangeKind::Deletion => store.forget_contact(id, contact).await?,
        ContactChangeKind::PrivacyDeletion => {
            let erased = store.erase_contact(id, contact, &[change_key(contact)], change.occurred_at_ms).await?;
            if erased.waiting > 0 {
                return Err(SyncError::Paused("a call of the contact is landing; erasing after it".into(), ERASE_WAIT));
            }
            tracing::info!(
                portal.id = %id,
                erased.deliveries = erased.deliveries,
                erased.bookings = erased.bookings,
                erased.activities = erased.activities,
                erased.index_entries = erased.index_entries,
                "a HubSpot privacy deletion erased what callbridge kept about the contact"
            );
        }
        ContactChangeKind::IdentityChange { .. } => {
            let read = portal
                .hubspot
                .batch_read(ObjectType::Contacts, &[contact.to_string()], None, &crate::dedup::READ)
                .await?;
            // A contact merged away or deleted since answers nothing: its own event says what to do.
            let keys = read
                .results
                .iter()
                .filter_map(crate::dedup::candidate)
                .find(|c| c.id == contact)
                .map(|c| c.keys(portal.engine.region()));
            match keys {
                Some(keys) => store.reindex_contact(id, contact, &keys).await?,
                None => store.forget_contact(id, contact).await?,
            }
        }
    }
    Ok(())
}
