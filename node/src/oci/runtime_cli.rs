//! The OCI runtime command line (runc, crun or youki: they share the verbs
//! the node uses), with a state directory of the node's own so that two
//! nodes on one machine never see each other's containers.
//!
//! A container runs in the foreground of `RUNTIME run --keep`: the
//! runtime process lives as long as the container, hands its stdout and
//! stderr through, and exits with its status. `--keep` leaves the
//! container's cgroup in place after it exits, so the node can read whether
//! the kernel OOM-killed it before `delete` removes it. Runtimes without
//! `--keep` (crun) remove the cgroup as the container exits: with them a
//! container killed for memory is reported by its exit code (137), not as
//! `OOMKilled`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::{Child, Command};

/// Why a runtime command failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeCliError {
    /// The program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The runtime program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// It ran and failed.
    #[error("{program} {verb} {id}: {stderr}")]
    Failed {
        /// The runtime program.
        program: String,
        /// `kill`, `delete`, ...
        verb: &'static str,
        /// The container id.
        id: String,
        /// What it said.
        stderr: String,
    },
}

/// One OCI runtime program and the node's state directory for it.
#[derive(Debug, Clone)]
pub struct RuntimeCli {
    program: PathBuf,
    root: PathBuf,
    /// Whether `run` takes `--keep`.
    keep: bool,
}

impl RuntimeCli {
    /// `program` (`runc`, `crun`, a path) keeping its state under `root`;
    /// asks the program whether its `run` takes `--keep`.
    pub async fn new(program: PathBuf, root: PathBuf) -> RuntimeCli {
        let help = Command::new(&program)
            .args(["run", "--help"])
            .stdin(Stdio::null())
            .output()
            .await;
        let keep = help.is_ok_and(|out| {
            String::from_utf8_lossy(&out.stdout).contains("--keep")
                || String::from_utf8_lossy(&out.stderr).contains("--keep")
        });
        RuntimeCli {
            program,
            root,
            keep,
        }
    }

    /// Whether exited containers keep their cgroup until deleted, so that
    /// their OOM kills can be read.
    pub fn keeps_cgroups(&self) -> bool {
        self.keep
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.arg("--root").arg(&self.root);
        command
    }

    fn name(&self) -> String {
        self.program.display().to_string()
    }

    fn spawn_failed(&self, source: std::io::Error) -> RuntimeCliError {
        RuntimeCliError::Spawn {
            program: self.name(),
            source,
        }
    }

    /// Starts container `id` from `bundle` in the foreground; its first
    /// process's pid is written to `pid_file`. Output is piped.
    pub fn run(&self, id: &str, bundle: &Path, pid_file: &Path) -> Result<Child, RuntimeCliError> {
        let mut command = self.command();
        command.arg("run");
        if self.keep {
            command.arg("--keep");
        }
        command
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| self.spawn_failed(source))
    }

    /// Runs `verb ARGS...` about container `id` to completion.
    async fn simple(
        &self,
        verb: &'static str,
        id: &str,
        args: &[&str],
    ) -> Result<(), RuntimeCliError> {
        let output = self
            .command()
            .arg(verb)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| self.spawn_failed(source))?;
        if output.status.success() {
            return Ok(());
        }
        Err(RuntimeCliError::Failed {
            program: self.name(),
            verb,
            id: id.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }

    /// Sends `signal` (`TERM`, `KILL`) to the container's first process.
    pub async fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeCliError> {
        self.simple("kill", id, &[id, signal]).await
    }

    /// Runs `command` in the running container; its exit status.
    pub async fn exec(
        &self,
        id: &str,
        command: &[String],
    ) -> Result<std::process::ExitStatus, RuntimeCliError> {
        self.command()
            .arg("exec")
            .arg(id)
            .args(command)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .map_err(|source| self.spawn_failed(source))
    }

    /// Removes the container, killing it first if it still runs.
    pub async fn delete(&self, id: &str) -> Result<(), RuntimeCliError> {
        self.simple("delete", id, &["--force", id]).await
    }

    /// The ids of the containers in the state directory.
    pub async fn list(&self) -> Result<Vec<String>, RuntimeCliError> {
        if !self.root.exists() {
            return Ok(Vec::new());
        }
        let output = self
            .command()
            .args(["list", "--quiet"])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| self.spawn_failed(source))?;
        if !output.status.success() {
            return Err(RuntimeCliError::Failed {
                program: self.name(),
                verb: "list",
                id: String::new(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }
}
