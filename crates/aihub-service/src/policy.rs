//! The permission policy: one table of role × action, the only place where access is decided.
//! docs/permissions.md reproduces this table; a test keeps the two equal.
//!
//! Resource-level rules (a Member manages only their own keys) are expressed as two actions —
//! `KeysManageOwn` and `KeysManageAll` — and resolved by the service against the key's owner.
//! Limits and budgets follow the same pattern: `*ManageOwn` covers rules on one's own keys.
//! Members and invitations have one resource-level rule on top of this table, applied by the
//! service next to the policy call: only an Owner (or a platform admin) may act on an Owner or
//! grant the Owner role; an Admin manages everyone else.

use aihub_core::Role;

/// Something a caller can try to do inside an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// See the organization, its name and settings.
    OrgRead,
    /// Rename the organization.
    OrgUpdate,
    /// Delete the organization (its keys stop working at once).
    OrgDelete,
    /// Hand ownership to another member.
    OrgTransfer,
    /// List the organization's members with their roles and model lists.
    MembersRead,
    /// Change members' roles and model lists, and remove members.
    MembersManage,
    /// See the organization's teams and who is in them.
    TeamsRead,
    /// Create, rename and delete teams; add and remove their members.
    TeamsManage,
    /// See the organization's invitations.
    InvitationsRead,
    /// Invite people by e-mail; resend and revoke invitations.
    InvitationsManage,
    /// Read and export the organization's audit log.
    AuditRead,
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
    /// See the organization's rate limits.
    LimitsRead,
    /// Create, edit and delete rate limits on one's own keys.
    LimitsManageOwn,
    /// Create, edit and delete every rate limit of the organization.
    LimitsManage,
    /// See the organization's budgets and what has been spent against them.
    BudgetsRead,
    /// Create, edit and delete budgets on one's own keys.
    BudgetsManageOwn,
    /// Create, edit and delete every budget of the organization.
    BudgetsManage,
}

impl Action {
    pub const ALL: [Action; 22] = [
        Action::OrgRead,
        Action::OrgUpdate,
        Action::OrgDelete,
        Action::OrgTransfer,
        Action::MembersRead,
        Action::MembersManage,
        Action::TeamsRead,
        Action::TeamsManage,
        Action::InvitationsRead,
        Action::InvitationsManage,
        Action::AuditRead,
        Action::KeysRead,
        Action::KeysCreate,
        Action::KeysManageOwn,
        Action::KeysManageAll,
        Action::UsageRead,
        Action::LimitsRead,
        Action::LimitsManageOwn,
        Action::LimitsManage,
        Action::BudgetsRead,
        Action::BudgetsManageOwn,
        Action::BudgetsManage,
    ];

    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Action::OrgRead => "org.read",
            Action::OrgUpdate => "org.update",
            Action::OrgDelete => "org.delete",
            Action::OrgTransfer => "org.transfer",
            Action::MembersRead => "members.read",
            Action::MembersManage => "members.manage",
            Action::TeamsRead => "teams.read",
            Action::TeamsManage => "teams.manage",
            Action::InvitationsRead => "invitations.read",
            Action::InvitationsManage => "invitations.manage",
            Action::AuditRead => "audit.read",
            Action::KeysRead => "keys.read",
            Action::KeysCreate => "keys.create",
            Action::KeysManageOwn => "keys.manage_own",
            Action::KeysManageAll => "keys.manage_all",
            Action::UsageRead => "usage.read",
            Action::LimitsRead => "limits.read",
            Action::LimitsManageOwn => "limits.manage_own",
            Action::LimitsManage => "limits.manage",
            Action::BudgetsRead => "budgets.read",
            Action::BudgetsManageOwn => "budgets.manage_own",
            Action::BudgetsManage => "budgets.manage",
        }
    }
}

/// Whether `role` may perform `action`.
#[must_use]
pub const fn allows(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::Owner => true,
        Role::Admin => !matches!(action, OrgDelete | OrgTransfer),
        Role::Member => matches!(
            action,
            OrgRead
                | MembersRead
                | TeamsRead
                | KeysRead
                | KeysCreate
                | KeysManageOwn
                | UsageRead
                | LimitsRead
                | LimitsManageOwn
                | BudgetsRead
                | BudgetsManageOwn
        ),
        Role::Viewer => matches!(
            action,
            OrgRead | MembersRead | TeamsRead | KeysRead | UsageRead | LimitsRead | BudgetsRead
        ),
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
