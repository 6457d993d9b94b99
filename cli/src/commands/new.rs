//! `berth new NAME [--template http|job] [--dir DIR]`: a Cargo project
//! ready for `berth build` and `berth deploy`.
//!
//! The files come from `cli/src/templates/`, embedded in the binary, with
//! `{{name}}` and `{{sdk}}` filled in. berth-sdk is not on a registry, so
//! the project depends on it by path: `--sdk-path`, else `BERTH_SDK_PATH`,
//! else the `sdk/berth-sdk` directory of the source tree this binary was
//! built from. The `Cargo.lock` is the one `sdk/examples` builds with, so
//! the project resolves to crate versions this workspace already uses and
//! builds offline from the local cargo cache. No manifest is written:
//! `berth deploy` makes the Deployment or Job (decision 0040).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

/// The kinds of project `berth new` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// An HTTP service (`wasi:http/proxy`), deployed as a Deployment.
    Http,
    /// A command that runs to completion (`wasi:cli/run`), run as a Job.
    Job,
}

impl Template {
    /// The template's name, as `--template` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Template::Http => "http",
            Template::Job => "job",
        }
    }
}

/// What `berth new` is asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The package name, also the Deployment's.
    pub name: String,
    /// Which project.
    pub template: Template,
    /// Where to write it (default: `./NAME`).
    pub dir: Option<PathBuf>,
    /// The berth-sdk crate's directory.
    pub sdk_path: Option<PathBuf>,
}

/// A project `berth new` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The package name.
    pub name: String,
    /// Which template.
    pub template: Template,
    /// The project's directory, as given or `./NAME`.
    pub dir: PathBuf,
    /// The files written, relative to `dir`.
    pub files: Vec<&'static str>,
}

/// The environment variable naming the berth-sdk crate's directory.
pub const SDK_PATH_ENV: &str = "BERTH_SDK_PATH";

/// The berth-sdk crate of the source tree this binary was built from.
const BUILT_SDK_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk/berth-sdk");

const CARGO_TOML: &str = include_str!("../templates/Cargo.toml.in");
const HTTP_MAIN: &str = include_str!("../templates/http.rs");
const JOB_MAIN: &str = include_str!("../templates/job.rs");
const HTTP_README: &str = include_str!("../templates/README-http.md");
const JOB_README: &str = include_str!("../templates/README-job.md");
const GITIGNORE: &str = include_str!("../templates/gitignore");
const TOOLCHAIN: &str = include_str!("../templates/rust-toolchain.toml");
/// The lock file the SDK's examples build with: the same crate versions.
const CARGO_LOCK: &str = include_str!("../../../sdk/examples/Cargo.lock");

/// Names cargo refuses for a package, or that would depend on themselves.
const RESERVED: &[&str] = &[
    "test",
    "std",
    "core",
    "alloc",
    "proc-macro",
    "self",
    "super",
    "crate",
    "berth-sdk",
    "berth-sdk-macros",
];

/// Checks that `name` can be a Cargo package, a Deployment and a host
/// name label at once.
pub fn check_name(name: &str) -> Result<()> {
    berth_api::validate::dns1123_label(name)
        .map_err(|e| anyhow::anyhow!("project name {name:?}: {e}"))?;
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        bail!("project name {name:?}: must start with a letter (a Cargo package name)");
    }
    if RESERVED.contains(&name) {
        bail!("project name {name:?}: reserved by Cargo or berth, choose another");
    }
    Ok(())
}

/// Finds the berth-sdk crate: `given`, else `$BERTH_SDK_PATH`, else the
/// source tree's.
fn sdk_dir(given: Option<&Path>) -> Result<PathBuf> {
    let (dir, from) = match given {
        Some(dir) => (dir.to_owned(), "--sdk-path"),
        None => match std::env::var_os(SDK_PATH_ENV) {
            Some(dir) if !dir.is_empty() => (PathBuf::from(dir), SDK_PATH_ENV),
            _ => (PathBuf::from(BUILT_SDK_PATH), "the berth source tree"),
        },
    };
    if !dir.join("Cargo.toml").is_file() {
        bail!(
            "no berth-sdk crate at {} (from {from}): pass --sdk-path DIR, the sdk/berth-sdk \
             directory of a berth source tree",
            dir.display()
        );
    }
    dir.canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))
}

/// `text` as the inside of a TOML basic string.
fn toml_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The files of a project: relative path and content.
pub fn files(name: &str, template: Template, sdk: &str) -> Vec<(&'static str, String)> {
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{sdk}}", &toml_escape(sdk))
    };
    let (main, readme) = match template {
        Template::Http => (HTTP_MAIN, HTTP_README),
        Template::Job => (JOB_MAIN, JOB_README),
    };
    vec![
        ("Cargo.toml", fill(CARGO_TOML)),
        ("Cargo.lock", CARGO_LOCK.to_owned()),
        ("rust-toolchain.toml", TOOLCHAIN.to_owned()),
        (".gitignore", GITIGNORE.to_owned()),
        ("README.md", fill(readme)),
        ("src/main.rs", fill(main)),
    ]
}

/// Writes the project; refuses a directory that exists and is not empty.
pub fn new(options: &Options) -> Result<Created> {
    check_name(&options.name)?;
    let dir = options
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&options.name));
    if let Ok(mut entries) = std::fs::read_dir(&dir)
        && entries.next().is_some()
    {
        bail!("directory {} exists and is not empty", dir.display());
    }
    let sdk = sdk_dir(options.sdk_path.as_deref())?;
    let sdk = sdk
        .to_str()
        .with_context(|| format!("berth-sdk path {} is not UTF-8", sdk.display()))?;
    let files = files(&options.name, options.template, sdk);
    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create directory {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(Created {
        name: options.name.clone(),
        template: options.template,
        dir,
        files: files.iter().map(|(path, _)| *path).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_suit_cargo_and_dns() {
        assert!(check_name("greeter").is_ok());
        assert!(check_name("job-thing2").is_ok());
        assert!(check_name("Greeter").is_err());
        assert!(check_name("9lives").is_err());
        assert!(check_name("a_b").is_err());
        assert!(check_name("test").is_err());
        assert!(check_name("berth-sdk").is_err());
    }

    #[test]
    fn templates_are_filled_in() {
        for template in [Template::Http, Template::Job] {
            for (path, text) in files("greeter", template, r"C:\sdk") {
                assert!(!text.contains("{{"), "{path} keeps a placeholder");
            }
        }
        let files = files("greeter", Template::Http, "/a \"b\"");
        let toml = &files.iter().find(|(p, _)| *p == "Cargo.toml").unwrap().1;
        assert!(toml.contains(r#"name = "greeter""#));
        assert!(toml.contains(r#"berth-sdk = { path = "/a \"b\"" }"#));
    }

    /// The project builds with the toolchain this workspace pins, so that
    /// it shares compiled dependencies with `sdk/examples`.
    #[test]
    fn the_toolchain_is_the_workspace_one() {
        assert_eq!(TOOLCHAIN, include_str!("../../../rust-toolchain.toml"));
    }

    /// The release profile is the examples', for the same reason.
    #[test]
    fn the_release_profile_is_the_examples_one() {
        let examples = include_str!("../../../sdk/examples/Cargo.toml");
        let profile = |text: &str| {
            text.split("[profile.release]")
                .nth(1)
                .map(|rest| rest.trim().to_owned())
                .unwrap()
        };
        assert_eq!(profile(CARGO_TOML), profile(examples));
    }
}
