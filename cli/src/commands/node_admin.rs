//! `berth taint node NAME KEY=VALUE:EFFECT[-]`, `berth cordon NAME` and
//! `berth uncordon NAME`.

use anyhow::{Result, bail};
use berth_api::Object;
use berth_api::scheduling::{Taint, TaintEffect};
use berth_api::wire::{NodePatch, Request, Response};

use crate::client::Client;

/// Builds a patch from `kubectl taint`-style arguments: `k=v:Effect` adds,
/// `k:Effect-` or `k-` removes.
pub fn taint_patch(args: &[String]) -> Result<NodePatch> {
    let mut patch = NodePatch::default();
    for arg in args {
        if let Some(removal) = arg.strip_suffix('-') {
            let (key, effect) = match removal.split_once(':') {
                Some((key, effect)) => (key, Some(parse_effect(effect)?)),
                None => (removal, None),
            };
            let key = key.split_once('=').map_or(key, |(k, _)| k);
            patch.remove_taints.push((key.to_owned(), effect));
        } else {
            // Parsed here for a clear error before anything is sent.
            Taint::parse(arg).map_err(anyhow::Error::msg)?;
            patch.add_taints.push(arg.clone());
        }
    }
    Ok(patch)
}

fn parse_effect(text: &str) -> Result<TaintEffect> {
    Ok(match text {
        "NoSchedule" => TaintEffect::NoSchedule,
        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
        "NoExecute" => TaintEffect::NoExecute,
        other => bail!(
            "unknown taint effect {other:?}, expected NoSchedule, PreferNoSchedule or NoExecute"
        ),
    })
}

/// Sends a patch; the Node as it is afterwards.
pub async fn patch(client: &Client, name: &str, patch: NodePatch) -> Result<Object> {
    match client
        .call(&Request::PatchNode {
            name: name.to_owned(),
            patch,
        })
        .await?
    {
        Response::Object(bytes) => Ok(Object::from_json(&bytes)?),
        other => bail!("unexpected answer {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taint_arguments_read_like_kubectl() {
        let patch = taint_patch(&[
            "gpu=true:NoSchedule".into(),
            "old:NoExecute-".into(),
            "x-".into(),
        ])
        .unwrap();
        assert_eq!(patch.add_taints, ["gpu=true:NoSchedule"]);
        assert_eq!(
            patch.remove_taints,
            [
                ("old".to_owned(), Some(TaintEffect::NoExecute)),
                ("x".to_owned(), None)
            ]
        );
        assert!(taint_patch(&["gpu=true:Sometimes".into()]).is_err());
        assert!(taint_patch(&["gpu=true".into()]).is_err());
    }
}
