//! Pre-1.6 key spellings. Releases up to 1.5 decoded JSON keys ignoring case, so `ResourceID`,
//! `resourceid` and `resourceID` all worked; the v1 CRDs of 1.8 declare only the camelCase key, so
//! the API server silently pruned the others. podid declares them so that it can refuse or warn
//! instead of dropping them (see `docs/crds.md`); its own types never read them.

use crate::cel::Context;
use crate::kind::SpecKind;

/// What upstream 1.8 lost when an object carried only the legacy spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenAlone {
    /// A value the object needs: refused, so that the user renames the key.
    Refuse,
    /// A value nothing reads, or one with a default: accepted with a warning saying what
    /// happens instead (the text completes "... and is ignored, ...").
    Warn(&'static str),
}

/// The shape of the key's value, which decides how two spellings are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// A string or a string map: compared with `==`.
    Plain,
    /// A `{name, namespace}` Secret reference: compared key by key, absent meaning empty.
    SecretReference,
}

/// A spelling that older releases accepted but the v1 CRD never declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegacyKey {
    /// Spec the key appears in.
    pub kind: SpecKind,
    /// Path of the object holding the key, below the spec (empty for the spec itself).
    pub parent: &'static [&'static str],
    /// The old spelling.
    pub legacy: &'static str,
    /// The key to use instead.
    pub canonical: &'static str,
    /// Its value's shape.
    pub value: Value,
    /// What happens when it appears without the canonical key.
    pub when_alone: WhenAlone,
}

const fn key(
    kind: SpecKind,
    parent: &'static [&'static str],
    legacy: &'static str,
    canonical: &'static str,
) -> LegacyKey {
    LegacyKey {
        kind,
        parent,
        legacy,
        canonical,
        value: Value::Plain,
        when_alone: WhenAlone::Refuse,
    }
}

const SPEC: &[&str] = &[];
const CLIENT_PASSWORD: &[&str] = &["clientPassword"];

/// Every legacy spelling: the pre-1.6 capitalised forms of the upstream migration docs, the
/// all-lowercase forms releases up to 1.5 wrote, and capitalised `Name`/`Namespace` inside
/// `clientPassword`. The API server accepts properties that differ only by case side by side.
pub const LEGACY_KEYS: &[LegacyKey] = {
    use SpecKind::{AzureIdentity, AzureIdentityBinding, AzurePodIdentityException};
    let secret = Value::SecretReference;
    &[
        key(AzureIdentity, SPEC, "ResourceID", "resourceID"),
        key(AzureIdentity, SPEC, "resourceid", "resourceID"),
        key(AzureIdentity, SPEC, "ClientID", "clientID"),
        key(AzureIdentity, SPEC, "clientid", "clientID"),
        LegacyKey {
            value: secret,
            ..key(AzureIdentity, SPEC, "ClientPassword", "clientPassword")
        },
        LegacyKey {
            value: secret,
            ..key(AzureIdentity, SPEC, "clientpassword", "clientPassword")
        },
        key(AzureIdentity, SPEC, "TenantID", "tenantID"),
        key(AzureIdentity, SPEC, "tenantid", "tenantID"),
        LegacyKey {
            when_alone: WhenAlone::Warn("as upstream never read adResourceID"),
            ..key(AzureIdentity, SPEC, "adresourceid", "adResourceID")
        },
        LegacyKey {
            when_alone: WhenAlone::Warn(
                "so the default authority https://login.microsoftonline.com/ is used, as \
                 upstream 1.8 did",
            ),
            ..key(AzureIdentity, SPEC, "adendpoint", "adEndpoint")
        },
        key(AzureIdentity, CLIENT_PASSWORD, "Name", "name"),
        key(AzureIdentity, CLIENT_PASSWORD, "Namespace", "namespace"),
        key(AzureIdentityBinding, SPEC, "AzureIdentity", "azureIdentity"),
        key(AzureIdentityBinding, SPEC, "azureidentity", "azureIdentity"),
        key(AzureIdentityBinding, SPEC, "Selector", "selector"),
        key(AzurePodIdentityException, SPEC, "PodLabels", "podLabels"),
        key(AzurePodIdentityException, SPEC, "podlabels", "podLabels"),
    ]
};

