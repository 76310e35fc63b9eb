//! Newtype identifiers. Every id is a UUIDv7 minted by a service, so ids sort by creation time
//! and a cursor can be an id.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Mints a new time-ordered id.
            #[must_use]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an id read back from storage.
            #[must_use]
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            #[must_use]
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

id_type!(
    /// A person who can sign in.
    UserId
);
id_type!(
    /// An organization: the tenant boundary.
    OrgId
);
id_type!(
    /// A team inside an organization.
    TeamId
);
id_type!(
    /// An AI Hub API key (the row, not the secret).
    KeyId
);
id_type!(
    /// A dashboard / API session.
    SessionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_time_ordered_and_round_trip() {
        let a = UserId::new();
        let b = UserId::new();
        assert!(a < b, "UUIDv7 ids must sort by creation");
        let parsed: UserId = a.to_string().parse().unwrap();
        assert_eq!(parsed, a);
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert!("not-a-uuid".parse::<OrgId>().is_err());
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(json, format!("\"{b}\""));
        assert_eq!(UserId::from_uuid(Uuid::from(b)), b);
    }
}
