//! Starts real `berth` processes on loopback ports the OS picks, and cleans
//! them up (kill and wait) when dropped, even when a test fails.

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_api::Object;

/// The `berth` binary under test.
pub fn berth_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

/// The hostile component, built from source by berth-test-programs.
pub fn hostile_wasm() -> PathBuf {
    PathBuf::from(berth_test_programs::HOSTILE)
}

/// The example component, built from source by berth-test-programs.
pub fn hello_wasm() -> PathBuf {
    PathBuf::from(berth_test_programs::HELLO)
}

/// A child process killed on drop.
pub struct Proc {
    child: Child,
}

impl Proc {
    /// Takes charge of a spawned process.
    pub fn new(child: Child) -> Proc {
        Proc { child }
    }

    /// Kills the process at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to end on its own; returns its exit status.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait for process")
    }

    /// Sends the process `signal` (`STOP`, `CONT`) by its id.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }
}

impl Drop for Proc {
    /// Stops the process as an operator would (SIGTERM), so that a node
    /// removes its sandboxes' cgroups; SIGKILL if it takes over 5 s.
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

/// Spawns `berth args`, waiting until a stdout line contains `ready`;
/// returns the process and that line.
fn spawn(name: &str, args: &[&str], config: &Path, ready: &str) -> (Proc, String) {
    spawn_command(name, Command::new(berth_bin()), args, config, ready)
}

/// As [`spawn`], with `berth` run through `command` (such as
/// `ip netns exec NS berth`).
fn spawn_command(
    name: &str,
    mut command: Command,
    args: &[&str],
    config: &Path,
    ready: &str,
) -> (Proc, String) {
    let mut child = command
        .args(args)
        .env("BERTH_CONFIG", config)
        // `BERTH_TEST_LOG` overrides the processes' log filter when a test
        // needs a closer look.
        .env(
            "BERTH_LOG",
            std::env::var("BERTH_TEST_LOG")
                .unwrap_or_else(|_| "warn,berth_node=info,berth_scheduler=info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn berth");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let ready = ready.to_owned();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !sent && line.contains(&ready) {
                let _ = tx.send(line.clone());
                sent = true;
            }
        }
    });
    let proc = Proc { child };
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{name} did not start"));
    (proc, line)
}

/// The `host:port` after `marker` in `line`.
fn addr_after(line: &str, marker: &str) -> SocketAddr {
    let rest = line.split(marker).nth(1).expect("marker");
    rest.split_whitespace()
        .next()
        .expect("address")
        .parse()
        .expect("socket address")
}

/// A scheduler process with its data dir and client config.
pub struct Scheduler {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub config: PathBuf,
}

impl Scheduler {
    pub fn start(dir: &Path, listen: &str) -> Scheduler {
        Scheduler::start_with(dir, listen, &[])
    }

    /// Starts a scheduler with extra flags (`--node-grace-seconds`, ...).
    pub fn start_with(dir: &Path, listen: &str, extra: &[&str]) -> Scheduler {
        let data = dir.join("scheduler");
        let config = dir.join("config");
        let mut args = vec![
            "scheduler",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            listen,
        ];
        args.extend_from_slice(extra);
        let (proc, line) = spawn("scheduler", &args, &config, "scheduler listening on");
        Scheduler {
            proc,
            addr: addr_after(&line, "listening on "),
            data,
            config,
        }
    }

    /// As [`Scheduler::start_with`], with `env` set for the process.
    pub fn start_with_env(
        dir: &Path,
        listen: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Scheduler {
        let data = dir.join("scheduler");
        let config = dir.join("config");
        let mut args = vec![
            "scheduler",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            listen,
        ];
        args.extend_from_slice(extra);
        let mut command = Command::new(berth_bin());
        command.envs(env.iter().copied());
        let (proc, line) = spawn_command(
            "scheduler",
            command,
            &args,
            &config,
            "scheduler listening on",
        );
        Scheduler {
            proc,
            addr: addr_after(&line, "listening on "),
            data,
            config,
        }
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data.join("join-token"))
            .unwrap()
            .trim()
            .to_owned()
    }
}

