//! Shared state handed to every handler. Cloned per request by the router, so it is one `Arc`:
//! a clone is a single reference-count increment.

use std::ops::Deref;
use std::sync::Arc;

use aihub_core::config::Config;
use aihub_gateway::governor::Governor;
use aihub_gateway::last_used::LastUsed;
use aihub_gateway::{Gateway, KeyCache};
use aihub_service::Services;

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub config: Arc<Config>,
    pub services: Services,
    pub key_cache: KeyCache,
    pub last_used: Arc<LastUsed>,
    pub gateway: Arc<Gateway>,
    pub governor: Governor,
}

impl AppState {
    #[must_use]
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
