//! The HubSpot portals callbridge serves. Each [`Portal`] holds what is that portal's own: its
//! HubSpot client (credentials, rate budget, retries, cached capabilities) and the sync engine
//! bound to it. A configuration that names no portal serves one, [`PortalId::DEFAULT`].

use std::collections::BTreeMap;
use std::sync::Arc;

use callbridge_domain::{DefaultRegion, PortalId};
use callbridge_hubspot::HubSpotApi;
use callbridge_store::Store;

use crate::sync::Engine;

/// One portal: its id, its HubSpot client and its sync engine.
pub struct Portal {
    pub id: PortalId,
    pub hubspot: Arc<dyn HubSpotApi>,
    pub engine: Engine,
}

impl Portal {
    /// `searches_at_once`: how many searches the engine keeps in flight for this portal
    /// (HubSpot's searches per second is a good value).
    pub fn new(
        id: PortalId,
        store: Arc<dyn Store>,
        hubspot: Arc<dyn HubSpotApi>,
        region: DefaultRegion,
        searches_at_once: usize,
    ) -> Portal {
        let engine = Engine::new(id.clone(), store, hubspot.clone(), region, searches_at_once);
        Portal { id, hubspot, engine }
    }
}

/// Every portal served, by id.
#[derive(Clone, Default)]
pub struct Portals {
    by_id: BTreeMap<PortalId, Arc<Portal>>,
}

impl Portals {
    pub fn new(portals: impl IntoIterator<Item = Portal>) -> Portals {
        Portals { by_id: portals.into_iter().map(|p| (p.id.clone(), Arc::new(p))).collect() }
    }

    pub fn get(&self, id: &PortalId) -> Option<&Arc<Portal>> {
        self.by_id.get(id)
    }

    /// The portal requests name none of: the configuration's only (or `default`) portal.
    pub fn default_portal(&self) -> Option<&Arc<Portal>> {
        self.by_id.get(&PortalId::default()).or_else(|| (self.by_id.len() == 1).then(|| self.by_id.values().next())?)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Portal>> {
        self.by_id.values()
    }
}
