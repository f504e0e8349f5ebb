//! The HubSpot client's windows counted in the store, so that several instances on one
//! PostgreSQL database stay together inside the portal's limits.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use callbridge_domain::PortalId;
use callbridge_hubspot::SharedWindow;
use callbridge_store::{Store, now_ms};

/// A portal's windows, counted in the store.
pub struct StoreWindow {
    pub store: Arc<dyn Store>,
    pub portal: PortalId,
}

#[async_trait]
impl SharedWindow for StoreWindow {
    async fn take(&self, bucket: &str, max: u32, interval: Duration) -> Result<i64, Duration> {
        match self.store.budget_take(&self.portal, bucket, max, interval.as_millis() as i64).await {
            Ok(Ok(slot)) => Ok(slot),
            Ok(Err(wait_ms)) => Err(Duration::from_millis(wait_ms.max(1) as u64)),
            Err(e) => {
                tracing::warn!(error = %e, "the shared HubSpot budget is unreachable; waiting");
                Err(Duration::from_millis(250))
            }
        }
    }

    async fn release(&self, bucket: &str, slot: i64) {
        if let Err(e) = self.store.budget_release(&self.portal, bucket, slot).await {
            // The slot goes stale and is reclaimed; the budget errs on the side of waiting.
            tracing::warn!(error = %e, "releasing a HubSpot budget slot failed");
        }
    }

    async fn block(&self, bucket: &str, d: Duration) {
        if let Err(e) = self.store.budget_block(&self.portal, bucket, now_ms() + d.as_millis() as i64).await {
            tracing::warn!(error = %e, "recording a HubSpot back-off failed");
        }
    }
}
