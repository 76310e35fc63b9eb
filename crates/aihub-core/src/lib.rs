//! Domain types shared by every AI Hub crate: identifiers, e-mail addresses, money, roles,
//! password rules and the typed configuration. Nothing in here performs I/O.

pub mod config;
pub mod email;
pub mod errors;
pub mod governance;
pub mod ids;
pub mod money;
pub mod password;
pub mod role;
pub mod secret;
pub mod time;

pub use email::Email;
pub use ids::{KeyId, OrgId, SessionId, TeamId, UserId};
pub use money::{Currency, Money};
pub use role::Role;
