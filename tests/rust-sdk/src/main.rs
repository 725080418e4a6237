//! Gets a token with azure_identity's `ManagedIdentityCredential` and its default settings, as an
//! application in a pod would: no endpoint is configured, so the SDK calls 169.254.169.254. The
//! node lab's tests (tests/node/test_sdks.py) run it inside a lab pod's network namespace only; it
//! is never run on the machine's own network.
//!
//! ```text
//! podtoken CLIENT_ID RESOURCE   (CLIENT_ID may be empty: the pod's only identity)
//! ```
//!
//! Prints `{"token": "…"}` or `{"error": "…"}` as JSON on stdout (as tests/go/cmd/podtoken).

use std::process::ExitCode;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [client_id, resource] = args.as_slice() else {
        eprintln!("usage: podtoken CLIENT_ID RESOURCE");
        return ExitCode::from(2);
    };
    let answer = match token(client_id, resource).await {
        Ok(token) => serde_json::json!({ "token": token }),
        Err(error) => serde_json::json!({ "error": error }),
    };
    println!("{answer}");
    ExitCode::SUCCESS
}

async fn token(client_id: &str, resource: &str) -> Result<String, String> {
    let options = ManagedIdentityCredentialOptions {
        user_assigned_id: (!client_id.is_empty())
            .then(|| UserAssignedId::ClientId(client_id.to_owned())),
        ..Default::default()
    };
    let credential = ManagedIdentityCredential::new(Some(options)).map_err(|e| e.to_string())?;
    let scope = format!("{resource}/.default");
    let token = tokio::time::timeout(
        Duration::from_secs(180),
        credential.get_token(&[&scope], None),
    )
    .await
    .map_err(|_| "no token within 3 minutes".to_owned())?
    .map_err(|e| e.to_string())?;
    Ok(token.token.secret().to_owned())
}
