//! A Job's run on this node: a [`PreparedCommand`] run to its end, and
//! the outcome the node reports for the instance.
//!
//! The supervisor prepares a command for each assignment whose
//! `workload` is `Command` ([`crate::runtime::WasmRuntime::prepare_command`]),
//! calls [`run_to_completion`], reports the [`CommandOutcome`], and runs it
//! again after a failure if the instance's `restartPolicy` is `OnFailure`.
//! The scheduler's Job controller does the counting: see
//! `docs/decisions/0018-jobs.md`.

use berth_api::Phase;

use crate::runtime::{PreparedCommand, RuntimeError, error_chain};

/// `status.reason` of a run that exited with code 0, as Kubernetes names
/// a container that completed.
pub const REASON_COMPLETED: &str = "Completed";

/// `status.reason` of a run that exited with another code, or could not
/// start.
pub const REASON_ERROR: &str = "Error";

/// How one run ended, as the node reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// The exit code, if the program ended by itself (returned or called
    /// `exit`); `None` if the node stopped it or it never started.
    pub exit_code: Option<i32>,
    /// `Succeeded` for exit code 0, `Failed` otherwise.
    pub phase: Phase,
    /// [`REASON_COMPLETED`], [`REASON_ERROR`], or the
    /// [`Termination`](crate::runtime::Termination)'s reason
    /// (`MemoryLimitExceeded`, `Trap`…).
    pub reason: String,
    /// A sentence for `berth describe`.
    pub message: String,
}

impl CommandOutcome {
    /// Whether the run succeeded.
    pub fn succeeded(&self) -> bool {
        self.phase == Phase::Succeeded
    }

    fn from_result(result: Result<i32, RuntimeError>) -> CommandOutcome {
        match result {
            Ok(0) => CommandOutcome {
                exit_code: Some(0),
                phase: Phase::Succeeded,
                reason: REASON_COMPLETED.into(),
                message: "exited with code 0".into(),
            },
            Ok(code) => CommandOutcome {
                exit_code: Some(code),
                phase: Phase::Failed,
                reason: REASON_ERROR.into(),
                message: format!("exited with code {code}"),
            },
            Err(RuntimeError::Terminated(termination)) => CommandOutcome {
                exit_code: None,
                phase: Phase::Failed,
                reason: termination.reason().into(),
                message: format!("stopped by the node: {termination}"),
            },
            Err(e) => CommandOutcome {
                exit_code: None,
                phase: Phase::Failed,
                reason: REASON_ERROR.into(),
                message: error_chain(&e),
            },
        }
    }
}

/// Runs `command` once to its end and says how it ended. Never fails:
/// whatever goes wrong is a `Failed` outcome with a reason. Cancel it by
/// dropping the future (the guest stops at its next yield).
pub async fn run_to_completion(command: &PreparedCommand) -> CommandOutcome {
    let result = command.run().await;
    let outcome = CommandOutcome::from_result(result);
    tracing::debug!(phase = %outcome.phase, reason = %outcome.reason,
        exit_code = ?outcome.exit_code, "command ended");
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Termination;

    #[test]
    fn exit_codes_and_terminations_become_outcomes() {
        let ok = CommandOutcome::from_result(Ok(0));
        assert_eq!(
            (ok.exit_code, ok.phase, ok.reason.as_str()),
            (Some(0), Phase::Succeeded, "Completed")
        );
        assert!(ok.succeeded());
        let three = CommandOutcome::from_result(Ok(3));
        assert_eq!(
            (three.exit_code, three.phase, three.reason.as_str()),
            (Some(3), Phase::Failed, "Error")
        );
        assert_eq!(three.message, "exited with code 3");
        let oom = CommandOutcome::from_result(Err(RuntimeError::Terminated(
            Termination::MemoryLimitExceeded,
        )));
        assert_eq!(
            (oom.exit_code, oom.phase, oom.reason.as_str()),
            (None, Phase::Failed, "MemoryLimitExceeded")
        );
        assert_eq!(oom.message, "stopped by the node: MemoryLimitExceeded");
        let other = CommandOutcome::from_result(Err(RuntimeError::FuelNotEnabled));
        assert_eq!(
            (other.phase, other.reason.as_str()),
            (Phase::Failed, "Error")
        );
        assert!(other.message.contains("fuel"), "{}", other.message);
    }
}
