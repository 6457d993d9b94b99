//! `berth push FILE.wasm oci://REGISTRY/REPO:TAG`: publishes a component
//! to an OCI registry as a Wasm component artifact (the format `wkg`,
//! wasmCloud and Spin use), and the resolution `apply` gives
//! `component: oci://...` references: a tag becomes its manifest digest
//! before anything is sent, so instances never change under a moved tag
//! (decision 0039).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Result, anyhow};
use berth_node::oci::component;

use berth_scheduler::admission::validate_component;

use crate::commands::apply::Loaded;

/// What `berth push` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The reference by digest: `oci://REGISTRY/REPO@sha256:...`.
    pub reference: String,
}

/// Checks that `file` is a component and pushes it to `reference`.
pub async fn push(file: &Path, reference: &str) -> Result<Pushed> {
    let bytes = std::fs::read(file)
        .map_err(|e| anyhow!("cannot read component {}: {e}", file.display()))?;
    validate_component(&bytes).map_err(|e| anyhow!("{} {e}", file.display()))?;
    let reference = component::push(bytes, reference)
        .await
        .map_err(|e| anyhow!("cannot push to {reference}: {:#}", anyhow::Error::new(e)))?;
    Ok(Pushed { reference })
}

/// Replaces every `oci://` component named by tag in `objects` with its
/// reference by digest, checking that each (tag or digest) names a Wasm
/// component artifact the registry holds.
pub async fn resolve_components(objects: &mut Loaded) -> Result<()> {
    let mut resolved: HashMap<String, String> = HashMap::new();
    for (file, object) in objects.iter_mut() {
        let described = object.describe();
        let Some(template) = object.template_mut() else {
            continue;
        };
        let reference = template.spec.component.clone();
        if template.spec.image.is_some() || !component::is_oci(&reference) {
            continue;
        }
        let pinned = match resolved.get(&reference) {
            Some(pinned) => pinned.clone(),
            None => {
                let pinned = component::resolve(&reference).await.map_err(|e| {
                    anyhow!(
                        "{file}: {described}: spec.template.spec.component: cannot resolve {reference}: {:#}",
                        anyhow::Error::new(e)
                    )
                })?;
                resolved.insert(reference, pinned.clone());
                pinned
            }
        };
        template.spec.component = pinned;
    }
    Ok(())
}
