//! Writes the CRDs and the warning policies to `deploy/crds/` (or to the directory given with
//! `--out-dir DIR`), or prints them as one YAML stream with `--stdout`. A binary target does not get the k8s-openapi version
//! feature of the crate's dev-dependencies, so run it as
//! `K8S_OPENAPI_ENABLED_VERSION=1.36 cargo run -p podid-api --bin crdgen`.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: crdgen [--stdout | --out-dir DIR]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out_dir = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds"),
        ["--out-dir", dir] => PathBuf::from(dir),
        ["--stdout"] => {
            print!("{}", podid_api::manifests_yaml());
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(err) = std::fs::create_dir_all(&out_dir) {
        eprintln!("crdgen: cannot create {}: {err}", out_dir.display());
        return ExitCode::FAILURE;
    }
    for manifest in podid_api::manifests() {
        let path = out_dir.join(&manifest.file_name);
        if let Err(err) = std::fs::write(&path, &manifest.yaml) {
            eprintln!("crdgen: cannot write {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