/// The legacy keys of one kind.
pub fn legacy_keys(kind: SpecKind) -> impl Iterator<Item = &'static LegacyKey> {
    LEGACY_KEYS.iter().filter(move |key| key.kind == kind)
}

impl LegacyKey {
    fn path_to(&self, name: &'static str) -> Vec<&'static str> {
        self.parent.iter().copied().chain([name]).collect()
    }

    /// Path of the legacy key below the spec.
    pub fn legacy_path(&self) -> Vec<&'static str> {
        self.path_to(self.legacy)
    }

    fn canonical_path(&self) -> Vec<&'static str> {
        self.path_to(self.canonical)
    }

    fn shown(path: &[&str]) -> String {
        std::iter::once("spec")
            .chain(path.iter().copied())
            .collect::<Vec<_>>()
            .join(".")
    }

    /// `spec.<parent>.<legacy>`, as messages show it.
    pub fn shown_legacy(&self) -> String {
        Self::shown(&self.legacy_path())
    }

    fn shown_canonical(&self) -> String {
        Self::shown(&self.canonical_path())
    }

    /// Holds unless the legacy key appears without the canonical one.
    pub fn not_alone(&self, context: Context) -> String {
        format!(
            "!({}) || ({})",
            context.has(&self.legacy_path()),
            context.has(&self.canonical_path())
        )
    }

    /// Holds unless both spellings appear with different values.
    pub fn not_conflicting(&self, context: Context) -> String {
        format!("{} || ({})", self.not_both(context), self.equal(context))
    }

    /// Holds unless both spellings appear with the same value.
    pub fn not_repeated(&self, context: Context) -> String {
        format!("{} || !({})", self.not_both(context), self.equal(context))
    }

    fn not_both(&self, context: Context) -> String {
        format!(
            "!({}) || !({})",
            context.has(&self.legacy_path()),
            context.has(&self.canonical_path())
        )
    }

    /// Both spellings carry the same value (both are known to be present).
    fn equal(&self, context: Context) -> String {
        match self.value {
            Value::Plain => format!(
                "{} == {}",
                context.field(&self.legacy_path()),
                context.field(&self.canonical_path())
            ),
            Value::SecretReference => ["name", "namespace"]
                .iter()
                .map(|part| {
                    let mut legacy = self.legacy_path();
                    legacy.push(part);
                    let mut canonical = self.canonical_path();
                    canonical.push(part);
                    format!(
                        "{} == {}",
                        context.string_or_empty(&legacy),
                        context.string_or_empty(&canonical)
                    )
                })
                .collect::<Vec<_>>()
                .join(" && "),
        }
    }

    /// Refusal of the legacy key on its own.
    pub fn alone_message(&self) -> String {
        format!(
            "{legacy} is the pre-1.6 spelling of {canonical}: rename the key to {key} (upstream \
             1.8 silently dropped its value)",
            legacy = self.shown_legacy(),
            canonical = self.shown_canonical(),
            key = self.canonical,
        )
    }

    /// Warning for a legacy key on its own whose loss changes nothing (`WhenAlone::Warn`).
    pub fn ignored_message(&self, consequence: &str) -> String {
        format!(
            "{legacy} is the pre-1.6 spelling of {canonical} and is ignored, {consequence}: \
             rename the key to {key}",
            legacy = self.shown_legacy(),
            canonical = self.shown_canonical(),
            key = self.canonical,
        )
    }

    /// Refusal of both spellings with different values.
    pub fn conflict_message(&self) -> String {
        format!(
            "{legacy} and {canonical} are both set, to different values: delete {legacy}, the \
             pre-1.6 spelling (upstream 1.8 dropped it and used {canonical}; releases up to 1.5 \
             could pick either)",
            legacy = self.shown_legacy(),
            canonical = self.shown_canonical(),
        )
    }

    /// Warning for both spellings with the same value.
    pub fn repeated_message(&self) -> String {
        format!(
            "{legacy} repeats {canonical} under its pre-1.6 spelling and is ignored: delete it",
            legacy = self.shown_legacy(),
            canonical = self.shown_canonical(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn find(legacy: &str) -> &'static LegacyKey {
        LEGACY_KEYS.iter().find(|key| key.legacy == legacy).unwrap()
    }

    #[test]
    fn keys_are_unique_and_differ_from_their_canonical_key_only_by_case() {
        let mut seen = HashSet::new();
        for key in LEGACY_KEYS {
            assert!(
                seen.insert((key.kind, key.parent, key.legacy)),
                "{key:?} twice"
            );
            assert_ne!(key.legacy, key.canonical);
            assert!(key.legacy.eq_ignore_ascii_case(key.canonical), "{key:?}");
        }
    }

    #[test]
    fn only_keys_nothing_needs_are_merely_warned_about_when_alone() {
        let warned: Vec<&str> = LEGACY_KEYS
            .iter()
            .filter(|key| matches!(key.when_alone, WhenAlone::Warn(_)))
            .map(|key| key.legacy)
            .collect();
        assert_eq!(warned, ["adresourceid", "adendpoint"]);
    }

    #[test]
    fn only_client_password_spellings_are_secret_references() {
        for key in LEGACY_KEYS {
            assert_eq!(
                key.value == Value::SecretReference,
                key.canonical == "clientPassword",
                "{key:?}"
            );
        }
    }

    #[test]
    fn expressions_test_presence_and_compare_values() {
        let resource_id = find("ResourceID");
        assert_eq!(
            resource_id.not_alone(Context::Crd),
            "!(has(self.ResourceID)) || (has(self.resourceID))"
        );
        assert_eq!(
            resource_id.not_conflicting(Context::Crd),
            "!(has(self.ResourceID)) || !(has(self.resourceID)) || \
             (self.ResourceID == self.resourceID)"
        );
        assert_eq!(
            resource_id.not_repeated(Context::Policy),
            "!(has(object.spec.ResourceID)) || !(has(object.spec.resourceID)) || \
             !(object.spec.ResourceID == object.spec.resourceID)"
        );
        let name = find("Name");
        assert_eq!(
            name.not_alone(Context::Crd),
            "!(has(self.clientPassword) && has(self.clientPassword.Name)) || \
             (has(self.clientPassword) && has(self.clientPassword.name))"
        );
    }

    #[test]
    fn secret_references_compare_name_and_namespace_with_absent_as_empty() {
        let expression = find("ClientPassword").not_conflicting(Context::Crd);
        for part in [
            "(has(self.ClientPassword) && has(self.ClientPassword.name) ? \
             self.ClientPassword.name : '') == (has(self.clientPassword) && \
             has(self.clientPassword.name) ? self.clientPassword.name : '')",
            "(has(self.ClientPassword) && has(self.ClientPassword.__namespace__) ? \
             self.ClientPassword.__namespace__ : '')",
        ] {
            assert!(expression.contains(part), "{expression}");
        }
        assert!(
            !expression.contains("self.ClientPassword == "),
            "{expression}"
        );
    }

    #[test]
    fn messages_name_both_keys_and_the_fix() {
        let resource_id = find("ResourceID");
        assert_eq!(
            resource_id.alone_message(),
            "spec.ResourceID is the pre-1.6 spelling of spec.resourceID: rename the key to \
             resourceID (upstream 1.8 silently dropped its value)"
        );
        assert_eq!(
            find("Namespace").conflict_message(),
            "spec.clientPassword.Namespace and spec.clientPassword.namespace are both set, to \
             different values: delete spec.clientPassword.Namespace, the pre-1.6 spelling \
             (upstream 1.8 dropped it and used spec.clientPassword.namespace; releases up to 1.5 \
             could pick either)"
        );
        assert_eq!(
            find("Selector").repeated_message(),
            "spec.Selector repeats spec.selector under its pre-1.6 spelling and is ignored: \
             delete it"
        );
        let WhenAlone::Warn(consequence) = find("adendpoint").when_alone else {
            panic!("adendpoint is warned about");
        };
        assert_eq!(
            find("adendpoint").ignored_message(consequence),
            "spec.adendpoint is the pre-1.6 spelling of spec.adEndpoint and is ignored, so the \
             default authority https://login.microsoftonline.com/ is used, as upstream 1.8 did: \
             rename the key to adEndpoint"
        );
    }
}
