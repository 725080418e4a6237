//! Entra ID: token endpoint URLs and requests over HTTPS.

use serde_json::Value;

use super::Emulator;

impl Emulator {
    /// The v1 token endpoint of `tenant`, as adal calls it.
    pub fn v1_url(&self, tenant: &str) -> String {
        format!(
            "{}/{tenant}/oauth2/token?api-version=1.0",
            self.entra_base()
        )
    }

    /// The v2 token endpoint of `tenant`, as MSAL calls it.
    pub fn v2_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.entra_base())
    }

    /// A form POST over HTTPS; the raw response, for tests that check headers and body.
    pub async fn post(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.https()
            .post(url)
            .form(form)
            .send()
            .await
            .expect("the request is answered")
    }

    /// A GET over HTTPS that must answer JSON: `(status, body)`.
    pub async fn get_json(&self, url: &str) -> (u16, Value) {
        let response = self.https().get(url).send().await.expect("answered");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }
}
