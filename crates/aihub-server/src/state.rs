//! Shared state handed to every handler.

use std::sync::Arc;

use aihub_core::config::Config;
use aihub_gateway::last_used::LastUsed;
use aihub_gateway::{Gateway, KeyCache};
use aihub_service::Services;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub services: Services,
    pub key_cache: KeyCache,
    pub last_used: Arc<LastUsed>,
    pub gateway: Arc<Gateway>,
}
