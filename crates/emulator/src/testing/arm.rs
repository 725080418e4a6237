//! ARM: tokens for principals of the world and requests over HTTPS.

use reqwest::Method;
use serde_json::Value;

use super::{Emulator, Reply};
use crate::tokens::{Subject, TokenRequest};

/// The audience ARM tokens carry.
pub const ARM_AUDIENCE: &str = "https://management.azure.com/";

impl Emulator {
    /// A token signed by the emulator's Entra ID for a principal of the world — a service
    /// principal's client ID or a user-assigned identity's name — with this audience, tenant and
    /// lifetime, issued at the emulator's current time.
    ///
    /// # Panics
    /// If the world has no such principal.
    pub fn token_with(
        &self,
        principal: &str,
        audience: &str,
        tenant: &str,
        lifetime_secs: i64,
    ) -> String {
        let (client_id, object_id) = {
            let world = self.shared().world();
            if let Some(sp) = world
                .service_principals
                .get(&principal.to_ascii_lowercase())
            {
                (sp.client_id.clone(), sp.object_id.clone())
            } else {
                let uami = world
                    .identities
                    .values()
                    .find(|i| i.name.eq_ignore_ascii_case(principal))
                    .unwrap_or_else(|| panic!("no principal {principal} in the world"));
                (uami.client_id.clone(), uami.principal_id.clone())
            }
        };
        let request = TokenRequest {
            tenant_id: tenant.to_string(),
            resource: audience.to_string(),
            client_id,
            object_id,
            subject: Subject::ServicePrincipal { certificate: false },
            version: 1,
            lifetime_secs,
        };
        self.shared()
            .tokens
            .issue(&request, self.shared().clock.unix())
            .expect("a token for the world's tenant")
            .access_token
    }

    /// An ARM token for a principal of the world (see [`Emulator::token_with`]) in the world's
    /// home tenant, valid for an hour.
    pub fn arm_token(&self, principal: &str) -> String {
        let tenant = self.shared().initial.tenant_id.clone();
        self.token_with(principal, ARM_AUDIENCE, &tenant, 3599)
    }

    /// `https://<arm><path>`; `path` starts with `/` and may carry a query.
    pub fn arm_url(&self, path: &str) -> String {
        format!("{}{path}", self.arm_base())
    }

    /// One ARM request; `token` `None` sends no `Authorization` header, `body` is sent as JSON.
    pub async fn arm(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self.https().request(method, self.arm_url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }
}
