//! Who may do what: the roles a user holds per campaign, the permissions they carry, and
//! [`authorize`], the one pure function every route's decision goes through.
//!
//! A superuser (the admin token, or a user marked so) may do everything. Anyone else may act
//! on a campaign only through their grant on it: `owner` (every permission, plus managing the
//! campaign's roles, webhooks and audit log), `member` with named permissions, `viewer`
//! (`view`) or `analyst` (`export`). A session, invite or script belongs to its campaign; an
//! invite made without one belongs to the default campaign, like any other campaign's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One right on a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Read the campaign, its scripts, sessions, transcripts, recordings, analysis.
    View,
    /// Edit the campaign and its scripts.
    Edit,
    /// Make invites and list them (an invite link lets anyone take part).
    Invite,
    /// Listen in: live sessions, live events, WHEP.
    Listen,
    /// Exports (session PDF/JSON/audio ZIP, bulk) and analytics.
    Export,
    /// Session admin actions: end, restart, mark, delete.
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Permission::View,
        Permission::Edit,
        Permission::Invite,
        Permission::Listen,
        Permission::Export,
        Permission::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::View => "view",
            Permission::Edit => "edit",
            Permission::Invite => "invite",
            Permission::Listen => "listen",
            Permission::Export => "export",
            Permission::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// A comma-separated list (as stored) into a set; `None` names the unknown entry.
    pub fn parse_list(s: &str) -> Result<BTreeSet<Permission>, String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| Permission::parse(p).ok_or_else(|| p.to_string()))
            .collect()
    }

    pub fn join(set: &BTreeSet<Permission>) -> String {
        set.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",")
    }
}

/// A user's role on one campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Member,
    Viewer,
    Analyst,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Member, Role::Viewer, Role::Analyst];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Member => "member",
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What a principal holds on one campaign: its role and the permissions in effect (for an
/// owner, viewer or analyst those of the role; for a member the named ones; for an API key
/// narrowed further to the key's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    pub permissions: BTreeSet<Permission>,
}

impl Grant {
    /// The grant of `role`; `member_permissions` counts only for a member.
    pub fn new(role: Role, member_permissions: BTreeSet<Permission>) -> Grant {
        let permissions = match role {
            Role::Owner => Permission::ALL.into_iter().collect(),
            Role::Member => member_permissions,
            Role::Viewer => [Permission::View].into_iter().collect(),
            Role::Analyst => [Permission::Export].into_iter().collect(),
        };
        Grant { role, permissions }
    }
}

/// Who is calling, with everything [`authorize`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `admin-token`, or the user's id (as the audit log names them).
    pub id: String,
    pub superuser: bool,
    /// Grants by campaign id.
    pub grants: BTreeMap<String, Grant>,
    /// The API key the call came with, if any.
    pub key_id: Option<String>,
}

/// The admin token's principal id.
pub const ADMIN_TOKEN_ID: &str = "admin-token";

impl Principal {
    /// The bootstrap superuser: the configured admin token.
    pub fn admin_token() -> Principal {
        Principal {
            id: ADMIN_TOKEN_ID.into(),
            superuser: true,
            grants: BTreeMap::new(),
            key_id: None,
        }
    }

    /// The campaigns whose `permission` this principal holds; `None` means every campaign
    /// (a superuser). What list routes filter by.
    pub fn campaigns_with(&self, permission: Permission) -> Option<Vec<String>> {
        self.campaigns_with_any(&[permission])
    }

    /// The campaigns where this principal holds any of `permissions`; `None` means every
    /// campaign (a superuser).
    pub fn campaigns_with_any(&self, permissions: &[Permission]) -> Option<Vec<String>> {
        if self.superuser {
            return None;
        }
        Some(
            self.grants
                .iter()
                .filter(|(_, g)| permissions.iter().any(|p| g.permissions.contains(p)))
                .map(|(c, _)| c.clone())
                .collect(),
        )
    }

    /// The user id behind the principal (none for the admin token).
    pub fn user_id(&self) -> Option<&str> {
        (self.id != ADMIN_TOKEN_ID).then_some(self.id.as_str())
    }
}

/// What is being done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A campaign-scoped action needing one permission.
    Campaign(Permission),
    /// Managing a campaign's roles, webhooks, or reading its audit log: owners.
    ManageCampaign,
    /// Deployment-wide: make campaigns, users, upload shared prompt audio, metrics.
    Superuser,
}

/// What it is done to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    /// Something of one campaign (the campaign, or its session, script, invite).
    Campaign(&'a str),
    /// Nothing in particular (deployment-wide actions).
    Deployment,
}

/// Refused: the principal lacks the right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{needed} is needed")]
pub struct Denied {
    pub needed: String,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Campaign(p) => write!(f, "the {} permission on the campaign", p.as_str()),
            Action::ManageCampaign => write!(f, "the campaign's owner role"),
            Action::Superuser => write!(f, "a superuser"),
        }
    }
}

