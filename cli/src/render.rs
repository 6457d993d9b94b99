//! Prints what a verb returns: kubectl-style tables (plain or `wide`),
//! `kind/name` lines, JSON or YAML. Tables, JSON and YAML are never
//! coloured; `diff` colours its lines only as [`colour`] allows (a
//! terminal, and no `NO_COLOR`). Several objects print as a `List`
//! (`apiVersion: v1`, as kubectl prints it), which `apply -f` reads back.
//! Snapshot tests of `get` and `describe` are in `render/snapshots.rs`.

pub mod colour;
mod contexts;
mod diff;
mod explain;
pub mod progress;
mod project;
mod quota;
mod rbac;
mod secret;
#[cfg(test)]
mod snapshots;

use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use berth_api::{Kind, Object};
use berth_scheduler::events::REASON_CRASH_LOOP_BACK_OFF as CRASH_LOOP_BACK_OFF;
use jiff::Timestamp;
use serde::Serialize;

pub use contexts::contexts;
pub use diff::diff;
pub use explain::explain;
pub use progress::ProgressLine;
pub use project::{built, created, deploy_step, deployed};
pub use rbac::issued;

/// Output formats of `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Columns, as kubectl prints them.
    Table,
    /// The table with more columns.
    Wide,
    /// `kind/name`, one a line, for scripts.
    Name,
    /// JSON: one object, or a `List`.
    Json,
    /// YAML: one object, or a `List`.
    Yaml,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct List<'a> {
    api_version: &'static str,
    kind: &'static str,
    items: &'a [Object],
}

/// Renders `objects` of `kind`. `single` means one object was asked for by
/// name: JSON and YAML then print it alone rather than in a `List`.
pub fn objects(
    kind: Kind,
    objects: &[Object],
    format: Format,
    single: bool,
    all_namespaces: bool,
    now: Timestamp,
) -> Result<String> {
    match format {
        Format::Json => {
            let mut text = match (single, objects.first()) {
                (true, Some(object)) => serde_json::to_string_pretty(object),
                _ => serde_json::to_string_pretty(&list(objects)),
            }
            .context("cannot encode json")?;
            text.push('\n');
            Ok(text)
        }
        Format::Yaml => match (single, objects.first()) {
            (true, Some(object)) => serde_yaml_ng::to_string(object),
            _ => serde_yaml_ng::to_string(&list(objects)),
        }
        .context("cannot encode yaml"),
        Format::Table => Ok(table(kind, objects, all_namespaces, false, now)),
        Format::Wide => Ok(table(kind, objects, all_namespaces, true, now)),
        Format::Name => Ok(objects.iter().map(|o| format!("{}\n", name(o))).collect()),
    }
}

/// `deployment/hello`, as `kubectl get -o name` prints it.
pub fn name(object: &Object) -> String {
    format!(
        "{}/{}",
        object.kind().as_str().to_lowercase(),
        object.metadata().name
    )
}

/// Longest MESSAGE cell of `-o wide`.
const WIDE_MESSAGE_CHARS: usize = 40;

/// `text` cut to `max` characters, the last three of them `...`.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(3)).collect();
        cut.push_str("...");
        cut
    }
}

fn or_none(text: String) -> String {
    if text.is_empty() {
        "<none>".into()
    } else {
        text
    }
}

/// The columns `-o wide` adds after the plain ones.
fn wide_headers(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Deployment => &["COMPONENT", "SELECTOR"],
        Kind::Instance => &["REASON", "MESSAGE"],
        Kind::Node => &["LABELS", "TAINTS"],
        Kind::Job => &["COMPONENT"],
        Kind::Ingress => &[],
        Kind::Service => &["PORT(S)"],
        Kind::DaemonSet => &["COMPONENT", "SELECTOR"],
        Kind::CronJob => &["COMPONENT"],
        Kind::PodDisruptionBudget => &["SELECTOR"],
        Kind::HorizontalAutoscaler => &["LAST SCALE"],
        Kind::ResourceQuota | Kind::LimitRange => &[],
        Kind::Role | Kind::ClusterRole | Kind::RoleBinding | Kind::ClusterRoleBinding => &[],
        Kind::NetworkPolicy => &[],
        Kind::Secret | Kind::ConfigMap => &[],
        Kind::Namespace | Kind::PriorityClass | Kind::Event => &[],
    }
}

fn wide_cells(object: &Object) -> Vec<String> {
    match object {
        Object::Job(j) => vec![or_none(short_digest(&j.spec.template.spec.component))],
        Object::Ingress(_) => vec![],
        Object::Service(s) => {
            let ports: Vec<String> = s.spec.ports.iter().map(|p| p.port.to_string()).collect();
            vec![or_none(ports.join(","))]
        }
        Object::Deployment(d) => {
            let short = short_digest(&d.spec.template.spec.component);
            let selector: Vec<String> = d
                .spec
                .selector
                .match_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            vec![or_none(short), or_none(selector.join(","))]
        }
        Object::Instance(i) => vec![
            or_none(i.status.reason.clone()),
            or_none(truncate(&i.status.message, WIDE_MESSAGE_CHARS)),
        ],
        Object::Node(n) => {
            let taints: Vec<String> = n.spec.taints.iter().map(ToString::to_string).collect();
            vec![
                n.metadata.labels.len().to_string(),
                or_none(taints.join(",")),
            ]
        }
        Object::DaemonSet(d) => {
            let spec = &d.spec.template.spec;
            let runs = spec
                .image
                .clone()
                .unwrap_or_else(|| short_digest(&spec.component));
            vec![
                or_none(runs),
                or_none(label_pairs(&d.spec.selector.match_labels)),
            ]
        }
        Object::CronJob(c) => {
            let spec = &c.spec.job_template.spec.template.spec;
            let runs = spec
                .image
                .clone()
                .unwrap_or_else(|| short_digest(&spec.component));
            vec![or_none(runs)]
        }
        Object::PodDisruptionBudget(b) => {
            vec![or_none(label_pairs(&b.spec.selector.match_labels))]
        }
        Object::HorizontalAutoscaler(a) => vec![
            a.status
                .as_ref()
                .and_then(|s| s.last_scale_time)
                .map_or_else(|| "<none>".to_owned(), |t| t.to_string()),
        ],
        Object::Namespace(_) | Object::PriorityClass(_) | Object::Event(_) => Vec::new(),
        Object::ResourceQuota(_) | Object::LimitRange(_) => Vec::new(),
        Object::Role(_)
        | Object::ClusterRole(_)
        | Object::RoleBinding(_)
        | Object::ClusterRoleBinding(_) => Vec::new(),
        Object::NetworkPolicy(_) => Vec::new(),
        Object::Secret(_) | Object::ConfigMap(_) => Vec::new(),
    }
}

