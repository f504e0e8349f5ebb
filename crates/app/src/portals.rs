//! The HubSpot portals callbridge serves. Each [`Portal`] holds what is that portal's own: its
//! HubSpot client (credentials, rate budget, retries, cached capabilities) and the sync engine
//! bound to it. A configuration that names no portal serves one, [`PortalId::DEFAULT`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use callbridge_domain::PortalId;
use callbridge_hubspot::HubSpotApi;

use crate::readiness::Readiness;
use crate::sync::Engine;

/// One portal: its HubSpot client and the sync engine bound to it (which knows the portal's id).
pub struct Portal {
    pub hubspot: Arc<dyn HubSpotApi>,
    pub engine: Engine,
    /// Whether its token is accepted and its properties in place; its jobs wait until so.
    pub readiness: Readiness,
    /// The scheduler meeting link availability and bookings go through, when configured.
    pub scheduler: Option<crate::scheduler::MeetingLink>,
    /// The business hours its tools offer and book when it has no scheduler link.
    pub hours: callbridge_domain::availability::BusinessHours,
    /// Its HubSpot account id, when configured: HubSpot's webhooks name their portal by it.
    pub configured_hub_id: Option<u64>,
    /// The account its OAuth install was made in (0: none yet).
    pub installed_hub_id: AtomicU64,
}

impl Portal {
    pub fn id(&self) -> &PortalId {
        self.engine.portal()
    }

    /// Its HubSpot account id: configured, else the one its OAuth install was made in.
    pub fn hub_id(&self) -> Option<u64> {
        self.configured_hub_id.or(Some(self.installed_hub_id.load(Ordering::Relaxed)).filter(|h| *h != 0))
    }

    /// Learns the account an OAuth install was made in.
    pub fn installed_in(&self, hub_id: u64) {
        self.installed_hub_id.store(hub_id, Ordering::Relaxed);
    }
}

/// Every portal served, by id.
#[derive(Clone, Default)]
pub struct Portals {
    by_id: BTreeMap<PortalId, Arc<Portal>>,
}

impl Portals {
    pub fn new(portals: impl IntoIterator<Item = Portal>) -> Portals {
        Portals { by_id: portals.into_iter().map(|p| (p.id().clone(), Arc::new(p))).collect() }
    }

    pub fn get(&self, id: &PortalId) -> Option<&Arc<Portal>> {
        self.by_id.get(id)
    }

    /// The portal requests name none of: the configuration's only (or `default`) portal.
    pub fn default_portal(&self) -> Option<&Arc<Portal>> {
        self.by_id.get(&PortalId::default()).or_else(|| (self.by_id.len() == 1).then(|| self.by_id.values().next())?)
    }

    /// The portal a HubSpot account id names: the one configured with it, else the only
    /// portal served when it has no account id configured.
    pub fn for_hub(&self, hub_id: u64) -> Option<&Arc<Portal>> {
        self.by_id.values().find(|p| p.hub_id() == Some(hub_id)).or_else(|| {
            let mut unnamed = self.by_id.values().filter(|p| p.hub_id().is_none());
            match (unnamed.next(), unnamed.next(), self.by_id.len()) {
                (Some(only), None, 1) => Some(only),
                _ => None,
            }
        })
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Portal>> {
        self.by_id.values()
    }
}