/// A node process.
pub struct NodeProc {
    /// Held so that the node stops when the test ends.
    _proc: Proc,
    pub ingress: SocketAddr,
}

impl NodeProc {
    /// Kills the node process at once (SIGKILL).
    pub fn kill(&mut self) {
        self._proc.kill();
    }

    /// Freezes (`STOP`) or thaws (`CONT`) the node process: a node cut
    /// off for a while, its instances' sandboxes left running.
    pub fn signal(&self, signal: &str) {
        self._proc.signal(signal);
    }

    pub fn start(dir: &Path, scheduler: &Scheduler, name: &str) -> NodeProc {
        NodeProc::start_with(dir, scheduler, name, &[])
    }

    /// Starts a node inside the network namespace `netns`, its ingress on
    /// `ingress` (an address of that namespace).
    pub fn start_in_netns(
        dir: &Path,
        scheduler: &Scheduler,
        name: &str,
        netns: &str,
        ingress: &str,
    ) -> NodeProc {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", netns]).arg(berth_bin());
        NodeProc::start_through(dir, scheduler, name, command, &["--ingress", ingress])
    }

    /// Starts a node with extra flags (`--taint`, `--label`, ...).
    pub fn start_with(dir: &Path, scheduler: &Scheduler, name: &str, extra: &[&str]) -> NodeProc {
        NodeProc::start_through(dir, scheduler, name, Command::new(berth_bin()), extra)
    }