/// `sha256:` and the first 12 hex digits, as image ids are shown.
fn short_digest(component: &str) -> String {
    component.chars().take("sha256:".len() + 12).collect()
}

/// The `apiVersion` of a `List`: kubectl's, since a List is no berth kind.
const LIST_API_VERSION: &str = "v1";

fn list(items: &[Object]) -> List<'_> {
    List {
        api_version: LIST_API_VERSION,
        kind: "List",
        items,
    }
}

/// kubectl's AGE: `45s`, `12m`, `5h`, `3d`.
pub fn age(created: Option<Timestamp>, now: Timestamp) -> String {
    let Some(created) = created else {
        return "<unknown>".into();
    };
    let seconds = now.duration_since(created).as_secs().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn row(object: &Object, now: Timestamp) -> Vec<String> {
    let meta = object.metadata();
    let age = age(meta.creation_timestamp, now);
    match object {
        Object::Namespace(_) => vec![meta.name.clone(), "Active".into(), age],
        Object::Deployment(d) => {
            let status = d.status.clone().unwrap_or_default();
            vec![
                meta.name.clone(),
                format!("{}/{}", status.ready_replicas, d.spec.replicas),
                status.updated_replicas.to_string(),
                status.available_replicas.to_string(),
                age,
            ]
        }
        Object::Instance(i) => {
            let running = i.status.phase == berth_api::Phase::Running;
            let ready = u8::from(running && i.status.ready);
            // As kubectl: the phase, or what holds the instance back; a
            // crash loop shows even while the node calls it Running.
            let status = if i.status.reason.is_empty()
                || (running && i.status.reason != CRASH_LOOP_BACK_OFF)
            {
                i.status.phase.to_string()
            } else {
                i.status.reason.clone()
            };
            vec![
                meta.name.clone(),
                format!("{ready}/1"),
                status,
                i.status.restart_count.to_string(),
                i.spec.node_name.clone().unwrap_or_else(|| "<none>".into()),
                age,
            ]
        }
        Object::Job(j) => vec![
            meta.name.clone(),
            format!("{}/{}", j.status.succeeded, j.spec.completions()),
            job_duration(&j.status, now),
            age,
        ],
        Object::DaemonSet(d) => {
            let status = &d.status;
            vec![
                meta.name.clone(),
                status.desired_number_scheduled.to_string(),
                status.current_number_scheduled.to_string(),
                status.number_ready.to_string(),
                status.updated_number_scheduled.to_string(),
                status.number_available.to_string(),
                or_none(label_pairs(&d.spec.template.spec.node_selector)),
                age,
            ]
        }
        Object::CronJob(c) => vec![
            meta.name.clone(),
            c.spec.schedule.clone(),
            or_none(c.spec.time_zone.clone().unwrap_or_default()),
            if c.spec.suspend { "True" } else { "False" }.to_owned(),
            c.status.active.len().to_string(),
            c.status
                .last_schedule_time
                .map_or_else(|| "<none>".to_owned(), |t| self::age(Some(t), now)),
            age,
        ],
        Object::Ingress(i) => {
            let (hosts, paths, backends) = ingress_columns(i);
            vec![meta.name.clone(), hosts, paths, backends, age]
        }
        Object::ResourceQuota(q) => {
            let [request, limit] = quota::quota_cells(q);
            vec![meta.name.clone(), age, or_none(request), or_none(limit)]
        }
        Object::LimitRange(_) => vec![meta.name.clone(), age],
        Object::Role(_) | Object::ClusterRole(_) => vec![meta.name.clone(), age],
        Object::RoleBinding(b) | Object::ClusterRoleBinding(b) => vec![
            meta.name.clone(),
            rbac::role_cell(b),
            rbac::users_cell(b),
            age,
        ],
        Object::Secret(s) => vec![
            meta.name.clone(),
            s.type_.clone(),
            s.data.len().to_string(),
            age,
        ],
        Object::ConfigMap(c) => vec![meta.name.clone(), c.data.len().to_string(), age],
        Object::NetworkPolicy(p) => {
            let selector = label_pairs(&p.spec.pod_selector.match_labels);
            let selector = if selector.is_empty() {
                "<none>".to_owned()
            } else {
                selector
            };
            vec![meta.name.clone(), selector, age]
        }
        Object::PodDisruptionBudget(b) => {
            let bound = |v: Option<berth_api::rollout::IntOrPercent>| {
                v.map_or_else(|| "N/A".to_owned(), |v| v.to_string())
            };
            vec![
                meta.name.clone(),
                bound(b.spec.min_available),
                bound(b.spec.max_unavailable),
                b.status.disruptions_allowed.to_string(),
                age,
            ]
        }
        Object::HorizontalAutoscaler(a) => {
            let status = a.status.clone().unwrap_or_default();
            vec![
                meta.name.clone(),
                format!("Deployment/{}", a.spec.scale_target_ref.name),
                autoscaler_targets(a),
                a.spec.min_replicas.to_string(),
                a.spec.max_replicas.to_string(),
                status.current_replicas.to_string(),
                age,
            ]
        }
        Object::Service(s) => vec![
            meta.name.clone(),
            or_none(label_pairs(&s.spec.selector)),
            or_none(endpoints(&s.status.endpoints)),
            age,
        ],
        Object::PriorityClass(c) => vec![
            meta.name.clone(),
            c.value.to_string(),
            c.global_default.to_string(),
            age,
        ],
        Object::Event(e) => vec![
            self::age(Some(e.last_timestamp), now),
            e.type_.clone(),
            e.reason.clone(),
            format!(
                "{}/{}",
                e.involved_object.kind.to_lowercase(),
                e.involved_object.name
            ),
            e.message.clone(),
        ],
        Object::Node(n) => vec![
            meta.name.clone(),
            {
                let ready = if n.status.is_ready() {
                    "Ready"
                } else {
                    "NotReady"
                };
                if n.spec.unschedulable {
                    format!("{ready},SchedulingDisabled")
                } else {
                    ready.to_owned()
                }
            },
            n.status.runtimes.join(","),
            n.status.ingress_address.clone(),
            age,
        ],
    }
}

fn headers(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Namespace => &["NAME", "STATUS", "AGE"],
        Kind::Deployment => &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        Kind::Instance => &["NAME", "READY", "STATUS", "RESTARTS", "NODE", "AGE"],
        Kind::Node => &["NAME", "STATUS", "RUNTIMES", "INGRESS", "AGE"],
        Kind::PriorityClass => &["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE"],
        Kind::Event => &["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        Kind::Job => &["NAME", "COMPLETIONS", "DURATION", "AGE"],
        Kind::Ingress => &["NAME", "HOSTS", "PATHS", "BACKENDS", "AGE"],
        Kind::Service => &["NAME", "SELECTOR", "ENDPOINTS", "AGE"],
        Kind::DaemonSet => &[
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE SELECTOR",
            "AGE",
        ],
        Kind::HorizontalAutoscaler => &[
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINREPLICAS",
            "MAXREPLICAS",
            "REPLICAS",
            "AGE",
        ],
        Kind::ResourceQuota => &["NAME", "AGE", "REQUEST", "LIMIT"],
        Kind::LimitRange => &["NAME", "AGE"],
        Kind::Role | Kind::ClusterRole => &["NAME", "AGE"],
        Kind::RoleBinding | Kind::ClusterRoleBinding => &["NAME", "ROLE", "USERS", "AGE"],
        Kind::Secret => &["NAME", "TYPE", "DATA", "AGE"],
        Kind::ConfigMap => &["NAME", "DATA", "AGE"],
        Kind::NetworkPolicy => &["NAME", "POD-SELECTOR", "AGE"],
        Kind::PodDisruptionBudget => &[
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE",
        ],
        Kind::CronJob => &[
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SCHEDULE",
            "AGE",
        ],
    }
}

/// An autoscaler's TARGETS cell, as kubectl's: `<current>/<target>` with
/// the metric's unit (`<unknown>` before the first reports).
fn autoscaler_targets(autoscaler: &berth_api::autoscaler::HorizontalAutoscaler) -> String {
    use berth_api::autoscaler::Target;
    let current = autoscaler
        .status
        .as_ref()
        .and_then(|s| s.current_metric_value)
        .map_or_else(|| "<unknown>".to_owned(), |v| format!("{v}"));
    match autoscaler.spec.target() {
        Some(Target::Concurrency(t)) => format!("{current}/{t} concurrency"),
        Some(Target::RequestsPerSecond(t)) => format!("{current}/{t} rps"),
        Some(Target::CpuUtilization(t)) => format!("{current}%/{t}% cpu"),
        None => "<none>".to_owned(),
    }
}

/// An Ingress's HOSTS, PATHS and BACKENDS cells: each comma-separated,
/// in manifest order, duplicates left out.
fn ingress_columns(ingress: &berth_api::ingress::Ingress) -> (String, String, String) {
    let mut hosts: Vec<String> = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    let mut backends: Vec<String> = Vec::new();
    let add = |list: &mut Vec<String>, value: &str| {
        if !list.iter().any(|v| v == value) {
            list.push(value.to_owned());
        }
    };
    for rule in &ingress.spec.rules {
        add(&mut hosts, rule.host.as_deref().unwrap_or("*"));
        for path in rule.http.iter().flat_map(|h| h.paths.iter()) {
            add(&mut paths, path.path());
            add(&mut backends, &path.backend.service.name);
        }
    }
    if let Some(default) = &ingress.spec.default_backend {
        add(&mut backends, &default.service.name);
    }
    (
        or_none(hosts.join(",")),
        or_none(paths.join(",")),
        or_none(backends.join(",")),
    )
}

/// `key=value` pairs, comma-separated.
fn label_pairs(labels: &std::collections::BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}

/// Endpoints shown in a table: the first [`SHOWN_ENDPOINTS`] instances,
/// then how many more, as kubectl shows an Endpoints object.
fn endpoints(endpoints: &[berth_api::service::EndpointStatus]) -> String {
    let shown: Vec<&str> = endpoints
        .iter()
        .take(SHOWN_ENDPOINTS)
        .map(|e| e.instance.as_str())
        .collect();
    let mut text = shown.join(",");
    if endpoints.len() > SHOWN_ENDPOINTS {
        let _ = write!(text, " + {} more...", endpoints.len() - SHOWN_ENDPOINTS);
    }
    text
}

/// Endpoints named in a table cell before `+ N more...`.
const SHOWN_ENDPOINTS: usize = 3;

/// kubectl's DURATION of a Job: start to completion, or to now while it
/// runs; empty before it starts.
fn job_duration(status: &berth_api::job::JobStatus, now: Timestamp) -> String {
    let Some(start) = status.start_time else {
        return String::new();
    };
    let end = status.completion_time.unwrap_or(now);
    human_duration(end.duration_since(start).as_secs().max(0))
}

/// kubectl's `HumanDuration`: `45s`, `2m5s`, `15m`, `3h20m`, `12h`, `3d4h`,
/// `20d`.
fn human_duration(seconds: i64) -> String {
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86400);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if minutes < 10 && s % 60 == 0 => format!("{minutes}m"),
        s if minutes < 10 => format!("{minutes}m{}s", s % 60),
        _ if minutes < 3 * 60 => format!("{minutes}m"),
        _ if hours < 8 && minutes % 60 == 0 => format!("{hours}h"),
        _ if hours < 8 => format!("{hours}h{}m", minutes % 60),
        _ if hours < 48 => format!("{hours}h"),
        _ if hours < 8 * 24 && hours % 24 == 0 => format!("{days}d"),
        _ if hours < 8 * 24 => format!("{days}d{}h", hours % 24),
        _ => format!("{days}d"),
    }
}

