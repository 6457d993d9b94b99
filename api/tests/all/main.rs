//! berth-api's integration tests: one binary, as in wasmtime.
//!
//! `manifests` runs every `tests/fixtures/manifests/NAME.yaml` through
//! [`berth_api::manifest::parse_manifests`] with `NAME.yaml` as the file
//! label. A bad case has `NAME.error`, the exact error text; a good case has
//! `NAME.objects`, one `Kind namespace/name` line per object. Run with
//! `BLESS=1` to rewrite the expected files from the actual output, then
//! review the diff.

// Test support code outside #[test] functions fails loudly on purpose.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

use berth_api::manifest::parse_manifests;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/manifests")
}

/// What parsing `NAME.yaml` gave, and the file that pins it.
fn run_case(yaml: &Path) -> Result<(PathBuf, String), Box<dyn Error>> {
    let label = yaml.file_name().ok_or("fixture without a name")?;
    let label = label.to_string_lossy();
    let text = fs::read_to_string(yaml)?;
    Ok(match parse_manifests(&label, &text) {
        Ok(objects) => {
            let lines: Vec<String> = objects.iter().map(|object| object.describe()).collect();
            (yaml.with_extension("objects"), lines.join("\n"))
        }
        Err(error) => (yaml.with_extension("error"), error.to_string()),
    })
}

#[test]
fn manifests() -> Result<(), Box<dyn Error>> {
    let bless = std::env::var_os("BLESS").is_some();
    let mut cases: Vec<PathBuf> = fs::read_dir(fixtures())?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    cases.retain(|path| path.extension().is_some_and(|ext| ext == "yaml"));
    cases.sort();
    assert!(cases.len() >= 12, "only {} manifest fixtures", cases.len());

    let mut failures = Vec::new();
    for yaml in &cases {
        let (expected_file, actual) = run_case(yaml)?;
        let other = if expected_file.extension().is_some_and(|ext| ext == "error") {
            yaml.with_extension("objects")
        } else {
            yaml.with_extension("error")
        };
        if bless {
            fs::write(&expected_file, format!("{actual}\n"))?;
            if other.exists() {
                fs::remove_file(&other)?;
            }
            continue;
        }
        if other.exists() {
            failures.push(format!(
                "{}: expected the outcome in {}, got\n  {actual}",
                yaml.display(),
                other.display()
            ));
            continue;
        }
        match fs::read_to_string(&expected_file) {
            Ok(expected) if expected.trim_end() == actual => {}
            Ok(expected) => failures.push(format!(
                "{}:\n  expected: {}\n  actual:   {actual}",
                yaml.display(),
                expected.trim_end()
            )),
            Err(error) => failures.push(format!(
                "{}: cannot read {}: {error}; actual:\n  {actual}",
                yaml.display(),
                expected_file.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[test]
fn manifest_file_is_named_in_errors() -> Result<(), Box<dyn Error>> {
    let path = fixtures().join("negative-replicas.yaml");
    let error = berth_api::manifest::parse_manifest_file(&path).err();
    let expected = format!(
        "invalid manifest {}: Deployment default/hello: spec.replicas: must be >= 0",
        path.display()
    );
    assert_eq!(error.map(|error| error.to_string()), Some(expected));
    Ok(())
}
