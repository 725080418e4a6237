//! CEL expressions over a spec, written once for the two places the API server evaluates them:
//! the CRD's validation rules (refusals) and the ValidatingAdmissionPolicies (warnings). The two
//! see the spec differently, so field access is built here and nowhere else.

/// Where an expression runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// A CRD validation rule attached to `spec`: `self` is the spec, typed by the schema, and a
    /// property named like a CEL keyword is read as `__<keyword>__`.
    Crd,
    /// A ValidatingAdmissionPolicy validation: the spec is `object.spec`, an untyped map, so a
    /// property named like a CEL keyword is read by index and tested with `in`; a `nullable`
    /// property may hold `null` (the CRD context never sees one: `has` is false for it there).
    Policy,
}

/// CEL keywords; Kubernetes escapes properties with these names in schema-typed objects.
const CEL_KEYWORDS: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

impl Context {
    fn root(self) -> &'static str {
        match self {
            Self::Crd => "self",
            Self::Policy => "object.spec",
        }
    }

    /// `parent` followed by the property `name`.
    fn member(self, parent: &str, name: &str) -> String {
        match (self, CEL_KEYWORDS.contains(&name)) {
            (_, false) => format!("{parent}.{name}"),
            (Self::Crd, true) => format!("{parent}.__{name}__"),
            (Self::Policy, true) => format!("{parent}['{name}']"),
        }
    }

    /// Whether the property `name` of `parent` is present.
    fn has_member(self, parent: &str, name: &str) -> String {
        match (self, CEL_KEYWORDS.contains(&name)) {
            (Self::Policy, true) => format!("'{name}' in {parent}"),
            _ => format!("has({})", self.member(parent, name)),
        }
    }

    /// The value at `path` below the spec (`["clientPassword", "name"]`).
    pub fn field(self, path: &[&str]) -> String {
        path.iter().fold(self.root().to_owned(), |parent, name| {
            self.member(&parent, name)
        })
    }

    /// Whether `path` is present, each object on the way included.
    pub fn has(self, path: &[&str]) -> String {
        let mut parent = self.root().to_owned();
        let mut checks = Vec::with_capacity(path.len());
        for name in path {
            checks.push(self.has_member(&parent, name));
            parent = self.member(&parent, name);
        }
        checks.join(" && ")
    }

    /// Whether the string at `path` is present and not empty.
    pub fn non_empty_string(self, path: &[&str]) -> String {
        format!("{} && {} != ''", self.has(path), self.field(path))
    }

    /// The string at `path`, or `''` when it is absent.
    pub fn string_or_empty(self, path: &[&str]) -> String {
        format!("({} ? {} : '')", self.has(path), self.field(path))
    }

    /// Whether the list or map at `path` is present and has an entry.
    pub fn non_empty_collection(self, path: &[&str]) -> String {
        let field = self.field(path);
        match self {
            Self::Crd => format!("{} && size({field}) > 0", self.has(path)),
            Self::Policy => format!("{} && {field} != null && size({field}) > 0", self.has(path)),
        }
    }

    /// Whether an AzureIdentity spec is a user-assigned managed identity (`type` 0 or omitted).
    pub fn is_managed_identity(self) -> String {
        let type_ = self.field(&["type"]);
        format!("(!{} || {type_} == 0)", self.has(&["type"]))
    }

    /// Whether an AzureIdentity spec has `type` equal to `value`.
    pub fn is_type(self, value: i64) -> String {
        format!(
            "({} && {} == {value})",
            self.has(&["type"]),
            self.field(&["type"])
        )
    }

    /// Whether an AzureIdentity spec is a service principal (`type` 1 or 2).
    pub fn is_service_principal(self) -> String {
        let type_ = self.field(&["type"]);
        format!(
            "({} && ({type_} == 1 || {type_} == 2))",
            self.has(&["type"])
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_rules_read_the_typed_spec_and_escape_keywords() {
        let crd = Context::Crd;
        assert_eq!(crd.field(&["clientID"]), "self.clientID");
        assert_eq!(
            crd.field(&["clientPassword", "namespace"]),
            "self.clientPassword.__namespace__"
        );
        assert_eq!(
            crd.has(&["clientPassword", "namespace"]),
            "has(self.clientPassword) && has(self.clientPassword.__namespace__)"
        );
        assert_eq!(
            crd.non_empty_string(&["tenantID"]),
            "has(self.tenantID) && self.tenantID != ''"
        );
        assert_eq!(
            crd.non_empty_collection(&["auxiliaryTenantIDs"]),
            "has(self.auxiliaryTenantIDs) && size(self.auxiliaryTenantIDs) > 0"
        );
    }

    #[test]
    fn policies_read_the_untyped_spec_and_index_keywords() {
        let policy = Context::Policy;
        assert_eq!(policy.field(&["clientID"]), "object.spec.clientID");
        assert_eq!(
            policy.field(&["clientPassword", "namespace"]),
            "object.spec.clientPassword['namespace']"
        );
        assert_eq!(
            policy.has(&["clientPassword", "namespace"]),
            "has(object.spec.clientPassword) && 'namespace' in object.spec.clientPassword"
        );
        assert_eq!(
            policy.string_or_empty(&["clientPassword", "name"]),
            "(has(object.spec.clientPassword) && has(object.spec.clientPassword.name) ? \
             object.spec.clientPassword.name : '')"
        );
        // A nullable list may hold null here, and size(null) is an error.
        assert_eq!(
            policy.non_empty_collection(&["auxiliaryTenantIDs"]),
            "has(object.spec.auxiliaryTenantIDs) && object.spec.auxiliaryTenantIDs != null && \
             size(object.spec.auxiliaryTenantIDs) > 0"
        );
    }

    #[test]
    fn identity_type_predicates_treat_an_omitted_type_as_zero() {
        assert_eq!(
            Context::Crd.is_managed_identity(),
            "(!has(self.type) || self.type == 0)"
        );
        assert_eq!(
            Context::Policy.is_type(2),
            "(has(object.spec.type) && object.spec.type == 2)"
        );
        assert_eq!(
            Context::Crd.is_service_principal(),
            "(has(self.type) && (self.type == 1 || self.type == 2))"
        );
    }
}