/// Columns padded to their widest cell plus three spaces, as kubectl does.
fn table(
    kind: Kind,
    objects: &[Object],
    all_namespaces: bool,
    wide: bool,
    now: Timestamp,
) -> String {
    let namespaced = all_namespaces && kind.is_namespaced();
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(objects.len() + 1);
    let mut header: Vec<String> = headers(kind).iter().map(|h| (*h).to_owned()).collect();
    if wide {
        header.extend(wide_headers(kind).iter().map(|h| (*h).to_owned()));
    }
    if namespaced {
        header.insert(0, "NAMESPACE".into());
    }
    rows.push(header);
    for object in objects {
        let mut cells = row(object, now);
        if wide {
            cells.extend(wide_cells(object));
        }
        if namespaced {
            cells.insert(0, object.namespace().unwrap_or_default().to_owned());
        }
        rows.push(cells);
    }
    columns(rows)
}

/// `berth events`: events as `kubectl events` lists them, with the header
/// line when `header` (a watch prints it above its first lines only).
pub fn events(
    events: &[berth_api::Event],
    header: bool,
    all_namespaces: bool,
    now: Timestamp,
) -> String {
    let objects: Vec<Object> = events
        .iter()
        .map(|e| Object::Event(Box::new(e.clone())))
        .collect();
    let text = table(Kind::Event, &objects, all_namespaces, false, now);
    match text.split_once('\n') {
        Some((_, rows)) if !header => rows.to_owned(),
        _ => text,
    }
}

