//! Builds every guest under `sdk/examples/` (one workspace) for
//! `wasm32-wasip2` into `target/guest`, the directory `make dev` uses too, so
//! each component is built once and shared by every test binary. The
//! examples written with berth-sdk (`hello-sdk`, `json-api`, `call-service`,
//! `job-sdk`) depend on `sdk/berth-sdk` by path, so its sources are watched
//! too.

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

const GUESTS: &[&str] = &[
    "hello",
    "caller",
    "hostile",
    "job",
    "hello-sdk",
    "json-api",
    "call-service",
    "job-sdk",
];

/// The guest SDK's crates, which the `-sdk` examples depend on by path.
const SDK_CRATES: &[&str] = &["berth-sdk", "berth-sdk-macros"];

fn main() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let root = manifest_dir
        .parent()
        .and_then(|sdk| sdk.parent())
        .ok_or("sdk/test-programs has no workspace root")?
        .to_path_buf();
    let target_dir = root.join("target").join("guest");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let examples = root.join("sdk").join("examples");
    for file in ["Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", examples.join(file).display());
    }
    for krate in SDK_CRATES {
        let dir = root.join("sdk").join(krate);
        println!("cargo:rerun-if-changed={}", dir.join("src").display());
        println!(
            "cargo:rerun-if-changed={}",
            dir.join("Cargo.toml").display()
        );
    }
    for guest in GUESTS {
        let dir = examples.join(guest);
        println!("cargo:rerun-if-changed={}", dir.join("src").display());
        println!(
            "cargo:rerun-if-changed={}",
            dir.join("Cargo.toml").display()
        );
    }
    let status = Command::new(&cargo)
        .current_dir(&examples)
        .args([
            "build",
            "--workspace",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir)
        // Flags meant for the host build must not leak into the guests'.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_PROFILE_RELEASE_DEBUG")
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !status.success() {
        return Err(format!("building the example components failed: {status}"));
    }
    let mut consts = String::new();
    for guest in GUESTS {
        let wasm = target_dir
            .join("wasm32-wasip2")
            .join("release")
            .join(format!("{guest}.wasm"));
        let _ = writeln!(
            consts,
            "/// Path of the `{guest}` example component.\npub const {}: &str = {:?};",
            guest.to_uppercase().replace('-', "_"),
            wasm.display().to_string()
        );
    }
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    std::fs::write(out.join("guests.rs"), consts).map_err(|e| e.to_string())?;
    Ok(())
}
