//! The kernel's bound around each sandbox: one cgroup per worker process
//! with a `memory` limit, `cpu` quota and shares, and a `pids` limit, under
//! `berth/<node>/` (cgroup v1: in each controller's hierarchy; v2: in the
//! unified one). File protocol by the `cgroups-rs` crate.
//!
//! [`CgroupRoot::detect`] runs at node start: it finds the hierarchy,
//! removes what a crashed earlier run of the same node left behind, and
//! checks that it can write; where it cannot (not root, read-only mount),
//! the node runs without kernel bounds and reports `CgroupsUnavailable`.

use std::path::PathBuf;
use std::time::Duration;

use cgroups_rs::cgroup_builder::CgroupBuilder;
use cgroups_rs::memory::MemController;
use cgroups_rs::{Cgroup, CgroupPid, Hierarchy, MaxValue};

/// Processes and threads one sandbox may have: the worker's runtime threads
/// and blocking pool, with room to spare; a fork bomb stops here.
pub const SANDBOX_PIDS_LIMIT: i64 = 512;

/// Memory a sandbox gets above the sum of its instances' limits, for the
/// worker itself (runtime, compiled code, buffers): 64 MiB.
pub const SANDBOX_BASE_MEMORY: u64 = 64 * 1024 * 1024;

/// The CFS period quotas are expressed in: 100 ms.
const CPU_PERIOD_MICROS: u64 = 100_000;

/// How long start-up waits for a crashed run's workers to leave their
/// cgroups (they exit when the node's end of their socket closes).
const STALE_EXIT_WAIT: Duration = Duration::from_secs(3);

/// Which cgroup version the node found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// One hierarchy per controller.
    V1,
    /// The unified hierarchy.
    V2,
}

impl Version {
    /// `v1` or `v2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

/// The node's cgroup subtree.
pub struct CgroupRoot {
    /// `berth/<node>`, relative to the hierarchy's root.
    base: String,
    version: Version,
}

impl std::fmt::Debug for CgroupRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CgroupRoot")
            .field("base", &self.base)
            .field("version", &self.version)
            .finish()
    }
}

/// What a sandbox's cgroup bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SandboxLimits {
    /// Bytes of memory, worker included; `None` is unbounded.
    pub memory_bytes: Option<u64>,
    /// Millicores of CPU time; `None` is unbounded.
    pub cpu_millis: Option<u64>,
}

/// One sandbox's cgroup.
pub struct SandboxCgroup {
    cgroup: Cgroup,
    version: Version,
}

impl std::fmt::Debug for SandboxCgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxCgroup")
            .field("path", &self.cgroup.path())
            .finish()
    }
}

fn hierarchy() -> Box<dyn Hierarchy> {
    cgroups_rs::hierarchies::auto()
}

impl CgroupRoot {
    /// Finds the hierarchy, cleans `berth/<node>` of a crashed run's
    /// leftovers and checks it can create a bounded cgroup there. `Err`
    /// says why cgroups cannot be used.
    pub fn detect(node: &str) -> Result<CgroupRoot, String> {
        let version = if cgroups_rs::hierarchies::is_cgroup2_unified_mode() {
            Version::V2
        } else {
            Version::V1
        };
        if version == Version::V1 {
            // cgroups-rs assumes the controllers are mounted (it panics
            // otherwise, as in a network namespace with its own /sys).
            v1_mounts()?;
        }
        let root = CgroupRoot {
            base: format!("berth/{node}"),
            version,
        };
        root.remove_stale();
        let probe = root
            .create("probe", SandboxLimits::default())
            .map_err(|e| format!("cannot create a cgroup under {}: {e}", root.base))?;
        probe.delete();
        Ok(root)
    }

    /// The version in use.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Directories of the node's subtree, one per controller hierarchy.
    fn base_dirs(&self) -> Vec<PathBuf> {
        match self.version {
            Version::V2 => vec![hierarchy().root().join(&self.base)],
            Version::V1 => v1_mounts()
                .unwrap_or_default()
                .into_iter()
                .map(|mount| mount.join(&self.base))
                .collect(),
        }
    }