/// `berth top`: nodes as `kubectl top nodes` prints them (NAME,
/// CPU(cores), CPU%, MEMORY(bytes), MEMORY%; `<unknown>` for a node that
/// has not reported lately), or instances (NAME, CPU(cores),
/// MEMORY(bytes), REQUESTS/S, after NAMESPACE with `-A`).
pub fn top(rows: &berth_api::wire::TopRows, all_namespaces: bool) -> String {
    use berth_api::wire::TopRows;
    let mut table: Vec<Vec<String>> = Vec::new();
    match rows {
        TopRows::Nodes(nodes) => {
            table.push(
                ["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"]
                    .map(str::to_owned)
                    .to_vec(),
            );
            for node in nodes {
                let cells = match node.usage {
                    Some(usage) => vec![
                        millicores(usage.cpu_millis),
                        percent(usage.cpu_millis, node.allocatable.cpu_millis),
                        bytes(usage.memory_bytes),
                        percent(usage.memory_bytes, node.allocatable.memory_bytes),
                    ],
                    None => vec!["<unknown>".to_owned(); 4],
                };
                table.push(std::iter::once(node.name.clone()).chain(cells).collect());
            }
        }
        TopRows::Instances(instances) => {
            let mut header: Vec<String> = ["NAME", "CPU(cores)", "MEMORY(bytes)", "REQUESTS/S"]
                .map(str::to_owned)
                .to_vec();
            if all_namespaces {
                header.insert(0, "NAMESPACE".into());
            }
            table.push(header);
            for instance in instances {
                let mut cells = vec![
                    instance.name.clone(),
                    millicores(instance.cpu_millicores),
                    bytes(instance.memory_bytes),
                    format!(
                        "{}.{}",
                        instance.millirequests_per_second / 1000,
                        instance.millirequests_per_second % 1000 / 100
                    ),
                ];
                if all_namespaces {
                    cells.insert(0, instance.namespace.clone());
                }
                table.push(cells);
            }
        }
    }
    columns(table)
}

/// CPU as kubectl top prints it: `250m`.
fn millicores(millis: u64) -> String {
    format!("{millis}m")
}

/// Memory as kubectl top prints it, in Mi (Ki below one Mi, so that a
/// small usage does not read as none).
fn bytes(bytes: u64) -> String {
    const MI: u64 = 1024 * 1024;
    if bytes >= MI {
        format!("{}Mi", bytes / MI)
    } else {
        format!("{}Ki", bytes.div_ceil(1024))
    }
}

/// `used` as a whole percentage of `of`; `<unknown>` when `of` is 0.
fn percent(used: u64, of: u64) -> String {
    if of == 0 {
        return "<unknown>".to_owned();
    }
    let whole = u128::from(used) * 100 / u128::from(of);
    format!("{whole}%")
}