    /// As [`NodeProc::start_with`], with `env` set for the process.
    pub fn start_with_env(
        dir: &Path,
        scheduler: &Scheduler,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> NodeProc {
        let mut command = Command::new(berth_bin());
        command.envs(env.iter().copied());
        NodeProc::start_through(dir, scheduler, name, command, extra)
    }

    fn start_through(
        dir: &Path,
        scheduler: &Scheduler,
        name: &str,
        command: Command,
        extra: &[&str],
    ) -> NodeProc {
        let data = dir.join(format!("node-{name}"));
        let mut args: Vec<String> = [
            "node",
            "--join",
            &scheduler.addr.to_string(),
            "--token",
            &scheduler.token(),
            "--name",
            name,
            "--data",
            data.to_str().unwrap(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if !extra.contains(&"--ingress") {
            args.extend(["--ingress".to_owned(), "127.0.0.1:0".to_owned()]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (proc, line) =
            spawn_command(name, command, &args, &scheduler.config, "serving http on");
        NodeProc {
            _proc: proc,
            ingress: addr_after(&line, "serving http on "),
        }
    }
}

/// A scheduler and `nodes` nodes, in a temporary directory.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub scheduler: Scheduler,
    pub nodes: Vec<NodeProc>,
}

impl Cluster {
    pub fn start(nodes: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let scheduler = Scheduler::start(dir.path(), "127.0.0.1:0");
        let nodes = (0..nodes)
            .map(|i| NodeProc::start(dir.path(), &scheduler, &format!("node-{i}")))
            .collect();
        Cluster {
            dir,
            scheduler,
            nodes,
        }
    }

    /// Runs `berth args` against this cluster.
    pub fn berth(&self, args: &[&str]) -> Output {
        Command::new(berth_bin())
            .args(args)
            .env("BERTH_CONFIG", &self.scheduler.config)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run berth")
    }

    /// Runs `berth args` with `input` on stdin.
    pub fn berth_with_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = Command::new(berth_bin())
            .args(args)
            .env("BERTH_CONFIG", &self.scheduler.config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn berth");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("run berth")
    }

    /// Runs `berth args`, asserting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Objects of `kind` in all namespaces, through `berth get -o json`.
    pub fn objects(&self, kind: &str) -> Vec<Object> {
        let text = self.ok(&["get", kind, "-A", "-o", "json"]);
        let list: serde_json::Value = serde_json::from_str(&text).unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| Object::from_json(&serde_json::to_vec(item).unwrap()).unwrap())
            .collect()
    }

    /// Writes a manifest of the hello Deployment with `replicas` into the
    /// cluster's directory; returns its path.
    pub fn hello_manifest(&self, replicas: u32) -> PathBuf {
        let path = self.dir.path().join(format!("hello-{replicas}.yaml"));
        std::fs::write(&path, hello_yaml(replicas, &hello_wasm())).unwrap();
        path
    }

    /// Writes `yaml` (with `{component}` standing for the hello example's
    /// path) into the cluster's directory; returns its path.
    pub fn manifest(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.yaml"));
        let text = yaml.replace("{component}", &hello_wasm().display().to_string());
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Which node each live instance of `deployment` is on.
    pub fn placements(&self, deployment: &str) -> Vec<Option<String>> {
        self.objects("instances")
            .into_iter()
            .filter_map(|o| match o {
                Object::Instance(i)
                    if i.metadata.deletion_timestamp.is_none()
                        && i.metadata
                            .owner_references
                            .iter()
                            .any(|r| r.name == deployment) =>
                {
                    Some(i.spec.node_name.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// Waits until `check` holds, polling; panics with `what` after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the hello Deployment has `n` ready replicas and exactly
    /// `n` live instances.
    pub fn wait_ready(&self, n: u64) {
        self.wait_for(
            &format!("{n} ready replicas"),
            Duration::from_secs(90),
            || {
                let ready = self.objects("deployments").iter().any(|o| match o {
                    Object::Deployment(d) => {
                        d.status.as_ref().is_some_and(|s| s.ready_replicas == n)
                    }
                    _ => false,
                });
                ready && self.live_instances() == n as usize
            },
        );
    }

    /// The node of every live instance that is Running.
    pub fn running_nodes(&self) -> Vec<String> {
        self.objects("instances")
            .into_iter()
            .filter_map(|o| match o {
                Object::Instance(i)
                    if i.status.phase == berth_api::Phase::Running
                        && i.metadata.deletion_timestamp.is_none() =>
                {
                    i.spec.node_name
                }
                _ => None,
            })
            .collect()
    }

    /// Instances not terminating.
    pub fn live_instances(&self) -> usize {
        self.objects("instances")
            .iter()
            .filter(|o| o.metadata().deletion_timestamp.is_none())
            .count()
    }
}

/// The hello Deployment manifest.
pub fn hello_yaml(replicas: u32, component: &Path) -> String {
    format!(
        "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: hello}}
  template:
    metadata:
      labels: {{app: hello}}
    spec:
      component: {}
      env:
        - name: GREETING
          value: Hello from berth
      resources:
        requests: {{cpu: 100m, memory: 32Mi}}
        limits: {{memory: 64Mi}}
",
        component.display()
    )
}

/// GETs `/` from an ingress with a Host header; returns status and body.
pub fn http_get(ingress: SocketAddr, host: &str) -> Result<(u16, String), String> {
    http_get_path(ingress, host, "/")
}

/// GETs `path` from an ingress with a Host header; returns status and body.
pub fn http_get_path(ingress: SocketAddr, host: &str, path: &str) -> Result<(u16, String), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        use http_body_util::BodyExt as _;
        let stream = tokio::net::TcpStream::connect(ingress)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request = hyper::Request::get(path)
            .header("host", host)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(30), sender.send_request(request))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    })
}

pub const HELLO_HOST: &str = "hello.default.berth.localhost";

/// A registry on a free loopback port, storing under `dir`.
pub struct Registry {
    _proc: Proc,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Registry {
    /// Starts Debian's `docker-registry` and waits until it accepts connections.
    pub fn start(dir: &Path) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Registry::start_at(dir, &format!("127.0.0.1:{port}"))
    }

    /// Starts a registry on `addr` storing under `dir`: one stopped before
    /// comes back with what it held.
    pub fn start_at(dir: &Path, addr: &str) -> Registry {
        let addr = addr.to_owned();
        let storage = dir.join("registry");
        std::fs::create_dir_all(&storage).unwrap();
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                storage.display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = Registry {
            _proc: Proc::new(child),
            addr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&registry.addr).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }
}
