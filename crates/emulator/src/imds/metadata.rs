//! The non-token endpoints: `/metadata/instance[/…]`, `/metadata/identity/info` and
//! `/metadata/versions`.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::admission::{self, RequestHead};
use super::instance::{self, Rendered};
use super::reply::{self, InstanceError};
use super::{MachineContext, OP_IDENTITY_INFO, OP_INSTANCE, OP_REJECTED, OP_VERSIONS, versions};

fn head(req: &Request) -> RequestHead<'_> {
    RequestHead::of(req.headers(), req.uri().query())
}

pub fn instance(ctx: &MachineContext, req: &Request, path: &[String]) -> Response {
    let format = match admission::admit_instance(&head(req), ctx.knobs().strict_metadata_case) {
        Ok(format) => format,
        Err(refusal) => return refusal.instance_error().respond(OP_REJECTED),
    };
    let doc = {
        let world = ctx.shared.world();
        let Some((compute, machine)) = world.machine(&ctx.machine) else {
            return machine_gone(ctx).respond(OP_INSTANCE);
        };
        instance::document(compute, machine, &ctx.machine)
    };
    let Some(node) = instance::walk(&doc, path) else {
        return InstanceError {
            status: StatusCode::NOT_FOUND,
            body: json!({ "error": format!("Not found: /metadata/instance/{}", path.join("/")) }),
        }
        .respond(OP_INSTANCE);
    };
    match instance::render(node, format) {
        Ok(Rendered::Json(value)) => reply::json(StatusCode::OK, OP_INSTANCE, &value),
        Ok(Rendered::Text(text)) => reply::text(OP_INSTANCE, text),
        Err(instance::LeafNeedsText) => InstanceError::bad_request(
            "Leaf nodes are served only as text; add format=text to the query. For more \
             information refer to aka.ms/azureimds",
        )
        .respond(OP_INSTANCE),
    }
}

pub fn identity_info(ctx: &MachineContext, req: &Request) -> Response {
    if let Err(refusal) =
        admission::admit_identity_info(&head(req), ctx.knobs().strict_metadata_case)
    {
        return refusal.identity_error().respond(OP_REJECTED);
    }
    let tenant_id = ctx.shared.world().tenant_id.clone();
    reply::json(
        StatusCode::OK,
        OP_IDENTITY_INFO,
        &json!({ "tenantId": tenant_id }),
    )
}

pub fn versions(ctx: &MachineContext, req: &Request) -> Response {
    if let Err(refusal) = admission::admit_versions(&head(req), ctx.knobs().strict_metadata_case) {
        return refusal.instance_error().respond(OP_REJECTED);
    }
    reply::json(
        StatusCode::OK,
        OP_VERSIONS,
        &json!({ "apiVersions": versions::oldest_first() }),
    )
}

/// The machine was removed from the world while its listener still runs.
fn machine_gone(ctx: &MachineContext) -> InstanceError {
    InstanceError {
        status: StatusCode::NOT_FOUND,
        body: json!({ "error": format!("Not found: machine {} no longer exists in the emulated world", ctx.name) }),
    }
}
