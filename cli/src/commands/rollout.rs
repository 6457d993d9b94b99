//! `berth rollout status|history|undo|pause|resume|promote|abort
//! deployment/NAME`, and the Deployment patch that `scale` and `set
//! component` share.

use std::time::Duration;

use anyhow::{Result, bail};
use berth_api::wire::{DeploymentPatch, Request, Response};
use berth_api::{Deployment, Kind, Object};

use crate::client::Client;
use crate::commands::get;

/// Parses `deployment/NAME` or `NAME` (after a separate `deployment`).
pub fn deployment_name(target: &str, name: Option<&str>) -> Result<String> {
    let (kind, name) = match (target.split_once('/'), name) {
        (Some((kind, name)), None) => (kind, name),
        (None, Some(name)) => (target, name),
        _ => bail!("expected deployment/NAME or deployment NAME, got {target:?}"),
    };
    if Kind::from_cli_name(kind) != Some(Kind::Deployment) {
        bail!("rollouts are for deployments, not {kind:?}");
    }
    if name.is_empty() {
        bail!("the deployment name is empty");
    }
    Ok(name.to_owned())
}

/// Applies `patch` to a Deployment; the Deployment afterwards.
pub async fn patch(
    client: &Client,
    namespace: &str,
    name: &str,
    patch: DeploymentPatch,
) -> Result<Deployment> {
    match client
        .call(&Request::PatchDeployment {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            patch,
        })
        .await?
    {
        Response::Object(bytes) => match Object::from_json(&bytes)? {
            Object::Deployment(d) => Ok(*d),
            other => bail!("expected a Deployment, got {}", other.kind()),
        },
        other => bail!("unexpected answer {other:?}"),
    }
}

/// What `berth rollout promote|abort` asked of a canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryAction {
    /// End the current pause.
    Promoted,
    /// Skip every remaining step.
    FullyPromoted,
    /// Stop the canary; stable serves everything.
    Aborted,
}

impl CanaryAction {
    /// The word printed after `deployment/NAME`.
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryAction::Promoted => "promoted",
            CanaryAction::FullyPromoted => "fully promoted",
            CanaryAction::Aborted => "aborted",
        }
    }
}

/// The outcome of `berth rollout promote|abort`, for the renderer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryChange {
    /// The Deployment's name.
    pub deployment: String,
    /// What was asked.
    pub action: CanaryAction,
}

/// `rollout promote [--full]` and `rollout abort`: records the request in
/// the Deployment's canary status, for the scheduler to act on.
pub async fn canary(
    client: &Client,
    namespace: &str,
    name: &str,
    action: CanaryAction,
) -> Result<CanaryChange> {
    use berth_api::canary::Promotion;
    let patch = DeploymentPatch {
        promote: match action {
            CanaryAction::Promoted => Some(Promotion::Step),
            CanaryAction::FullyPromoted => Some(Promotion::Full),
            CanaryAction::Aborted => None,
        },
        abort: action == CanaryAction::Aborted,
        ..DeploymentPatch::default()
    };
    let deployment = self::patch(client, namespace, name, patch).await?;
    Ok(CanaryChange {
        deployment: deployment.metadata.name,
        action,
    })
}

async fn read(client: &Client, namespace: &str, name: &str) -> Result<Deployment> {
    let objects = get::get(
        client,
        &get::Query {
            kind: Kind::Deployment,
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
        },
    )
    .await?;
    match objects.into_iter().next() {
        Some(Object::Deployment(d)) => Ok(*d),
        _ => bail!("Deployment {namespace}/{name} not found"),
    }
}

/// Where a rollout stands, as `kubectl rollout status` words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Still going, with the line to print.
    Waiting(String),
    /// Finished.
    Done(String),
    /// Failed: the progress deadline passed.
    Failed(String),
}

/// Judges a Deployment's rollout from its status.
pub fn progress(deployment: &Deployment) -> Progress {
    let name = &deployment.metadata.name;
    let status = deployment.status.clone().unwrap_or_default();
    let generation = deployment.metadata.generation.unwrap_or(0);
    if generation > status.observed_generation {
        return Progress::Waiting("Waiting for deployment spec update to be observed...".into());
    }
    if status
        .conditions
        .iter()
        .any(|c| c.type_ == "Progressing" && c.reason == "ProgressDeadlineExceeded")
    {
        return Progress::Failed(format!(
            "deployment {name:?} exceeded its progress deadline"
        ));
    }
    let replicas = u64::try_from(deployment.spec.replicas.max(0)).unwrap_or(0);
    if status.updated_replicas < replicas {
        return Progress::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {} out of {replicas} new replicas have been updated...",
            status.updated_replicas
        ));
    }
    if status.replicas > status.updated_replicas {
        return Progress::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            status.replicas - status.updated_replicas
        ));
    }
    if status.available_replicas < status.updated_replicas {
        return Progress::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {} of {} updated replicas are available...",
            status.available_replicas, status.updated_replicas
        ));
    }
    Progress::Done(format!("deployment {name:?} successfully rolled out"))
}