    /// Deletes the sandbox cgroups an earlier run left, once their
    /// processes have gone.
    fn remove_stale(&self) {
        let mut names = std::collections::BTreeSet::new();
        for dir in self.base_dirs() {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir())
                        && let Ok(name) = entry.file_name().into_string()
                    {
                        names.insert(name);
                    }
                }
            }
        }
        for name in names {
            let cgroup = Cgroup::load(hierarchy(), format!("{}/{name}", self.base));
            let deadline = std::time::Instant::now() + STALE_EXIT_WAIT;
            while !cgroup.procs().is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            match cgroup.delete() {
                Ok(()) => tracing::info!(cgroup = %cgroup.path(), "removed a stale sandbox cgroup"),
                Err(e) => {
                    tracing::warn!(cgroup = %cgroup.path(), error = %e, "cannot remove a stale sandbox cgroup")
                }
            }
        }
    }

    /// Creates `berth/<node>/<name>` with `limits`.
    pub fn create(&self, name: &str, limits: SandboxLimits) -> Result<SandboxCgroup, String> {
        let path = format!("{}/{name}", self.base);
        let cgroup = CgroupBuilder::new(&path)
            .memory()
            .memory_hard_limit(memory_value(limits.memory_bytes))
            .done()
            .cpu()
            .shares(1024)
            .done()
            .pid()
            .maximum_number_of_processes(MaxValue::Value(SANDBOX_PIDS_LIMIT))
            .done()
            .build(hierarchy())
            .map_err(|e| e.to_string())?;
        if !cgroup.exists() {
            return Err(format!("{path} was not created"));
        }
        let sandbox = SandboxCgroup {
            cgroup,
            version: self.version,
        };
        sandbox.set_limits(limits)?;
        Ok(sandbox)
    }

    /// Removes the node's (empty) subtree, on a clean exit.
    pub fn remove(&self) {
        for dir in self.base_dirs() {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// Where the memory, cpu and pids controllers are mounted (cgroup v1).
fn v1_mounts() -> Result<Vec<PathBuf>, String> {
    use cgroups_rs::Controllers;
    let v1 = cgroups_rs::hierarchies::V1::new();
    [Controllers::Mem, Controllers::Cpu, Controllers::Pids]
        .into_iter()
        .map(|controller| {
            v1.get_mount_point(controller.clone())
                .ok_or_else(|| format!("the cgroup v1 {controller} controller is not mounted"))
        })
        .collect()
}

/// The `oom_kill` count of a cgroup v2 `memory.events` file (`key value`
/// lines: `low 0`, `high 0`, `max 12`, `oom 1`, `oom_kill 1`, ...).
fn oom_kills_v2(events: &str) -> Option<u64> {
    events.lines().find_map(|line| {
        line.strip_prefix("oom_kill ")
            .and_then(|n| n.trim().parse().ok())
    })
}

/// The `usage_usec` of a cgroup v2 `cpu.stat` file (`usage_usec 1234`
/// among other `key value` lines); 0 when absent.
fn usage_usec_v2(stat: &str) -> u64 {
    stat.lines()
        .find_map(|line| {
            line.strip_prefix("usage_usec ")
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The usage of each container cgroup with processes under
/// `/berth/<subtree>-oci/` (where `crate::oci` puts them), by directory
/// name (the instance's uid), read from the files directly: v1
/// `memory.usage_in_bytes` and `cpuacct.usage` under `/sys/fs/cgroup/`'s
/// `memory` and `cpuacct` mounts, v2 `memory.current` and `cpu.stat`.
pub fn container_usage(subtree: &str) -> Vec<(String, CgroupUsage)> {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let base = format!("berth/{subtree}-oci");
    let v2 = cgroups_rs::hierarchies::is_cgroup2_unified_mode();
    let listing = if v2 {
        root.join(&base)
    } else {
        root.join("memory").join(&base)
    };
    let Ok(entries) = std::fs::read_dir(&listing) else {
        return Vec::new();
    };
    let read = |path: PathBuf| std::fs::read_to_string(path).unwrap_or_default();
    let mut usage: Vec<(String, CgroupUsage)> = entries
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|entry| !read(entry.path().join("cgroup.procs")).trim().is_empty())
        .filter_map(|entry| {
            let uid = entry.file_name().into_string().ok()?;
            let measured = if v2 {
                CgroupUsage {
                    memory_bytes: read(entry.path().join("memory.current"))
                        .trim()
                        .parse()
                        .unwrap_or(0),
                    cpu_nanos: usage_usec_v2(&read(entry.path().join("cpu.stat")))
                        .saturating_mul(1000),
                }
            } else {
                let cpuacct = root.join("cpuacct").join(&base).join(&uid);
                CgroupUsage {
                    memory_bytes: read(entry.path().join("memory.usage_in_bytes"))
                        .trim()
                        .parse()
                        .unwrap_or(0),
                    cpu_nanos: read(cpuacct.join("cpuacct.usage"))
                        .trim()
                        .parse()
                        .unwrap_or(0),
                }
            };
            Some((uid, measured))
        })
        .collect();
    usage.sort_by(|a, b| a.0.cmp(&b.0));
    usage
}

/// What a sandbox's processes use, read from its cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    /// Memory charged to the cgroup now, page cache included.
    pub memory_bytes: u64,
    /// CPU time consumed since the cgroup was created, in nanoseconds.
    pub cpu_nanos: u64,
}

fn memory_value(bytes: Option<u64>) -> i64 {
    bytes.and_then(|b| i64::try_from(b).ok()).unwrap_or(-1)
}

impl SandboxCgroup {
    /// Puts process `pid` (and its threads) into the cgroup.
    pub fn add(&self, pid: u32) -> Result<(), String> {
        self.cgroup
            .add_task_by_tgid(CgroupPid::from(u64::from(pid)))
            .map_err(|e| e.to_string())
    }

    /// Sets the memory limit and CPU quota (a lower memory limit than the
    /// usage fails; the caller keeps the old one then).
    pub fn set_limits(&self, limits: SandboxLimits) -> Result<(), String> {
        let memory: &MemController = self.cgroup.controller_of().ok_or("no memory controller")?;
        memory
            .set_limit(memory_value(limits.memory_bytes))
            .map_err(|e| format!("memory limit: {e}"))?;
        let cpu: &cgroups_rs::cpu::CpuController =
            self.cgroup.controller_of().ok_or("no cpu controller")?;
        let quota = limits
            .cpu_millis
            .map(|millis| (millis.saturating_mul(CPU_PERIOD_MICROS) / 1000).max(1000))
            .and_then(|q| i64::try_from(q).ok())
            .unwrap_or(-1);
        cpu.set_cfs_quota_and_period(Some(quota), Some(CPU_PERIOD_MICROS))
            .map_err(|e| format!("cpu quota: {e}"))?;
        Ok(())
    }

    /// How many times the kernel's OOM killer killed a process here.
    pub fn oom_kills(&self) -> u64 {
        match self.version {
            Version::V1 => self
                .cgroup
                .controller_of::<MemController>()
                .map_or(0, |memory| memory.memory_stat().oom_control.oom_kill),
            // cgroups-rs reads no `memory.events`; it is one `key value` per line.
            Version::V2 => {
                let path = hierarchy()
                    .root()
                    .join(self.cgroup.path())
                    .join("memory.events");
                std::fs::read_to_string(path)
                    .ok()
                    .and_then(|text| oom_kills_v2(&text))
                    .unwrap_or(0)
            }
        }
    }

    /// What the cgroup's processes use now: memory in bytes (v1
    /// `memory.usage_in_bytes`, v2 `memory.current`) and CPU time so far
    /// (v1 `cpuacct.usage`, v2 `usage_usec` of `cpu.stat`). A file that
    /// cannot be read counts as 0.
    pub fn usage(&self) -> CgroupUsage {
        match self.version {
            Version::V1 => CgroupUsage {
                memory_bytes: self
                    .cgroup
                    .controller_of::<MemController>()
                    .map_or(0, |memory| memory.memory_stat().usage_in_bytes),
                cpu_nanos: self
                    .cgroup
                    .controller_of::<cgroups_rs::cpuacct::CpuAcctController>()
                    .map_or(0, |cpu| cpu.cpuacct().usage),
            },
            Version::V2 => {
                let dir = hierarchy().root().join(self.cgroup.path());
                let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_default();
                CgroupUsage {
                    memory_bytes: read("memory.current").trim().parse().unwrap_or(0),
                    cpu_nanos: usage_usec_v2(&read("cpu.stat")).saturating_mul(1000),
                }
            }
        }
    }

    /// Removes the cgroup; its processes must have exited.
    pub fn delete(&self) {
        if let Err(e) = self.cgroup.delete() {
            tracing::warn!(cgroup = %self.cgroup.path(), error = %e, "cannot remove sandbox cgroup");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_oom_kills_come_from_memory_events() {
        let events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kills_v2(events), Some(1));
        assert_eq!(oom_kills_v2("low 0\n"), None);
        assert_eq!(usage_usec_v2("usage_usec 1500\nuser_usec 1000\n"), 1500);
        assert_eq!(usage_usec_v2(""), 0);
        assert!(container_usage("no-such-node-0000").is_empty());
        assert_eq!(memory_value(None), -1);
        assert_eq!(memory_value(Some(64 << 20)), 64 << 20);
    }
}
