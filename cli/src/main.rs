//! `berth`: the one binary for users and operators.
//!
//! User verbs (`apply`, `get`, `delete`, `logs`, ...) talk to the scheduler
//! named in the client config; `scheduler`, `node` and `dev` run the cluster
//! itself. Each verb lives in its own module under `commands/` and returns a
//! typed value that [`render`] prints; `logs` streams, so it writes its
//! lines as they arrive instead.

mod client;
mod commands;
mod config;
mod render;
mod scheduler_config;
mod selector;
mod telemetry;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use berth_api::scheduling::Taint;
use berth_api::wire::ApplyOutcome;
use berth_api::{DEFAULT_NAMESPACE, Kind, NodeResources, Object};
use clap::{CommandFactory as _, Parser, Subcommand};

use crate::client::Client;
use crate::commands::{
    apply, completion, config_cmd, delete, dev, diff, drain, events, get, logs, node, node_admin,
    rollout, scheduler, top, version,
};
use crate::config::ClientConfig;
use crate::render::Format;
use crate::selector::Selector;

/// berth: a cluster scheduler for WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, after_help = EXIT_STATUS)]
struct Cli {
    /// Client config file (default: $BERTH_CONFIG, else ~/.config/berth/config).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log line format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "BERTH_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: telemetry::LogFormat,
    #[command(subcommand)]
    command: Command,
}

impl Command {
    /// The OpenTelemetry `service.name` of the process running this command.
    fn service_name(&self) -> &'static str {
        match self {
            Command::Scheduler { .. } => "berth-scheduler",
            Command::Node { .. } | Command::Sandbox { .. } => "berth-node",
            Command::Dev { .. } => "berth-dev",
            _ => "berth-cli",
        }
    }
}

