//! The permission policy: one table of role × action, the only place where access is decided.
//! docs/permissions.md reproduces this table; a test keeps the two equal.
//!
//! Resource-level rules (a Member manages only their own keys) are expressed as two actions —
//! `KeysManageOwn` and `KeysManageAll` — and resolved by the service against the key's owner.

use aihub_core::Role;

/// Something a caller can try to do inside an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// See the organization, its name and settings.
    OrgRead,
    /// List and read the organization's API keys (never their secrets).
    KeysRead,
    /// Create API keys for oneself.
    KeysCreate,
    /// Edit, rotate and revoke one's own keys.
    KeysManageOwn,
    /// Edit, rotate and revoke anyone's keys in the organization.
    KeysManageAll,
    /// Read the organization's usage: totals and individual requests.
    UsageRead,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::OrgRead,
        Action::KeysRead,
        Action::KeysCreate,
        Action::KeysManageOwn,
        Action::KeysManageAll,
        Action::UsageRead,
    ];

    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Action::OrgRead => "org.read",
            Action::KeysRead => "keys.read",
            Action::KeysCreate => "keys.create",
            Action::KeysManageOwn => "keys.manage_own",
            Action::KeysManageAll => "keys.manage_all",
            Action::UsageRead => "usage.read",
        }
    }
}

/// Whether `role` may perform `action`.
#[must_use]
pub const fn allows(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::Owner | Role::Admin => true,
        Role::Member => matches!(
            action,
            OrgRead | KeysRead | KeysCreate | KeysManageOwn | UsageRead
        ),
        Role::Viewer => matches!(action, OrgRead | KeysRead | UsageRead),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table as documented in docs/permissions.md (rows: actions; columns: owner, admin,
    /// member, viewer).
    #[test]
    fn policy_matches_the_documented_table() {
        let doc = include_str!("../../../docs/permissions.md");
        let mut checked = 0;
        for line in doc.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // | `action` | owner | admin | member | viewer |
            let [_, action, owner, admin, member, viewer, ..] = cells.as_slice() else {
                continue;
            };
            let Some(action) = Action::ALL
                .into_iter()
                .find(|a| *action == format!("`{}`", a.as_str()))
            else {
                continue;
            };
            for (role, cell) in [
                (Role::Owner, owner),
                (Role::Admin, admin),
                (Role::Member, member),
                (Role::Viewer, viewer),
            ] {
                let documented = match *cell {
                    "yes" => true,
                    "no" => false,
                    other => panic!("cell {other:?} for {action:?}/{role} must be yes or no"),
                };
                assert_eq!(allows(role, action), documented, "{action:?} for {role}");
            }
            checked += 1;
        }
        assert_eq!(
            checked,
            Action::ALL.len(),
            "every action has a row in docs/permissions.md"
        );
    }
}
