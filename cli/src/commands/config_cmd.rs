//! `berth config get-contexts|use-context NAME|current-context`: which
//! cluster of the client config the user verbs talk to. The file and its
//! contexts are described in [`crate::config`].

use std::path::Path;

use anyhow::{Result, bail};

use crate::config::{ConfigFile, ContextRow};

/// `berth config ...`.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// List the contexts of the client config; `*` marks the current one.
    #[command(after_help = "Examples:\n  berth config get-contexts")]
    GetContexts,
    /// Make NAME the context the user verbs talk to.
    #[command(after_help = "Examples:\n  berth config use-context prod")]
    UseContext {
        /// The context's name.
        name: String,
    },
    /// Print the current context's name.
    #[command(after_help = "Examples:\n  berth config current-context")]
    CurrentContext,
}

/// The contexts of the file at `path`.
pub fn get_contexts(path: &Path) -> Result<Vec<ContextRow>> {
    Ok(ConfigFile::load(path)?.rows())
}

/// Makes `name` current in the file at `path`.
pub fn use_context(path: &Path, name: &str) -> Result<()> {
    let mut file = ConfigFile::load(path)?;
    if !file.use_context(name) {
        let known: Vec<String> = file.rows().into_iter().map(|r| r.name).collect();
        bail!(
            "no context named {name:?} in client config {} (known: {})",
            path.display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
    }
    file.save(path)
}

/// The current context's name in the file at `path`.
pub fn current_context(path: &Path) -> Result<String> {
    let file = ConfigFile::load(path)?;
    match file.current_name() {
        Some(name) => Ok(name.to_owned()),
        None => bail!(
            "client config {} has no current context (choose one with `berth config use-context NAME`)",
            path.display()
        ),
    }
}