/// `rollout status` (and `berth deploy`): gives `step` each new progress
/// line, and the last, until the rollout finishes (Ok), fails or `timeout`
/// passes (Err).
pub async fn status(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Option<Duration>,
    step: &mut dyn FnMut(&Progress),
) -> Result<()> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut last = None;
    loop {
        let now = progress(&read(client, namespace, name).await?);
        match &now {
            Progress::Done(_) => {
                step(&now);
                return Ok(());
            }
            Progress::Failed(line) => bail!("{line}"),
            Progress::Waiting(_) => {
                if last.as_ref() != Some(&now) {
                    step(&now);
                    last = Some(now);
                }
            }
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            bail!("timed out waiting for deployment {name:?} to roll out");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `rollout history`: REVISION and CHANGE-CAUSE, oldest first.
pub async fn history(client: &Client, namespace: &str, name: &str) -> Result<String> {
    let deployment = read(client, namespace, name).await?;
    let mut out = format!("deployment {name:?}\nREVISION   CHANGE-CAUSE\n");
    for revision in deployment.status.unwrap_or_default().history {
        let cause = if revision.change_cause.is_empty() {
            "<none>"
        } else {
            &revision.change_cause
        };
        out.push_str(&format!("{:<10} {cause}\n", revision.revision));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::DeploymentStatus;

    #[test]
    fn targets_read_like_kubectl() {
        assert_eq!(deployment_name("deployment/hello", None).unwrap(), "hello");
        assert_eq!(deployment_name("deploy", Some("hello")).unwrap(), "hello");
        assert!(deployment_name("node/x", None).is_err());
        assert!(deployment_name("hello", None).is_err());
    }

    fn deployment(replicas: i64, status: DeploymentStatus, generation: u64) -> Deployment {
        let yaml = format!(
            "apiVersion: berth.dev/v1\nkind: Deployment\nmetadata: {{name: hello, generation: {generation}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: h}}}}\n  template:\n    metadata: {{labels: {{app: h}}}}\n    spec: {{component: x}}\n"
        );
        let mut d: Deployment = serde_yaml_ng::from_str(&yaml).unwrap();
        d.status = Some(status);
        d
    }

    #[test]
    fn progress_lines_follow_the_rollout() {
        let status = |updated, replicas, available, observed| DeploymentStatus {
            observed_generation: observed,
            replicas,
            updated_replicas: updated,
            available_replicas: available,
            ready_replicas: available,
            ..DeploymentStatus::default()
        };
        assert!(
            matches!(progress(&deployment(4, status(0, 4, 4, 1), 2)), Progress::Waiting(l) if l.contains("spec update"))
        );
        assert_eq!(
            progress(&deployment(4, status(1, 5, 4, 2), 2)),
            Progress::Waiting(
                "Waiting for deployment \"hello\" rollout to finish: 1 out of 4 new replicas have been updated..."
                    .into()
            )
        );
        assert!(
            matches!(progress(&deployment(4, status(4, 5, 4, 2), 2)), Progress::Waiting(l) if l.contains("1 old replicas"))
        );
        assert!(
            matches!(progress(&deployment(4, status(4, 4, 2, 2), 2)), Progress::Waiting(l) if l.contains("2 of 4 updated"))
        );
        assert!(matches!(
            progress(&deployment(4, status(4, 4, 4, 2), 2)),
            Progress::Done(_)
        ));
        let mut failed = status(1, 5, 4, 2);
        failed
            .conditions
            .push(berth_api::rollout::DeploymentCondition {
                type_: "Progressing".into(),
                status: "False".into(),
                reason: "ProgressDeadlineExceeded".into(),
                message: String::new(),
                last_update_time: None,
            });
        assert!(matches!(
            progress(&deployment(4, failed, 2)),
            Progress::Failed(_)
        ));
    }
}
