//! IMDS: requests to one machine's IMDS listener.

use super::{Emulator, Reply};

/// The resource IMDS token requests name, spelled without the trailing slash.
pub const ARM_RESOURCE: &str = "https://management.azure.com";
/// The query of a well-formed token request for [`ARM_RESOURCE`].
pub const OK_QUERY: &str = "api-version=2018-02-01&resource=https://management.azure.com";

/// A plain-text answer, read whole.
#[derive(Debug)]
pub struct TextReply {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body.
    pub text: String,
}

impl Emulator {
    /// `http://<IMDS of machine><path_and_query>`; see [`Emulator::imds_base`].
    pub fn imds_url(&self, machine: &str, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.imds_base(machine))
    }

    /// An IMDS GET with `Metadata: true`.
    pub async fn imds_get(&self, machine: &str, path_and_query: &str) -> Reply {
        self.imds_get_with(machine, path_and_query, &[("Metadata", "true")])
            .await
    }

    /// An IMDS GET with exactly these headers.
    pub async fn imds_get_with(
        &self,
        machine: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.http().get(self.imds_url(machine, path_and_query));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// An IMDS GET with `Metadata: true` for a `format=text` answer, which [`Reply`] does not
    /// keep.
    pub async fn imds_get_text(&self, machine: &str, path_and_query: &str) -> TextReply {
        let response = self
            .http()
            .get(self.imds_url(machine, path_and_query))
            .header("Metadata", "true")
            .send()
            .await
            .expect("IMDS answers");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.text().await.expect("a readable body");
        TextReply {
            status,
            content_type,
            text,
        }
    }

    /// An IMDS token request for [`ARM_RESOURCE`] plus `extra` query text (`&client_id=…`).
    pub async fn imds_token(&self, machine: &str, extra: &str) -> Reply {
        self.imds_get(
            machine,
            &format!("/metadata/identity/oauth2/token?{OK_QUERY}{extra}"),
        )
        .await
    }
}