/// Decides whether `principal` may do `action` to `resource`.
pub fn authorize(
    principal: &Principal,
    action: Action,
    resource: Resource<'_>,
) -> Result<(), Denied> {
    let denied = || {
        Err(Denied {
            needed: action.to_string(),
        })
    };
    if principal.superuser {
        return Ok(());
    }
    let grant = match resource {
        Resource::Campaign(id) => principal.grants.get(id),
        Resource::Deployment => None,
    };
    let Some(grant) = grant else {
        return denied();
    };
    let allowed = match action {
        Action::Campaign(p) => grant.permissions.contains(&p),
        // An owner's key narrowed to fewer permissions is no longer an owner's.
        Action::ManageCampaign => {
            grant.role == Role::Owner && grant.permissions.len() == Permission::ALL.len()
        }
        Action::Superuser => false,
    };
    if allowed { Ok(()) } else { denied() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(grants: &[(&str, Role, &[Permission])]) -> Principal {
        Principal {
            id: "usr_a".into(),
            superuser: false,
            grants: grants
                .iter()
                .map(|(c, r, p)| (c.to_string(), Grant::new(*r, p.iter().copied().collect())))
                .collect(),
            key_id: None,
        }
    }

    const A: Resource<'static> = Resource::Campaign("cmp_a");
    const B: Resource<'static> = Resource::Campaign("cmp_b");

    #[test]
    fn superusers_may_do_everything() {
        let admin = Principal::admin_token();
        for action in [
            Action::Campaign(Permission::Admin),
            Action::ManageCampaign,
            Action::Superuser,
        ] {
            assert_eq!(authorize(&admin, action, A), Ok(()));
            assert_eq!(authorize(&admin, action, Resource::Deployment), Ok(()));
        }
    }

    #[test]
    fn an_owner_has_every_permission_on_their_campaign_only() {
        let owner = user(&[("cmp_a", Role::Owner, &[])]);
        for p in Permission::ALL {
            assert_eq!(authorize(&owner, Action::Campaign(p), A), Ok(()));
            assert!(authorize(&owner, Action::Campaign(p), B).is_err());
        }
        assert_eq!(authorize(&owner, Action::ManageCampaign, A), Ok(()));
        assert!(authorize(&owner, Action::ManageCampaign, B).is_err());
        assert!(authorize(&owner, Action::Superuser, Resource::Deployment).is_err());
    }

    #[test]
    fn roles_are_per_campaign() {
        let p = user(&[("cmp_a", Role::Owner, &[]), ("cmp_b", Role::Viewer, &[])]);
        assert_eq!(
            authorize(&p, Action::Campaign(Permission::Admin), A),
            Ok(())
        );
        assert_eq!(authorize(&p, Action::Campaign(Permission::View), B), Ok(()));
        assert!(authorize(&p, Action::Campaign(Permission::Admin), B).is_err());
        assert!(authorize(&p, Action::ManageCampaign, B).is_err());
    }

    #[test]
    fn members_have_exactly_their_named_permissions() {
        let m = user(&[(
            "cmp_a",
            Role::Member,
            &[Permission::View, Permission::Listen],
        )]);
        for p in Permission::ALL {
            let expected = matches!(p, Permission::View | Permission::Listen);
            assert_eq!(
                authorize(&m, Action::Campaign(p), A).is_ok(),
                expected,
                "{p:?}"
            );
        }
        assert!(authorize(&m, Action::ManageCampaign, A).is_err());
    }

    #[test]
    fn viewers_read_and_analysts_export() {
        let v = user(&[("cmp_a", Role::Viewer, &[Permission::Admin])]);
        let a = user(&[("cmp_a", Role::Analyst, &[Permission::Admin])]);
        for p in Permission::ALL {
            assert_eq!(
                authorize(&v, Action::Campaign(p), A).is_ok(),
                p == Permission::View
            );
            assert_eq!(
                authorize(&a, Action::Campaign(p), A).is_ok(),
                p == Permission::Export
            );
        }
    }

    #[test]
    fn a_narrowed_owner_key_does_not_manage_the_campaign() {
        let mut key = user(&[("cmp_a", Role::Owner, &[])]);
        key.key_id = Some("key_1".into());
        key.grants.get_mut("cmp_a").unwrap().permissions = [Permission::View].into();
        assert!(authorize(&key, Action::ManageCampaign, A).is_err());
        assert!(authorize(&key, Action::Campaign(Permission::Edit), A).is_err());
        let mut full = user(&[("cmp_a", Role::Owner, &[])]);
        full.key_id = Some("key_2".into());
        assert_eq!(authorize(&full, Action::ManageCampaign, A), Ok(()));
    }

    #[test]
    fn list_filters_follow_the_permission() {
        let p = user(&[("cmp_a", Role::Viewer, &[]), ("cmp_b", Role::Analyst, &[])]);
        assert_eq!(
            p.campaigns_with(Permission::View),
            Some(vec!["cmp_a".to_string()])
        );
        assert_eq!(
            p.campaigns_with(Permission::Export),
            Some(vec!["cmp_b".to_string()])
        );
        assert_eq!(
            Principal::admin_token().campaigns_with(Permission::View),
            None
        );
    }

    #[test]
    fn permission_lists_round_trip_and_name_the_unknown() {
        let set = Permission::parse_list("view, export,admin").unwrap();
        assert_eq!(Permission::join(&set), "view,export,admin");
        assert_eq!(Permission::parse_list("view,fly"), Err("fly".to_string()));
        assert!(Permission::parse_list("").unwrap().is_empty());
    }
}