/// Lays rows out in columns padded to their widest cell plus three spaces.
fn columns(rows: Vec<Vec<String>>) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for cells in rows {
        let mut line = String::new();
        for (c, cell) in cells.iter().enumerate() {
            if c + 1 == cells.len() {
                line.push_str(cell);
            } else {
                let width = widths.get(c).copied().unwrap_or(0);
                let _ = write!(line, "{cell:<width$}   ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `berth describe`: the object's fields a person looks for, and the events
/// about it, as `kubectl describe` lays them out.
pub fn describe(object: &Object, events: &[Object], now: Timestamp) -> String {
    let meta = object.metadata();
    let mut out = String::new();
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(out, "{:<18}{value}", format!("{name}:"));
    };
    let or_none = |text: &str| {
        if text.is_empty() {
            "<none>".to_owned()
        } else {
            text.to_owned()
        }
    };
    field("Name", &meta.name);
    if let Some(namespace) = object.namespace() {
        field("Namespace", namespace);
    }
    field("Kind", object.kind().as_str());
    let labels: Vec<String> = meta
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    field("Labels", &or_none(&labels.join(", ")));
    field("UID", meta.uid.as_deref().unwrap_or("<none>"));
    field("Age", &age(meta.creation_timestamp, now));
    match object {
        Object::Instance(i) => {
            field("Node", i.spec.node_name.as_deref().unwrap_or("<none>"));
            field("Status", i.status.phase.as_str());
            field("Ready", &i.status.ready.to_string());
            field("Restart Count", &i.status.restart_count.to_string());
            field("Reason", &or_none(&i.status.reason));
            field("Message", &or_none(&i.status.message));
            field("Priority", &i.spec.priority.unwrap_or(0).to_string());
            field("Component", &i.spec.component);
            if let Some(owner) = meta.owner_references.first() {
                field("Controlled By", &format!("{}/{}", owner.kind, owner.name));
            }
        }
        Object::Deployment(d) => {
            let status = d.status.clone().unwrap_or_default();
            field(
                "Replicas",
                &format!(
                    "{} desired | {} updated | {} total | {} available",
                    d.spec.replicas,
                    status.updated_replicas,
                    status.replicas,
                    status.available_replicas
                ),
            );
            field("Component", &d.spec.template.spec.component);
            if let Some(canary) = &status.canary {
                field("Canary", &canary_line(canary));
            }
        }
        Object::Node(n) => {
            field("Ready", &n.status.is_ready().to_string());
            field("Unschedulable", &n.spec.unschedulable.to_string());
            let taints: Vec<String> = n.spec.taints.iter().map(ToString::to_string).collect();
            field("Taints", &or_none(&taints.join(", ")));
            field("Runtimes", &n.status.runtimes.join(", "));
            field("Ingress", &n.status.ingress_address);
            field(
                "Allocatable",
                &format!(
                    "cpu {}, memory {}",
                    berth_api::quantity::format_cpu(n.status.allocatable.cpu_millis),
                    berth_api::quantity::format_memory(n.status.allocatable.memory_bytes)
                ),
            );
        }
        Object::Job(j) => {
            let status = &j.status;
            field("Completions", &j.spec.completions().to_string());
            field("Parallelism", &j.spec.parallelism().to_string());
            field("Backoff Limit", &j.spec.backoff_limit().to_string());
            if let Some(seconds) = j.spec.active_deadline_seconds {
                field("Active Deadline", &format!("{seconds}s"));
            }
            field("Restart Policy", j.spec.restart_policy().as_str());
            let time =
                |t: Option<Timestamp>| t.map_or_else(|| "<none>".to_owned(), |t| t.to_string());
            field("Start Time", &time(status.start_time));
            field("Completed At", &time(status.completion_time));
            field("Duration", &or_none(&job_duration(status, now)));
            field(
                "Instances",
                &format!(
                    "{} Active / {} Succeeded / {} Failed",
                    status.active, status.succeeded, status.failed
                ),
            );
            let conditions: Vec<String> = status
                .conditions
                .iter()
                .map(|c| format!("{}={} ({})", c.type_.as_str(), c.status, c.reason))
                .collect();
            field("Conditions", &or_none(&conditions.join(", ")));
            field("Component", &j.spec.template.spec.component);
        }
        Object::Ingress(i) => {
            let default = i.spec.default_backend.as_ref();
            field(
                "Default backend",
                default.map_or("<none>", |b| b.service.name.as_str()),
            );
            for rule in &i.spec.rules {
                let host = rule.host.as_deref().unwrap_or("*");
                let paths = rule.http.iter().flat_map(|h| h.paths.iter());
                let lines: Vec<String> = paths
                    .map(|p| {
                        format!(
                            "{} ({:?}) -> {}",
                            p.path(),
                            p.path_type,
                            p.backend.service.name
                        )
                    })
                    .collect();
                field(&format!("Rule {host}"), &or_none(&lines.join(", ")));
            }
        }
        Object::Service(s) => {
            field("Selector", &label_pairs(&s.spec.selector));
            let ports: Vec<String> = s
                .spec
                .ports
                .iter()
                .map(|p| {
                    let name = p
                        .name
                        .as_ref()
                        .map_or_else(String::new, |n| format!("{n} "));
                    format!("{name}{}->{}", p.port, p.target())
                })
                .collect();
            field("Ports", &or_none(&ports.join(", ")));
            let endpoints: Vec<String> = s
                .status
                .endpoints
                .iter()
                .map(|e| format!("{} ({})", e.instance, e.node))
                .collect();
            field("Endpoints", &or_none(&endpoints.join(", ")));
        }
        Object::DaemonSet(d) => {
            let status = &d.status;
            field(
                "Selector",
                &or_none(&label_pairs(&d.spec.selector.match_labels)),
            );
            field(
                "Node-Selector",
                &or_none(&label_pairs(&d.spec.template.spec.node_selector)),
            );
            let strategy = &d.spec.update_strategy;
            let strategy = match strategy.type_ {
                berth_api::daemonset::DaemonSetStrategyType::RollingUpdate => format!(
                    "RollingUpdate (maxUnavailable {})",
                    strategy.max_unavailable(
                        usize::try_from(status.desired_number_scheduled).unwrap_or(0)
                    )
                ),
                berth_api::daemonset::DaemonSetStrategyType::OnDelete => "OnDelete".to_owned(),
            };
            field("Update Strategy", &strategy);
            field(
                "Nodes",
                &format!(
                    "{} desired / {} current / {} up-to-date / {} available / {} misscheduled",
                    status.desired_number_scheduled,
                    status.current_number_scheduled,
                    status.updated_number_scheduled,
                    status.number_available,
                    status.number_misscheduled
                ),
            );
            field(
                "Instances",
                &format!(
                    "{} Ready / {} Unavailable",
                    status.number_ready, status.number_unavailable
                ),
            );
            field(
                "Placement Errors",
                &or_none(&status.failed_placements.join("; ")),
            );
            let spec = &d.spec.template.spec;
            match &spec.image {
                Some(image) => field("Image", image),
                None => field("Component", &spec.component),
            }
        }
        Object::CronJob(c) => {
            let spec = &c.spec;
            field("Schedule", &spec.schedule);
            field("Time Zone", spec.time_zone.as_deref().unwrap_or("UTC"));
            field("Concurrency Policy", spec.concurrency_policy.as_str());
            field("Suspend", &spec.suspend.to_string());
            field(
                "Successful Job History Limit",
                &spec.successful_jobs_history_limit().to_string(),
            );
            field(
                "Failed Job History Limit",
                &spec.failed_jobs_history_limit().to_string(),
            );
            field(
                "Starting Deadline Seconds",
                &spec
                    .starting_deadline_seconds
                    .map_or_else(|| "<unset>".to_owned(), |s| format!("{s}s")),
            );
            let when =
                |t: Option<Timestamp>| t.map_or_else(|| "<unset>".to_owned(), |t| t.to_string());
            field("Last Schedule Time", &when(c.status.last_schedule_time));
            field("Last Successful Time", &when(c.status.last_successful_time));
            field("Active Jobs", &or_none(&c.status.active.join(", ")));
            let template = &spec.job_template.spec.template.spec;
            match &template.image {
                Some(image) => field("Image", image),
                None => field("Component", &template.component),
            }
        }
        Object::PodDisruptionBudget(b) => {
            let spec = &b.spec;
            field(
                "Selector",
                &or_none(&label_pairs(&spec.selector.match_labels)),
            );
            if let Some(min) = spec.min_available {
                field("Min available", &min.to_string());
            }
            if let Some(max) = spec.max_unavailable {
                field("Max unavailable", &max.to_string());
            }
            let status = &b.status;
            field(
                "Status",
                &format!(
                    "{} allowed disruptions | {} current healthy | {} desired healthy | \
                     {} expected instances",
                    status.disruptions_allowed,
                    status.current_healthy,
                    status.desired_healthy,
                    status.expected_instances
                ),
            );
        }
        Object::HorizontalAutoscaler(a) => {
            let spec = &a.spec;
            field(
                "Reference",
                &format!("Deployment/{}", spec.scale_target_ref.name),
            );
            field("Metrics", &autoscaler_targets(a));
            field("Min replicas", &spec.min_replicas.to_string());
            field("Max replicas", &spec.max_replicas.to_string());
            field(
                "Scale-down window",
                &format!("{}s", spec.stabilization_window_seconds()),
            );
            if spec.min_replicas == 0 {
                field(
                    "Scale to zero after",
                    &format!("{}s", spec.scale_to_zero_after_seconds()),
                );
            }
            let status = a.status.clone().unwrap_or_default();
            field(
                "Replicas",
                &format!(
                    "{} current / {} desired",
                    status.current_replicas, status.desired_replicas
                ),
            );
            field(
                "Last scale time",
                &status
                    .last_scale_time
                    .map_or_else(|| "<none>".to_owned(), |t| t.to_string()),
            );
        }
        Object::ResourceQuota(q) => {
            for (name, value) in quota::describe_quota(q) {
                field(&name, &value);
            }
        }
        Object::LimitRange(r) => {
            for (name, value) in quota::describe_limit_range(r) {
                field(&name, &value);
            }
        }
        Object::Role(r) | Object::ClusterRole(r) => {
            for (name, value) in rbac::describe_role(r) {
                field(&name, &value);
            }
        }
        Object::RoleBinding(b) | Object::ClusterRoleBinding(b) => {
            for (name, value) in rbac::describe_binding(b) {
                field(&name, &value);
            }
        }
        Object::Secret(s) => {
            for (name, value) in secret::describe_secret(s) {
                field(&name, &value);
            }
        }
        Object::ConfigMap(c) => {
            for (name, value) in secret::describe_config_map(c) {
                field(&name, &value);
            }
        }
        Object::NetworkPolicy(p) => {
            let selector = label_pairs(&p.spec.pod_selector.match_labels);
            field(
                "PodSelector",
                if selector.is_empty() {
                    "<none> (all instances in the namespace)"
                } else {
                    &selector
                },
            );
            field("Ingress rules", &p.spec.ingress.len().to_string());
        }
        Object::PriorityClass(c) => {
            field("Value", &c.value.to_string());
            field("GlobalDefault", &c.global_default.to_string());
            field("PreemptionPolicy", &format!("{:?}", c.preemption_policy));
        }
        Object::Namespace(_) => field("Status", "Active"),
        Object::Event(e) => {
            field("Type", &e.type_);
            field("Reason", &e.reason);
            field("Message", &e.message);
            field("Count", &e.count.to_string());
        }
    }
    let mut rows = vec![vec![
        "Type".to_owned(),
        "Reason".to_owned(),
        "Age".to_owned(),
        "From".to_owned(),
        "Message".to_owned(),
    ]];
    for event in events {
        if let Object::Event(e) = event {
            let seen = if e.count > 1 {
                format!(
                    "{} (x{} over {})",
                    age(Some(e.last_timestamp), now),
                    e.count,
                    age(Some(e.first_timestamp), now)
                )
            } else {
                age(Some(e.last_timestamp), now)
            };
            rows.push(vec![
                e.type_.clone(),
                e.reason.clone(),
                seen,
                e.source.clone(),
                e.message.clone(),
            ]);
        }
    }
    if rows.len() == 1 {
        out.push_str("Events:           <none>\n");
    } else {
        out.push_str("Events:\n");
        for line in columns(rows).lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// Prints one step of `berth drain` as kubectl words it: progress on
/// stdout, refusals and warnings on stderr.
/// A canary's state in one line: `step 1, weight 10%, canary abc
/// (stable def): CanaryPaused: paused at step 1 of 4`.
fn canary_line(canary: &berth_api::canary::CanaryStatus) -> String {
    let mut line = if canary.canary_hash.is_empty() {
        format!("stable {}", canary.stable_hash)
    } else {
        format!(
            "step {}, weight {}%, canary {} (stable {})",
            canary.step, canary.weight, canary.canary_hash, canary.stable_hash
        )
    };
    if !canary.reason.is_empty() {
        line.push_str(&format!(": {}: {}", canary.reason, canary.message));
    }
    line
}

/// What `berth push` did: the reference by digest, alone on its line so
/// scripts can take it.
pub fn pushed(pushed: &crate::commands::push::Pushed) -> String {
    pushed.reference.clone()
}

/// What `berth rollout promote|abort` did.
pub fn canary_change(change: &crate::commands::rollout::CanaryChange) -> String {
    format!(
        "deployment/{} {}",
        change.deployment,
        change.action.as_str()
    )
}

pub fn drain_step(step: crate::commands::drain::Step) {
    use crate::commands::drain::Step;
    match step {
        Step::Cordoned { node, already } => {
            let how = if already {
                "already cordoned"
            } else {
                "cordoned"
            };
            println!("node/{node} {how}");
        }
        Step::IgnoringDaemonSets(names) => eprintln!(
            "Warning: ignoring DaemonSet-managed instances: {}",
            names.join(", ")
        ),
        Step::Evicting(name) => println!("evicting instance {name}"),
        Step::Refused {
            instance,
            message,
            retry,
        } => eprintln!(
            "error when evicting instance {instance} (will retry after {}s): {message}",
            retry.as_secs()
        ),
        Step::Evicted(name) => println!("instance/{} evicted", instance_name(&name)),
    }
}

/// The name part of `namespace/name`.
fn instance_name(qualified: &str) -> &str {
    qualified
        .split_once('/')
        .map_or(qualified, |(_, name)| name)
}

/// The last line of a drain that finished.
pub fn drained(drained: &crate::commands::drain::Drained) -> String {
    format!("node/{} drained", drained.node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let now: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let at = |s: &str| Some(s.parse::<Timestamp>().unwrap());
        assert_eq!(age(at("2026-01-01T23:59:15Z"), now), "45s");
        assert_eq!(age(at("2026-01-01T23:00:00Z"), now), "60m");
        assert_eq!(age(at("2026-01-01T12:00:00Z"), now), "12h");
        assert_eq!(age(at("2025-12-20T00:00:00Z"), now), "13d");
        assert_eq!(age(None, now), "<unknown>");
    }

    fn object(json: serde_json::Value) -> Object {
        Object::from_json(&serde_json::to_vec(&json).unwrap()).unwrap()
    }

    fn deployment() -> Object {
        object(serde_json::json!({
            "apiVersion": "berth.dev/v1", "kind": "Deployment",
            "metadata": {"name": "hello", "namespace": "default",
                         "creationTimestamp": "2026-01-01T23:00:00Z"},
            "spec": {"replicas": 2,
                     "selector": {"matchLabels": {"app": "hello", "tier": "web"}},
                     "template": {"metadata": {"labels": {"app": "hello", "tier": "web"}},
                                  "spec": {"component": format!("sha256:{}", "ab12".repeat(16))}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
        }))
    }

    fn instances() -> Vec<Object> {
        vec![
            instance("hello-a1", "node-0", "Running", "", "", 0),
            instance(
                "hello-b2",
                "node-1",
                "Failed",
                "CrashLoop",
                "wasm trap: unreachable instruction executed in handler",
                4,
            ),
        ]
    }

    /// An instance as its node reports it: ready when Running.
    fn instance(
        name: &str,
        node: &str,
        phase: &str,
        reason: &str,
        message: &str,
        restarts: u32,
    ) -> Object {
        object(serde_json::json!({
            "apiVersion": "berth.dev/v1", "kind": "Instance",
            "metadata": {"name": name, "namespace": "default",
                         "labels": {"app": "hello"},
                         "creationTimestamp": "2026-01-01T23:59:15Z"},
            "spec": {"component": "sha256:00", "nodeName": node},
            "status": {"phase": phase, "reason": reason, "message": message,
                       "ready": phase == "Running", "restartCount": restarts}
        }))
    }

    fn node() -> Object {
        object(serde_json::json!({
            "apiVersion": "berth.dev/v1", "kind": "Node",
            "metadata": {"name": "node-0", "labels": {"zone": "a", "disk": "ssd"},
                         "creationTimestamp": "2026-01-01T12:00:00Z"},
            "spec": {"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]},
            "status": {"ingressAddress": "127.0.0.1:8080", "runtimes": ["wasmtime"]}
        }))
    }

    fn now() -> Timestamp {
        "2026-01-02T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn name_output_is_kind_slash_name() {
        let mut all = vec![deployment(), node()];
        all.extend(instances());
        let text = objects(Kind::Deployment, &all, Format::Name, false, false, now()).unwrap();
        assert_eq!(
            text,
            "deployment/hello\nnode/node-0\ninstance/hello-a1\ninstance/hello-b2\n"
        );
    }

    #[test]
    fn wide_deployments_add_component_and_selector() {
        let text = objects(
            Kind::Deployment,
            &[deployment()],
            Format::Wide,
            false,
            false,
            now(),
        )
        .unwrap();
        assert_eq!(
            text,
            "NAME    READY   UP-TO-DATE   AVAILABLE   AGE   COMPONENT             SELECTOR\n\
             hello   2/2     2            2           60m   sha256:ab12ab12ab12   app=hello,tier=web\n"
        );
    }

    #[test]
    fn wide_instances_add_reason_and_truncated_message() {
        let text = objects(
            Kind::Instance,
            &instances(),
            Format::Wide,
            false,
            true,
            now(),
        )
        .unwrap();
        assert_eq!(
            text,
            "NAMESPACE   NAME       READY   STATUS      RESTARTS   NODE     AGE   REASON      MESSAGE\n\
             default     hello-a1   1/1     Running     0          node-0   45s   <none>      <none>\n\
             default     hello-b2   0/1     CrashLoop   4          node-1   45s   CrashLoop   wasm trap: unreachable instruction ex...\n"
        );
    }

    #[test]
    fn instances_show_readiness_restarts_and_crash_loops() {
        let mut unready = instance(
            "hello-c3",
            "node-0",
            "Running",
            "",
            "Readiness probe failed: HTTP probe failed with statuscode: 503",
            0,
        );
        let mut looping = instance(
            "hello-d4",
            "node-0",
            "Running",
            "CrashLoopBackOff",
            "back-off 40s restarting failed instance",
            3,
        );
        for object in [&mut unready, &mut looping] {
            if let Object::Instance(i) = object {
                i.status.ready = false;
            }
        }
        let text = objects(
            Kind::Instance,
            &[unready, looping],
            Format::Table,
            false,
            false,
            now(),
        )
        .unwrap();
        assert_eq!(
            text,
            "NAME       READY   STATUS             RESTARTS   NODE     AGE\n\
             hello-c3   0/1     Running            0          node-0   45s\n\
             hello-d4   0/1     CrashLoopBackOff   3          node-0   45s\n"
        );
    }

    #[test]
    fn wide_nodes_add_label_count_and_taints() {
        let text = objects(Kind::Node, &[node()], Format::Wide, false, false, now()).unwrap();
        assert_eq!(
            text,
            "NAME     STATUS     RUNTIMES   INGRESS          AGE   LABELS   TAINTS\n\
             node-0   NotReady   wasmtime   127.0.0.1:8080   12h   2        gpu=yes:NoSchedule\n"
        );
    }

    fn job(name: &str, status: serde_json::Value) -> Object {
        object(serde_json::json!({
            "apiVersion": "berth.dev/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "default",
                         "creationTimestamp": "2026-01-01T23:00:00Z"},
            "spec": {"completions": 2,
                     "template": {"spec": {"component": "sha256:00", "restartPolicy": "Never"}}},
            "status": status
        }))
    }

    #[test]
    fn jobs_show_completions_and_duration() {
        let jobs = [
            job(
                "done",
                serde_json::json!({"succeeded": 2, "startTime": "2026-01-01T23:00:05Z",
                                   "completionTime": "2026-01-01T23:02:30Z"}),
            ),
            job(
                "running",
                serde_json::json!({"active": 1, "succeeded": 1,
                                   "startTime": "2026-01-01T23:59:15Z"}),
            ),
            job("new", serde_json::json!({})),
        ];
        let text = objects(Kind::Job, &jobs, Format::Table, false, false, now()).unwrap();
        assert_eq!(
            text,
            "NAME      COMPLETIONS   DURATION   AGE\n\
             done      2/2           2m25s      60m\n\
             running   1/2           45s        60m\n\
             new       0/2                      60m\n"
        );
        assert_eq!(human_duration(3 * 3600 + 20 * 60), "3h20m");
        assert_eq!(human_duration(50 * 3600), "2d2h");
        let described = describe(&jobs[0], &[], now());
        assert!(
            described.contains("Instances:        0 Active / 2 Succeeded / 0 Failed\n"),
            "{described}"
        );
    }

    #[test]
    fn plain_table_is_unchanged_by_wide_support() {
        let text = objects(
            Kind::Deployment,
            &[deployment()],
            Format::Table,
            false,
            false,
            now(),
        )
        .unwrap();
        assert_eq!(
            text,
            "NAME    READY   UP-TO-DATE   AVAILABLE   AGE\n\
             hello   2/2     2            2           60m\n"
        );
    }

    #[test]
    fn services_show_selector_and_endpoints() {
        let service = |name: &str, endpoints: &[&str]| {
            let endpoints: Vec<serde_json::Value> = endpoints
                .iter()
                .map(|e| serde_json::json!({"instance": e, "node": "node-0"}))
                .collect();
            object(serde_json::json!({
                "apiVersion": "berth.dev/v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "default",
                             "creationTimestamp": "2026-01-01T23:00:00Z"},
                "spec": {"selector": {"app": name, "tier": "web"},
                         "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
                "status": {"endpoints": endpoints}
            }))
        };
        let services = [
            service("b", &["b-1", "b-2", "b-3", "b-4", "b-5"]),
            service("idle", &[]),
        ];
        let text = objects(Kind::Service, &services, Format::Wide, false, false, now()).unwrap();
        assert_eq!(
            text,
            "NAME   SELECTOR            ENDPOINTS                 AGE   PORT(S)\n\
             b      app=b,tier=web      b-1,b-2,b-3 + 2 more...   60m   80\n\
             idle   app=idle,tier=web   <none>                    60m   80\n"
        );
        let described = describe(&services[0], &[], now());
        assert!(
            described.contains("Ports:            http 80->8080\n"),
            "{described}"
        );
        assert!(
            described.contains("Endpoints:        b-1 (node-0), b-2 (node-0)"),
            "{described}"
        );
    }

    #[test]
    fn top_prints_kubectl_columns() {
        use berth_api::wire::{InstanceTop, NodeTop, TopRows};
        let nodes = TopRows::Nodes(vec![
            NodeTop {
                name: "a".into(),
                usage: Some(berth_api::NodeResources {
                    cpu_millis: 250,
                    memory_bytes: 96 << 20,
                }),
                allocatable: berth_api::NodeResources {
                    cpu_millis: 1000,
                    memory_bytes: 1 << 30,
                },
            },
            NodeTop {
                name: "b".into(),
                usage: None,
                allocatable: berth_api::NodeResources::default(),
            },
        ]);
        assert_eq!(
            top(&nodes, false),
            "NAME   CPU(cores)   CPU%        MEMORY(bytes)   MEMORY%\n\
             a      250m         25%         96Mi            9%\n\
             b      <unknown>    <unknown>   <unknown>       <unknown>\n"
        );
        let instances = TopRows::Instances(vec![InstanceTop {
            namespace: "default".into(),
            name: "hello-b7k2x".into(),
            node: "a".into(),
            cpu_millicores: 3,
            memory_bytes: 512,
            millirequests_per_second: 1500,
        }]);
        assert_eq!(
            top(&instances, true),
            "NAMESPACE   NAME          CPU(cores)   MEMORY(bytes)   REQUESTS/S\n\
             default     hello-b7k2x   3m           1Ki             1.5\n"
        );
    }
}
