//! The CRDs and warning policies committed under deploy/crds/ are exactly what the code
//! generates.

use std::collections::BTreeSet;
use std::path::PathBuf;

const REGENERATE: &str = "run `K8S_OPENAPI_ENABLED_VERSION=1.36 cargo run -p podid-api --bin crdgen` \
     and commit deploy/crds/";

fn crd_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds")
}

#[test]
fn committed_crds_match_the_generated_ones() {
    for manifest in podid_api::manifests() {
        let path = crd_dir().join(&manifest.file_name);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}; {REGENERATE}", path.display()));
        assert!(
            committed == manifest.yaml,
            "{} differs from what crates/api generates; {REGENERATE}",
            path.display()
        );
    }
}

#[test]
fn deploy_crds_holds_no_other_files() {
    let expected: BTreeSet<String> = podid_api::manifests()
        .into_iter()
        .map(|m| m.file_name)
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(crd_dir())
        .unwrap_or_else(|err| panic!("cannot list {}: {err}; {REGENERATE}", crd_dir().display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        present, expected,
        "stale files in deploy/crds/; {REGENERATE}"
    );
}
