//! ARM resource IDs: `ResourceId::parse`, `from_provider_id`, `MachineId::from_resource_id`
//! and the IDs found in ARM's error messages.
//!
//! Input: text. A parsed ID re-serialised and parsed again is equal (also in its exact
//! spelling), and so is every parent; the accessors agree with the text.

use podid_azure::arm::{ArmErrorBody, MachineId};
use podid_azure::resource_id::{ResourceId, USER_ASSIGNED_IDENTITY_TYPE};

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = ResourceId::parse(text) {
        check(&id);
    }
    if let Ok(id) = ResourceId::from_provider_id(text) {
        check(&id);
    }
    // The IDs a refusal names, wherever they are in its message.
    let error = ArmErrorBody {
        code: "LinkedAuthorizationFailed".into(),
        message: text.into(),
        ..ArmErrorBody::default()
    };
    for id in error.failing_identities() {
        assert!(id.is_type(USER_ASSIGNED_IDENTITY_TYPE));
        check(&id);
    }
}

fn check(id: &ResourceId) {
    let text = id.to_string();
    let again =
        ResourceId::parse(&text).unwrap_or_else(|e| panic!("{text:?} does not parse again: {e}"));
    assert_eq!(&again, id);
    assert_eq!(
        again.to_string(),
        text,
        "re-serialising changed the spelling"
    );
    assert_eq!(
        ResourceId::parse(&text.to_ascii_uppercase()).as_ref(),
        Ok(id),
        "case matters in {text:?}"
    );
    assert_eq!(
        ResourceId::from_provider_id(&format!("azure://{text}")).as_ref(),
        Ok(id)
    );
    assert!(text.starts_with("/subscriptions/"));
    assert!(
        text.ends_with(id.name()),
        "{text:?} does not end with {:?}",
        id.name()
    );
    assert_eq!(
        id.resource_group().is_some(),
        text[1..].to_ascii_lowercase().split('/').nth(2) == Some("resourcegroups")
    );
    if let Some(kind) = id.resource_type() {
        assert!(id.is_type(&kind));
        assert!(id.is_type(&kind.to_ascii_uppercase()));
    }
    let _ = id.resources().count();
    let _ = MachineId::from_resource_id(id).map(|m| (m.kind(), m.name().to_owned()));
    let mut depth = 0;
    let mut current = id.clone();
    while let Some(parent) = current.parent() {
        depth += 1;
        assert!(depth < 1024, "parents do not end");
        let parent_text = parent.to_string();
        assert!(
            text.to_ascii_lowercase()
                .starts_with(&parent_text.to_ascii_lowercase())
        );
        assert_eq!(ResourceId::parse(&parent_text).as_ref(), Ok(&parent));
        current = parent;
    }
}
