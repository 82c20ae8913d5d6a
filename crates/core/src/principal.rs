//! The verified identity behind every request.

use crate::ids::{IdError, TenantId, UserId};
use clawhive_proto::v1 as pb;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Principal {
    pub tenant: TenantId,
    pub user: UserId,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub display_name: String,
}

impl Principal {
    pub fn new(tenant: TenantId, user: UserId) -> Self {
        Self { tenant, user, roles: Vec::new(), groups: Vec::new(), display_name: String::new() }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    pub fn is_admin(&self) -> bool {
        self.has_role("admin")
    }
}

impl From<&Principal> for pb::Principal {
    fn from(p: &Principal) -> Self {
        pb::Principal {
            tenant_id: p.tenant.to_string(),
            user_id: p.user.to_string(),
            roles: p.roles.clone(),
            groups: p.groups.clone(),
            display_name: p.display_name.clone(),
        }
    }
}

impl TryFrom<&pb::Principal> for Principal {
    type Error = IdError;
    fn try_from(p: &pb::Principal) -> Result<Self, IdError> {
        Ok(Principal {
            tenant: TenantId::new(p.tenant_id.clone())?,
            user: UserId::new(p.user_id.clone())?,
            roles: p.roles.clone(),
            groups: p.groups.clone(),
            display_name: p.display_name.clone(),
        })
    }
}