#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing the node's flags would only obscure them"
)]
enum Command {
    /// Create or update objects from manifest files.
    #[command(after_help = "Examples:\n  \
        berth apply -f hello.yaml\n  \
        berth apply -f manifests/\n  \
        berth get deployment hello -o yaml | berth apply -f -")]
    Apply {
        /// Manifest file, directory (its .yaml/.yml files, sorted) or `-`
        /// for stdin; YAML, several documents separated by `---`.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
    },
    /// Show what `apply` would change: a unified diff of YAML per object.
    #[command(
        after_help = "Only what apply writes is compared: status and the metadata the \
        cluster keeps (uid, resourceVersion, generation, timestamps, owners, annotations) \
        are left out.\n\n\
        Exit status: 0 when nothing would change, 1 when something would, 2 on error.\n\n\
        Examples:\n  \
        berth diff -f hello.yaml\n  \
        berth diff -f manifests/ && echo up to date\n  \
        berth get deployments -o yaml | berth diff -f -"
    )]
    Diff {
        /// Manifest file, directory (its .yaml/.yml files, sorted) or `-`
        /// for stdin, as `apply` takes them.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
    },
    /// Show or switch the contexts (clusters) of the client config.
    #[command(after_help = "Examples:\n  \
        berth config get-contexts\n  \
        berth config use-context prod\n  \
        berth config current-context")]
    Config {
        #[command(subcommand)]
        action: config_cmd::Action,
    },
    /// List or show objects.
    #[command(after_help = "Examples:\n  \
        berth get deployments\n  \
        berth get instances -l app=hello -o wide\n  \
        berth get deployment hello -o yaml")]
    Get {
        /// Kind: namespaces, deployments, daemonsets, jobs, cronjobs, services, instances, nodes, priorityclasses, events, secrets, configmaps (or ns, deploy, ds, cj, svc, inst, no, pc, ev, cm).
        kind: String,
        /// One object by name.
        name: Option<String>,
        /// Namespace.
        #[arg(short, long)]
        namespace: Option<String>,
        /// All namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Label selector: `k=v`, `k!=v`, `k`, `!k`, comma-separated (all must hold).
        #[arg(short = 'l', long, value_parser = Selector::parse)]
        selector: Option<Selector>,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
        /// Show Secret values (base64, as stored) instead of empty ones; RBAC may refuse it.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Print the client version.
    #[command(after_help = "Examples:\n  \
        berth version")]
    Version,
    /// Create users and issue their certificates, or revoke them.
    User {
        #[command(subcommand)]
        action: commands::user::Action,
    },
    /// Create bearer tokens for automation.
    Token {
        #[command(subcommand)]
        action: commands::token::Action,
    },
    /// Ask what RBAC allows.
    Auth {
        #[command(subcommand)]
        action: commands::auth::Action,
    },
    /// Create a RoleBinding or ClusterRoleBinding in one command.
    Create {
        #[command(subcommand)]
        action: commands::create::Action,
    },
    /// Describe a kind or one of its fields: type, default, meaning, and
    /// the fields below it.
    #[command(
        after_help = "Fields are named as in manifests; lists and maps are walked \
        through to their elements.\n\n\
        Examples:\n  \
        berth explain deployment\n  \
        berth explain deployment.spec.strategy\n  \
        berth explain deploy.spec.template.spec.env"
    )]
    Explain {
        /// `KIND` or `KIND.field.field` (`deployment.spec.replicas`).
        target: String,
    },
    /// Print a generated reference page of the user guide.
    #[command(hide = true)]
    Docs {
        /// `cli` (docs/guide/cli.md) or `fields` (docs/guide/fields.md).
        #[arg(value_enum)]
        page: commands::docs::Page,
    },
    /// Show live CPU, memory and requests per second of nodes or instances.
    #[command(after_help = "Examples:\n  \
        berth top nodes\n  \
        berth top instances -A")]
    Top {
        /// `nodes` or `instances`.
        #[arg(value_enum)]
        target: top::Target,
        /// Namespace (instances).
        #[arg(short, long)]
        namespace: Option<String>,
        /// All namespaces (instances).
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Print the address of the web dashboard, with its token (read from
    /// the local scheduler's data directory; the scheduler needs --admin).
    #[command(after_help = "Examples:\n  \
        berth dashboard\n  \
        berth dashboard --data /var/lib/berth/scheduler")]
    Dashboard {
        /// The scheduler's data directory.
        #[arg(long, env = "BERTH_DATA", default_value_os_t = config::data_home("scheduler"))]
        data: PathBuf,
    },
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  \
        berth completion bash > ~/.local/share/bash-completion/completions/berth\n  \
        berth completion fish > ~/.config/fish/completions/berth.fish")]
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Delete objects named in manifest files, or one by kind and name.
    #[command(after_help = "Examples:\n  \
        berth delete -f hello.yaml\n  \
        berth delete deployment hello\n  \
        berth delete service hello -n staging")]
    Delete {
        /// Manifest files naming the objects.
        #[arg(short = 'f', long = "filename")]
        files: Vec<PathBuf>,
        /// Kind, when deleting by name.
        kind: Option<String>,
        /// Name, when deleting by name.
        name: Option<String>,
        /// Namespace.
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Show one object in detail.
    #[command(after_help = "Examples:\n  \
        berth describe deployment hello\n  \
        berth describe instance hello-b7k2x\n  \
        berth describe node dev")]
    Describe {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// Namespace.
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Print an instance's stdout and stderr, or a Deployment's (each line
    /// prefixed with its instance), one timestamped line per line.
    #[command(after_help = "Examples:\n  \
        berth logs hello-b7k2x\n  \
        berth logs deployment/hello --tail 20\n  \
        berth logs deployment/hello -f --since 5m")]
    Logs {
        /// `INSTANCE` or `deployment/NAME`.
        target: String,
        /// Namespace.
        #[arg(short, long)]
        namespace: Option<String>,
        /// Keep printing new lines as they are written.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines (of each instance).
        #[arg(long)]
        tail: Option<u64>,
        /// Only lines newer than this: 10s, 5m, 1h, 1h30m.
        #[arg(long, value_parser = logs::parse_since)]
        since: Option<u64>,
    },
    /// List events, oldest first; with -w, keep printing them as they happen.
    #[command(after_help = "Examples:\n  \
        berth events\n  \
        berth events -A -w\n  \
        berth events --for deployment/hello")]
    Events {
        /// Namespace (events about nodes are in `default`).
        #[arg(short, long)]
        namespace: Option<String>,
        /// All namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Keep printing new and repeated events until interrupted.
        #[arg(short, long)]
        watch: bool,
        /// Only events about this object: KIND/NAME.
        #[arg(long = "for", value_parser = parse_for)]
        for_object: Option<(Kind, String)>,
    },
    /// Add or remove node taints: KEY=VALUE:EFFECT adds, KEY:EFFECT- removes.
    #[command(after_help = "Examples:\n  \
        berth taint node node-1 gpu=true:NoSchedule\n  \
        berth taint node node-1 gpu:NoSchedule-")]
    Taint {
        /// Always `node` (or `nodes`, `no`).
        kind: String,
        /// The node.
        name: String,
        /// Taints.
        #[arg(required = true)]
        taints: Vec<String>,
    },
    /// Follow, inspect, pause, resume or roll back a Deployment's rollout.
    Rollout {
        #[command(subcommand)]
        action: RolloutAction,
    },
    /// Set a Deployment's replica count.
    #[command(after_help = "Examples:\n  \
        berth scale deployment/hello --replicas 5\n  \
        berth scale deployment/api --replicas 0 -n staging")]
    Scale {
        /// `deployment/NAME`.
        target: String,
        /// Desired replicas.
        #[arg(long)]
        replicas: i64,
        /// Namespace.
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Change a Deployment's template: `set component deployment/NAME FILE.wasm`.
    #[command(after_help = "Examples:\n  \
        berth set component deployment/hello ./hello-v2.wasm\n  \
        berth set component deployment/hello target/wasm32-wasip2/release/hello.wasm && berth rollout status deployment/hello")]
    Set {
        /// What to set: `component`.
        what: String,
        /// `deployment/NAME`.
        target: String,
        /// The new component file.
        file: PathBuf,
        /// Namespace.
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Publish a component to an OCI registry as a Wasm component artifact;
    /// prints its reference by digest, for `component:` in a manifest.
    #[command(after_help = "Examples:\n  \
        berth push hello.wasm oci://127.0.0.1:5000/hello:v1\n  \
        berth push target/wasm32-wasip2/release/api.wasm oci://ghcr.io/org/api:1.2.0")]
    Push {
        /// The component file.
        file: PathBuf,
        /// Where to: `oci://REGISTRY/REPO:TAG` (plain HTTP to a loopback registry).
        reference: String,
    },
    /// Create a Cargo project for a component: an HTTP service or a Job.
    #[command(after_help = "Examples:\n  \
        berth new greeter\n  \
        berth new nightly-report --template job\n  \
        berth new api --dir services/api --sdk-path ~/src/berth/sdk/berth-sdk")]
    New {
        /// The project's name: its Cargo package and Deployment (a DNS-1123 label).
        name: String,
        /// What the component is.
        #[arg(long, value_enum, default_value = "http")]
        template: commands::new::Template,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The berth-sdk crate to depend on (default: $BERTH_SDK_PATH, else
        /// the source tree berth was built from).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Build the project for wasm32-wasip2; print the component's path and digest.
    #[command(
        after_help = "Runs `cargo build --release --target wasm32-wasip2`; set         CARGO_NET_OFFLINE=true to build offline, CARGO_TARGET_DIR to build elsewhere.\n\n\
        Examples:\n  \
        berth build\n  \
        berth build --dir services/api --debug"
    )]
    Build {
        /// The project's directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Build with Cargo's dev profile instead of release.
        #[arg(long)]
        debug: bool,
    },
    /// Build the project, deploy it, wait until it is ready, print its URL.
    #[command(
        after_help = "A berth.yaml in the project is applied as `berth apply -f` would; \
        without one, an HTTP component becomes a Deployment named after the package \
        (labels app=NAME), a command component a Job.\n\n\
        Examples:\n  \
        berth deploy\n  \
        berth deploy --replicas 3 -n staging\n  \
        berth deploy --dir services/api --wait 5m"
    )]
    Deploy {
        /// The project's directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Build with Cargo's dev profile instead of release.
        #[arg(long)]
        debug: bool,
        /// Replicas of the generated Deployment.
        #[arg(long)]
        replicas: Option<i64>,
        /// Namespace of the generated object (default: default).
        #[arg(short, long)]
        namespace: Option<String>,
        /// Give up waiting after this long (10s, 5m, 1h30m); 0s waits as long as it takes.
        #[arg(long, value_parser = logs::parse_since, default_value = "120s")]
        wait: u64,
        /// The nodes' ingress domain, for the URL.
        #[arg(long, default_value = berth_node::DEFAULT_DOMAIN)]
        domain: String,
    },
    /// Mark a node unschedulable: no new instances.
    #[command(after_help = "Examples:\n  \
        berth cordon node-1")]
    Cordon {
        /// The node.
        name: String,
    },
    /// Mark a node schedulable again.
    #[command(after_help = "Examples:\n  \
        berth uncordon node-1")]
    Uncordon {
        /// The node.
        name: String,
    },
    /// Cordon a node and evict its instances, respecting PodDisruptionBudgets.
    #[command(after_help = "Examples:\n  \
        berth drain node-a --timeout 2m\n  \
        berth drain node-a --ignore-daemonsets")]
    Drain {
        /// The node.
        name: String,
        /// Give up after this long (10s, 5m, 1h30m); 0s waits as long as it takes.
        #[arg(long, value_parser = logs::parse_since, default_value = "0s")]
        timeout: u64,
        /// Leave DaemonSet instances on the node instead of refusing.
        #[arg(long)]
        ignore_daemonsets: bool,
        /// Evict instances that no controller owns too.
        #[arg(long)]
        force: bool,
    },
    /// Run the scheduler (control plane).
    #[command(after_help = "Examples:\n  \
        berth scheduler --data /var/lib/berth --listen 0.0.0.0:7443\n  \
        berth scheduler --admin 127.0.0.1:9090 --config-file scheduler.yaml")]
    Scheduler {
        /// Data directory (store, CA, credentials).
        #[arg(long, env = "BERTH_DATA", default_value_os_t = config::data_home("scheduler"))]
        data: PathBuf,
        /// UDP address for QUIC.
        #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:7443")]
        listen: SocketAddr,
        /// Seconds a node may stay silent before it turns NotReady (default 5).
        #[arg(long)]
        node_grace_seconds: Option<u64>,
        /// Scheduler config file (placement plugins, weights, strategy).
        #[arg(long, env = "BERTH_SCHEDULER_CONFIG")]
        config_file: Option<PathBuf>,
        /// TCP address for the admin HTTP listener (/metrics, /livez, /readyz); off when not given.
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// Audit log file (JSON lines, rotated at 10 MiB); default audit.log in the data directory.
        #[arg(long, env = "BERTH_AUDIT_LOG")]
        audit_log: Option<PathBuf>,
        /// File holding the 32-byte key Secrets are encrypted with at rest (must exist); default secrets.key in the data directory, created on first start.
        #[arg(long, env = "BERTH_SECRETS_KEY")]
        secrets_key: Option<PathBuf>,
    },
    /// Run a node agent that joins a scheduler.
    #[command(after_help = "Examples:\n  \
        berth node --join 10.0.0.1:7443 --token berth1.… --name node-1 --ingress 0.0.0.0:8080\n  \
        berth node --join 10.0.0.1:7443 --name gpu-1 --label disktype=ssd --taint gpu=true:NoSchedule\n  \
        berth node --join 10.0.0.1:7443 --name box-1 --runtime wasm,oci")]
    Node {
        /// The scheduler's QUIC address.
        #[arg(long)]
        join: SocketAddr,
        /// Bootstrap token (needed on first start; see the scheduler's join-token file).
        #[arg(long, env = "BERTH_TOKEN")]
        token: Option<String>,
        /// Node name (DNS-1123 label).
        #[arg(long)]
        name: String,
        /// Address of the HTTP ingress.
        #[arg(long, default_value = "127.0.0.1:8080")]
        ingress: SocketAddr,
        /// UDP address where other nodes forward Service calls over QUIC
        /// (default: the ingress's IP address, a port the OS picks).
        #[arg(long)]
        peer_listen: Option<SocketAddr>,
        /// Data directory (default: ~/.local/share/berth/node-NAME).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Domain served: `<deployment>.<namespace>.<domain>`.
        #[arg(long, default_value = berth_node::DEFAULT_DOMAIN)]
        domain: String,
        /// Node label KEY=VALUE (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// CPU to advertise in millicores instead of the machine's.
        #[arg(long)]
        cpu_millis: Option<u64>,
        /// Memory to advertise in bytes instead of the machine's.
        #[arg(long)]
        memory_bytes: Option<u64>,
        /// Most instances this node takes (0: no limit).
        #[arg(long, default_value_t = 0)]
        max_instances: u64,
        /// Taint to register with, KEY=VALUE:EFFECT (repeatable).
        #[arg(long = "taint", value_parser = Taint::parse)]
        taints: Vec<Taint>,
        /// TCP address for the admin HTTP listener (/metrics, /livez, /readyz); off when not given.
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// Runtime kinds to offer, comma-separated: wasm (components), oci
        /// (Linux containers), or wasm,oci.
        #[arg(long, value_delimiter = ',', default_value = "wasm")]
        runtime: Vec<RuntimeKind>,
        /// The OCI runtime program for containers: runc, crun, youki or a path.
        #[arg(long, default_value = "runc")]
        oci_runtime: PathBuf,
    },
    /// A sandbox worker process; nodes start these themselves.
    #[command(hide = true)]
    Sandbox {
        /// The node's abstract socket name.
        #[arg(long)]
        socket: String,
        /// The node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The ingress domain.
        #[arg(long)]
        domain: String,
    },
    /// Run a scheduler and one node in one process, for one machine.
    #[command(after_help = "Examples:\n  \
        berth dev\n  \
        berth dev -f examples/hello.yaml\n  \
        berth dev --ingress 127.0.0.1:9080 --data /tmp/berth-dev")]
    Dev {
        /// Data directory.
        #[arg(long, default_value_os_t = config::data_home("dev"))]
        data: PathBuf,
        /// UDP address for the scheduler's QUIC.
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: SocketAddr,
        /// Address of the HTTP ingress.
        #[arg(long, default_value = "127.0.0.1:8080")]
        ingress: SocketAddr,
        /// Domain served: `<deployment>.<namespace>.<domain>`.
        #[arg(long, default_value = berth_node::DEFAULT_DOMAIN)]
        domain: String,
        /// Manifests to apply once the cluster is up.
        #[arg(short = 'f', long = "filename")]
        files: Vec<PathBuf>,
    },
}

/// `berth --help`'s closing lines.
const EXIT_STATUS: &str = "Exit status:\n  \
    0  success\n  \
    1  an error (its `error: ...` line is on stderr); for `berth diff`: something would change\n  \
    2  the command line is invalid; for `berth diff`: an error";

/// A runtime kind a node offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RuntimeKind {
    /// WebAssembly components, in wasmtime.
    Wasm,
    /// Linux containers, through an OCI runtime.
    Oci,
}

#[derive(Debug, Subcommand)]
enum RolloutAction {
    /// Wait for the rollout to finish; non-zero exit if it fails or times out.
    #[command(after_help = "Examples:\n  \
        berth rollout status deployment/hello\n  \
        berth rollout status deployment/hello --timeout 120")]
    Status {
        /// `deployment/NAME`.
        target: String,
        /// Give up after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// Namespace.
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// List the revisions kept for rollback.
    #[command(after_help = "Examples:\n  \
        berth rollout history deployment/hello")]
    History {
        /// `deployment/NAME`.
        target: String,
        /// Namespace.
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Roll back to the previous revision, or to `--to-revision`.
    #[command(after_help = "Examples:\n  \
        berth rollout undo deployment/hello\n  \
        berth rollout undo deployment/hello --to-revision 2")]
    Undo {
        /// `deployment/NAME`.
        target: String,
        /// The revision to return to.
        #[arg(long)]
        to_revision: Option<u64>,
        /// Namespace.
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Stop rolling out template changes.
    #[command(after_help = "Examples:\n  \
        berth rollout pause deployment/hello")]
    Pause {
        /// `deployment/NAME`.
        target: String,
        /// Namespace.
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Roll out template changes again.
    #[command(after_help = "Examples:\n  \
        berth rollout resume deployment/hello")]
    Resume {
        /// `deployment/NAME`.
        target: String,
        /// Namespace.
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// End a canary's current pause, or with `--full` skip to 100%.
    #[command(after_help = "Examples:\n  \
        berth rollout promote deployment/hello\n  \
        berth rollout promote deployment/hello --full")]
    Promote {
        /// `deployment/NAME`.
        target: String,
        /// Skip every remaining step.
        #[arg(long)]
        full: bool,
        /// Namespace.
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Stop a canary: its instances stop, the stable revision serves all.
    #[command(after_help = "Examples:\n  \
        berth rollout abort deployment/hello")]
    Abort {
        /// `deployment/NAME`.
        target: String,
        /// Namespace.
        #[arg(short, long)]
        namespace: Option<String>,
    },
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("label {text:?} must read KEY=VALUE"))
}

fn parse_for(text: &str) -> Result<(Kind, String), String> {
    events::parse_for(text).map_err(|e| e.to_string())
}

/// Prints the events `query` asks for, as they come with `-w`.
async fn print_events(client: &Client, query: &events::Query, all_namespaces: bool) -> Result<()> {
    use std::io::Write as _;
    let mut header = true;
    events::events(client, query, |batch| {
        if batch.first && batch.events.is_empty() && !query.watch {
            match &query.namespace {
                Some(ns) => eprintln!("No events found in {ns} namespace."),
                None => eprintln!("No events found."),
            }
            return Ok(false);
        }
        if batch.events.is_empty() {
            return Ok(true);
        }
        let text = render::events(
            &batch.events,
            header,
            all_namespaces,
            jiff::Timestamp::now(),
        );
        header = false;
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e).context("cannot write to stdout"),
        }
    })
    .await
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// `deployment/hello created`, as kubectl prints it.
pub fn outcome_line(outcome: &ApplyOutcome) -> String {
    let mut words = outcome.object.splitn(2, ' ');
    let kind = words.next().unwrap_or_default().to_lowercase();
    let name = words
        .next()
        .map(|n| n.rsplit('/').next().unwrap_or(n))
        .unwrap_or_default();
    format!("{kind}/{name} {}", outcome.action.as_str())
}

fn kind(name: &str) -> Result<Kind> {
    Kind::from_cli_name(name).with_context(|| {
        format!("unknown kind {name:?}: expected namespaces, deployments, daemonsets, jobs, cronjobs, services, ingresses, poddisruptionbudgets, resourcequotas, limitranges, instances, nodes, priorityclasses or events")
    })
}

async fn connect(cli_config: Option<&std::path::Path>) -> Result<Client> {
    let path = config::path(cli_config);
    let config = ClientConfig::load(&path)?;
    Client::connect(&config).await
}

async fn pause(client: &Client, target: &str, namespace: &str, pause: bool) -> Result<()> {
    let name = rollout::deployment_name(target, None)?;
    let patch = berth_api::wire::DeploymentPatch {
        paused: Some(pause),
        ..Default::default()
    };
    rollout::patch(client, namespace, &name, patch).await?;
    println!(
        "deployment/{name} {}",
        if pause { "paused" } else { "resumed" }
    );
    Ok(())
}

async fn cordon(config: Option<&std::path::Path>, name: &str, cordon: bool) -> Result<()> {
    let patch = berth_api::wire::NodePatch {
        unschedulable: Some(cordon),
        ..Default::default()
    };
    let client = connect(config).await?;
    node_admin::patch(&client, name, patch).await?;
    client.close().await;
    println!(
        "node/{name} {}",
        if cordon { "cordoned" } else { "uncordoned" }
    );
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    let config_path = config::path(cli.config.as_deref());
    match cli.command {
        Command::Diff { files } => {
            let sources = apply::sources(&files)?;
            let client = connect(cli.config.as_deref()).await?;
            let diffs = diff::diff(&client, &sources).await?;
            client.close().await;
            print!("{}", render::diff(&diffs, render::colour::stdout()));
            if diffs.iter().any(diff::ObjectDiff::changed) {
                return Err(diff::Changes.into());
            }
        }
        Command::Config { action } => match action {
            config_cmd::Action::GetContexts => {
                let rows = config_cmd::get_contexts(&config_path)?;
                print!("{}", render::contexts(&rows));
            }
            config_cmd::Action::UseContext { name } => {
                config_cmd::use_context(&config_path, &name)?;
                println!("Switched to context {name:?}.");
            }
            config_cmd::Action::CurrentContext => {
                println!("{}", config_cmd::current_context(&config_path)?);
            }
        },
        Command::Apply { files } => {
            let sources = apply::sources(&files)?;
            // quinn's driver tasks keep the span that is current when the
            // connection starts, past the command's end: connect first, so
            // that `apply` ends (and is exported) with the command.
            let client = connect(cli.config.as_deref()).await?;
            // One trace per apply: the scheduler and the nodes continue it.
            let span = tracing::info_span!("apply", files = ?files);
            let outcomes =
                tracing::Instrument::instrument(apply::apply(&client, &sources), span).await?;
            for outcome in &outcomes {
                println!("{}", outcome_line(outcome));
            }
            client.close().await;
        }
        Command::Get {
            kind: kind_name,
            name,
            namespace,
            all_namespaces,
            selector,
            output,
            show_secrets,
        } => {
            let kind = kind(&kind_name)?;
            let query = get::Query {
                kind,
                namespace: if all_namespaces {
                    None
                } else {
                    Some(
                        namespace
                            .clone()
                            .unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
                    )
                },
                name: name.clone(),
            };
            let client = connect(cli.config.as_deref()).await?;
            let mut objects = if show_secrets {
                get::reveal(&client, &query).await
            } else {
                get::get(&client, &query).await
            }?;
            client.close().await;
            if let Some(selector) = &selector {
                objects = get::select(objects, selector);
            }
            if objects.is_empty() && !matches!(output, Format::Json | Format::Yaml) {
                match (&query.namespace, kind.is_namespaced()) {
                    (Some(ns), true) => eprintln!("No resources found in {ns} namespace."),
                    _ => eprintln!("No resources found"),
                }
                return Ok(());
            }
            let text = render::objects(
                kind,
                &objects,
                output,
                name.is_some(),
                all_namespaces,
                jiff::Timestamp::now(),
            )?;
            print!("{text}");
        }
        Command::Version => print!("{}", version::version()),
        Command::User { action } => {
            let client = connect(cli.config.as_deref()).await?;
            let result = match action {
                commands::user::Action::Create {
                    name,
                    days,
                    context,
                } => {
                    let issued =
                        commands::user::issue(&client, &config_path, &name, days, true, context)
                            .await?;
                    render::issued(&issued, &config_path)
                }
                commands::user::Action::Cert {
                    name,
                    days,
                    context,
                } => {
                    let issued =
                        commands::user::issue(&client, &config_path, &name, days, false, context)
                            .await?;
                    render::issued(&issued, &config_path)
                }
                commands::user::Action::Revoke { name } => {
                    commands::user::revoke(&client, &name).await?;
                    format!("user/{name} revoked\n")
                }
            };
            client.close().await;
            print!("{result}");
        }
        Command::Token {
            action: commands::token::Action::Create { name, user, ttl },
        } => {
            let client = connect(cli.config.as_deref()).await?;
            let created = commands::token::create(&client, &name, user, ttl).await?;
            client.close().await;
            eprintln!("token/{name} created, expires {}", created.expires);
            println!("{}", created.secret);
        }
        Command::Auth {
            action:
                commands::auth::Action::CanI {
                    verb,
                    resource,
                    name,
                    namespace,
                    all_namespaces,
                    as_user,
                },
        } => {
            let namespace =
                (!all_namespaces).then(|| namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into()));
            let question = commands::auth::Question {
                verb,
                resource,
                name,
                namespace,
                as_user,
            };
            let client = connect(cli.config.as_deref()).await?;
            let (allowed, _reason) = commands::auth::can_i(&client, question).await?;
            client.close().await;
            println!("{}", if allowed { "yes" } else { "no" });
            if !allowed {
                return Err(commands::auth::No.into());
            }
        }
        Command::Create { action } => {
            let binding = match action {
                commands::create::Action::Rolebinding {
                    name,
                    clusterrole,
                    role,
                    users,
                    namespace,
                } => commands::create::Binding {
                    name,
                    namespace: Some(namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into())),
                    cluster_role: clusterrole,
                    role,
                    users,
                },
                commands::create::Action::Clusterrolebinding {
                    name,
                    clusterrole,
                    users,
                } => commands::create::Binding {
                    name,
                    namespace: None,
                    cluster_role: Some(clusterrole),
                    role: None,
                    users,
                },
            };
            let client = connect(cli.config.as_deref()).await?;
            let outcomes = commands::create::create(&client, &binding).await?;
            client.close().await;
            for outcome in &outcomes {
                println!("{}", outcome_line(outcome));
            }
        }
        Command::Explain { target } => {
            print!("{}", render::explain(&commands::explain::explain(&target)?));
        }
        Command::Docs { page } => print!("{}", page.generate(Cli::command())),
        Command::Top {
            target,
            namespace,
            all_namespaces,
        } => {
            let namespace =
                (!all_namespaces).then(|| namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into()));
            let client = connect(cli.config.as_deref()).await?;
            let rows = top::top(&client, target, namespace).await?;
            client.close().await;
            print!("{}", render::top(&rows, all_namespaces));
        }
        Command::Dashboard { data } => print!("{}", commands::dashboard::dashboard(&data)?),
        Command::Completion { shell } => {
            use std::io::Write as _;
            let script = completion::script(shell, &mut Cli::command());
            std::io::stdout()
                .write_all(&script)
                .context("cannot write the completion script")?;
        }
        Command::Delete {
            files,
            kind: kind_name,
            name,
            namespace,
        } => {
            let targets = match (files.is_empty(), kind_name, name) {
                (false, None, None) => delete::targets_from_files(&files)?,
                (true, Some(kind_name), Some(name)) => vec![delete::Target {
                    kind: kind(&kind_name)?,
                    namespace: Some(namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into())),
                    name,
                }],
                _ => bail!("give either -f FILE or KIND NAME"),
            };
            let client = connect(cli.config.as_deref()).await?;
            for target in &targets {
                let object = delete::delete(&client, target).await?;
                println!("{object} deleted");
            }
            client.close().await;
        }
        Command::Describe {
            kind: kind_name,
            name,
            namespace,
        } => {
            let kind = kind(&kind_name)?;
            let query = get::Query {
                kind,
                namespace: Some(namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into())),
                name: Some(name),
            };
            let client = connect(cli.config.as_deref()).await?;
            let objects = get::get(&client, &query).await?;
            // Events about a Node live in `default`, as in Kubernetes.
            let events_namespace = match kind {
                Kind::Node => Some(DEFAULT_NAMESPACE.to_owned()),
                _ if kind.is_namespaced() => query.namespace.clone(),
                _ => None,
            };
            let events = match events_namespace {
                Some(namespace) => {
                    get::get(
                        &client,
                        &get::Query {
                            kind: Kind::Event,
                            namespace: Some(namespace),
                            name: None,
                        },
                    )
                    .await?
                }
                None => Vec::new(),
            };
            client.close().await;
            for object in &objects {
                let mut about: Vec<Object> = events
                    .iter()
                    .filter(|e| match e {
                        Object::Event(e) => {
                            e.involved_object.kind == object.kind().as_str()
                                && e.involved_object.name == object.metadata().name
                        }
                        _ => false,
                    })
                    .cloned()
                    .collect();
                about.sort_by_key(|e| match e {
                    Object::Event(e) => e.first_timestamp,
                    _ => jiff::Timestamp::UNIX_EPOCH,
                });
                print!(
                    "{}",
                    render::describe(object, &about, jiff::Timestamp::now())
                );
            }
        }
        Command::Logs {
            target,
            namespace,
            follow,
            tail,
            since,
        } => {
            let query = logs::Query {
                namespace: namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
                target: logs::parse_target(&target)?,
                tail,
                since_seconds: since,
                follow,
            };
            let client = connect(cli.config.as_deref()).await?;
            logs::logs(&client, &query, &mut std::io::stdout().lock()).await?;
            client.close().await;
        }
        Command::Events {
            namespace,
            all_namespaces,
            watch,
            for_object,
        } => {
            let query = events::Query {
                namespace: (!all_namespaces)
                    .then(|| namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into())),
                involved: for_object,
                watch,
            };
            let client = connect(cli.config.as_deref()).await?;
            print_events(&client, &query, all_namespaces).await?;
            client.close().await;
        }
        Command::Taint {
            kind: kind_name,
            name,
            taints,
        } => {
            if kind(&kind_name)? != Kind::Node {
                bail!("only nodes have taints: berth taint node NAME KEY=VALUE:EFFECT");
            }
            let patch = node_admin::taint_patch(&taints)?;
            let client = connect(cli.config.as_deref()).await?;
            node_admin::patch(&client, &name, patch).await?;
            client.close().await;
            println!("node/{name} tainted");
        }
        Command::Rollout { action } => {
            let client = connect(cli.config.as_deref()).await?;
            let ns = |n: Option<String>| n.unwrap_or_else(|| DEFAULT_NAMESPACE.into());
            match action {
                RolloutAction::Status {
                    target,
                    timeout,
                    namespace,
                } => {
                    let name = rollout::deployment_name(&target, None)?;
                    let timeout = timeout.map(Duration::from_secs);
                    let mut line = render::ProgressLine::stdout();
                    rollout::status(&client, &ns(namespace), &name, timeout, &mut |p| {
                        line.show(p);
                    })
                    .await?;
                }
                RolloutAction::History { target, namespace } => {
                    let name = rollout::deployment_name(&target, None)?;
                    print!(
                        "{}",
                        rollout::history(&client, &ns(namespace), &name).await?
                    );
                }
                RolloutAction::Undo {
                    target,
                    to_revision,
                    namespace,
                } => {
                    let name = rollout::deployment_name(&target, None)?;
                    let patch = berth_api::wire::DeploymentPatch {
                        undo_to: Some(to_revision.unwrap_or(0)),
                        ..Default::default()
                    };
                    rollout::patch(&client, &ns(namespace), &name, patch).await?;
                    println!("deployment/{name} rolled back");
                }
                RolloutAction::Pause { target, namespace } => {
                    pause(&client, &target, &ns(namespace), true).await?;
                }
                RolloutAction::Resume { target, namespace } => {
                    pause(&client, &target, &ns(namespace), false).await?;
                }
                RolloutAction::Promote {
                    target,
                    full,
                    namespace,
                } => {
                    let name = rollout::deployment_name(&target, None)?;
                    let action = if full {
                        rollout::CanaryAction::FullyPromoted
                    } else {
                        rollout::CanaryAction::Promoted
                    };
                    let change = rollout::canary(&client, &ns(namespace), &name, action).await?;
                    println!("{}", render::canary_change(&change));
                }
                RolloutAction::Abort { target, namespace } => {
                    let name = rollout::deployment_name(&target, None)?;
                    let action = rollout::CanaryAction::Aborted;
                    let change = rollout::canary(&client, &ns(namespace), &name, action).await?;
                    println!("{}", render::canary_change(&change));
                }
            }
            client.close().await;
        }
        Command::Scale {
            target,
            replicas,
            namespace,
        } => {
            let name = rollout::deployment_name(&target, None)?;
            let client = connect(cli.config.as_deref()).await?;
            let patch = berth_api::wire::DeploymentPatch {
                replicas: Some(replicas),
                ..Default::default()
            };
            let namespace = namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into());
            rollout::patch(&client, &namespace, &name, patch).await?;
            client.close().await;
            println!("deployment/{name} scaled");
        }
        Command::Set {
            what,
            target,
            file,
            namespace,
        } => {
            if what != "component" {
                bail!(
                    "berth set {what:?}: only `berth set component deployment/NAME FILE.wasm` exists"
                );
            }
            let name = rollout::deployment_name(&target, None)?;
            let client = connect(cli.config.as_deref()).await?;
            let digest = apply::upload_component(&client, &file).await?;
            let patch = berth_api::wire::DeploymentPatch {
                component: Some(digest),
                ..Default::default()
            };
            let namespace = namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into());
            rollout::patch(&client, &namespace, &name, patch).await?;
            client.close().await;
            println!("deployment/{name} component updated");
        }
        Command::New {
            name,
            template,
            dir,
            sdk_path,
        } => {
            let options = commands::new::Options {
                name,
                template,
                dir,
                sdk_path,
            };
            print!("{}", render::created(&commands::new::new(&options)?));
        }
        Command::Build { dir, debug } => {
            let built = commands::build::build(&commands::build::Options { dir, debug })?;
            print!("{}", render::built(&built));
        }
        Command::Deploy {
            dir,
            debug,
            replicas,
            namespace,
            wait,
            domain,
        } => {
            let build = commands::build::Options {
                dir: dir.clone(),
                debug,
            };
            let built = commands::build::build(&build)?;
            print!("{}", render::built(&built));
            let options = commands::deploy::Options {
                dir,
                replicas,
                namespace,
                wait: (wait > 0).then(|| Duration::from_secs(wait)),
                domain,
            };
            let client = connect(cli.config.as_deref()).await?;
            let mut line = render::ProgressLine::stdout();
            let deployed = commands::deploy::deploy(&client, &options, &built, &mut |step| {
                render::deploy_step(step, &mut line);
            })
            .await;
            drop(line);
            client.close().await;
            print!("{}", render::deployed(&deployed?));
        }
        Command::Push { file, reference } => {
            let pushed = commands::push::push(&file, &reference).await?;
            println!("{}", render::pushed(&pushed));
        }
        Command::Cordon { name } => cordon(cli.config.as_deref(), &name, true).await?,
        Command::Uncordon { name } => cordon(cli.config.as_deref(), &name, false).await?,
        Command::Drain {
            name,
            timeout,
            ignore_daemonsets,
            force,
        } => {
            let options = drain::Options {
                node: name,
                timeout: (timeout > 0).then(|| Duration::from_secs(timeout)),
                ignore_daemonsets,
                force,
            };
            let client = connect(cli.config.as_deref()).await?;
            let drained = drain::drain(&client, &options, &mut render::drain_step).await;
            client.close().await;
            println!("{}", render::drained(&drained?));
        }
        Command::Scheduler {
            data,
            listen,
            node_grace_seconds,
            config_file,
            admin,
            audit_log,
            secrets_key,
        } => {
            let file = match &config_file {
                Some(path) => scheduler_config::load(path)?,
                None => scheduler_config::SchedulerFile::default(),
            };
            let grace = node_grace_seconds
                .or(file.node_grace_seconds)
                .map_or(berth_scheduler::DEFAULT_NODE_GRACE, Duration::from_secs);
            let config = berth_scheduler::Config {
                data_dir: data,
                listen,
                node_grace: grace,
                placement: file.placement,
                admin,
                audit_log,
                secrets_key,
            };
            scheduler::run(config, &config_path).await?;
        }
        Command::Node {
            join,
            token,
            name,
            ingress,
            peer_listen,
            data,
            domain,
            labels,
            cpu_millis,
            memory_bytes,
            max_instances,
            taints,
            admin,
            runtime,
            oci_runtime,
        } => {
            let machine = berth_node::machine_capacity();
            let capacity =
                (cpu_millis.is_some() || memory_bytes.is_some()).then(|| NodeResources {
                    cpu_millis: cpu_millis.unwrap_or(machine.cpu_millis),
                    memory_bytes: memory_bytes.unwrap_or(machine.memory_bytes),
                });
            let data_dir = data.unwrap_or_else(|| config::data_home(&format!("node-{name}")));
            node::run(berth_node::Config {
                name,
                scheduler: join,
                token,
                data_dir,
                ingress,
                peer_listen,
                domain,
                labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                capacity,
                max_instances,
                taints,
                admin,
                sandbox: Some(sandbox_program()?),
                wasm: runtime.contains(&RuntimeKind::Wasm),
                oci_runtime: runtime.contains(&RuntimeKind::Oci).then_some(oci_runtime),
            })
            .await?;
        }
        Command::Sandbox {
            socket,
            data_dir,
            domain,
        } => {
            berth_node::sandbox::worker::run(berth_node::sandbox::worker::WorkerArgs {
                socket,
                data_dir,
                domain,
            })
            .await?;
        }
        Command::Dev {
            data,
            listen,
            ingress,
            domain,
            files,
        } => {
            dev::run(
                dev::DevConfig {
                    data_dir: data,
                    listen,
                    ingress,
                    domain,
                    files,
                },
                &config_path,
            )
            .await?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `berth diff` exits 1 when something would change, so its errors
    // exit 2, as `kubectl diff`'s do.
    let error_exit = match cli.command {
        Command::Diff { .. } => ExitCode::from(diff::ERROR_EXIT),
        _ => ExitCode::FAILURE,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return error_exit;
        }
    };
    let telemetry = telemetry::init(cli.log_format, cli.command.service_name(), runtime.handle());
    let result = runtime.block_on(run(cli));
    // Before exit, while the runtime still runs the exporter's requests.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `berth diff` found changes: its output says which.
        Err(e) if e.is::<diff::Changes>() => ExitCode::FAILURE,
        // `berth auth can-i` said no.
        Err(e) if e.is::<commands::auth::No>() => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            error_exit
        }
    }
}

/// How a node starts its sandboxes: this very binary, `berth sandbox`.
pub(crate) fn sandbox_program() -> Result<berth_node::sandbox::SandboxProgram> {
    Ok(berth_node::sandbox::SandboxProgram {
        program: std::env::current_exe().context("cannot find the berth executable")?,
        args: vec!["sandbox".into()],
    })
}
