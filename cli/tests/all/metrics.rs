//! The admin listeners end to end: a scheduler and a node started with
//! `--admin 127.0.0.1:0` serve `/livez`, `/readyz` and `/metrics`; after
//! an apply and some ingress traffic the key series are there with
//! sensible values, read with a real exposition-format parser.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};

use crate::harness::{Cluster, HELLO_HOST, Proc, Scheduler, berth_bin, http_get};

/// Spawns `berth args` and waits for its `admin on http://ADDR` line and a
/// line containing `ready`; returns the process, the admin address and
/// the ready line. Stdout is drained until the process ends.
pub(crate) fn spawn(args: &[&str], config: &Path, ready: &str) -> (Proc, SocketAddr, String) {
    let mut child = Command::new(berth_bin())
        .args(args)
        .env("BERTH_CONFIG", config)
        .env("BERTH_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn berth");
    let stdout = child.stdout.take().expect("stdout");
    let proc = Proc::new(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut admin, mut ready_line) = (None, None);
    while admin.is_none() || ready_line.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("berth {args:?} did not start"));
        if let Some(addr) = line.strip_prefix("admin on http://") {
            admin = Some(addr.trim().parse().expect("admin address"));
        } else if line.contains(ready) {
            ready_line = Some(line);
        }
    }
    (proc, admin.unwrap(), ready_line.unwrap())
}

/// The address after `marker` in `line`.
pub(crate) fn addr_after(line: &str, marker: &str) -> SocketAddr {
    line.split(marker)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no address after {marker:?} in {line:?}"))
}

/// GETs `path` over HTTP/1.1; returns the status and body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// Scrapes `/metrics` and parses it.
pub(crate) fn scrape(addr: SocketAddr) -> Scrape {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("# EOF\n"), "not OpenMetrics text: {body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The value of a counter, gauge or untyped sample. OpenMetrics declares a
/// counter's type on its name without `_total`, so the parser reads its
/// samples as untyped.
fn value(sample: &Sample) -> f64 {
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{} is not a single value: {other:?}", sample.metric),
    }
}

/// The samples of `metric` whose labels include `labels`.
fn samples<'a>(
    scrape: &'a Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> impl Iterator<Item = &'a Sample> {
    let labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let metric = metric.to_owned();
    scrape.samples.iter().filter(move |s| {
        s.metric == metric
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(k) == Some(v.as_str()))
    })
}

/// The sum of `metric`'s matching samples; panics if there are none.
fn total(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = samples(scrape, metric, labels).map(value).collect();
    assert!(
        !found.is_empty(),
        "no {metric} {labels:?} in {:?}",
        scrape.samples
    );
    found.iter().sum()
}

/// The `+Inf` bucket of a histogram's matching series.
fn histogram_count(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = samples(scrape, metric, labels)
        .next()
        .unwrap_or_else(|| panic!("no histogram {metric} {labels:?}"));
    let Value::Histogram(buckets) = &sample.value else {
        panic!("{metric} is not a histogram: {:?}", sample.value);
    };
    let inf = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
    // Buckets are cumulative.
    assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
    inf.count
}

#[test]
fn scheduler_and_node_expose_metrics_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("scheduler");
    let config = dir.path().join("config");
    let (proc, scheduler_admin, line) = spawn(
        &[
            "scheduler",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ],
        &config,
        "scheduler listening on",
    );
    let scheduler = Scheduler {
        proc,
        addr: addr_after(&line, "listening on "),
        data,
        config,
    };
    let node_data = dir.path().join("node-0");
    let (_node, node_admin, line) = spawn(
        &[
            "node",
            "--join",
            &scheduler.addr.to_string(),
            "--token",
            &scheduler.token(),
            "--name",
            "node-0",
            "--data",
            node_data.to_str().unwrap(),
            "--ingress",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ],
        &scheduler.config,
        "serving http on",
    );
    let ingress = addr_after(&line, "serving http on ");
    let cluster = Cluster {
        dir,
        scheduler,
        nodes: Vec::new(),
    };

    for admin in [scheduler_admin, node_admin] {
        assert_eq!(get(admin, "/livez").0, 200);
        assert_eq!(get(admin, "/nope").0, 404);
    }
    assert_eq!(get(scheduler_admin, "/readyz").0, 200);
    cluster.wait_for("node ready", Duration::from_secs(30), || {
        get(node_admin, "/readyz").0 == 200
    });

    let manifest = cluster.hello_manifest(1);
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cluster.wait_ready(1);
    for _ in 0..3 {
        let (status, body) = http_get(ingress, HELLO_HOST).unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = http_get(ingress, "nobody.default.berth.localhost").unwrap();
    assert_eq!(status, 404);

    // The scheduler: requests by verb and code, their latency, commits,
    // passes, and the cluster's state from the latest pass.
    let mut scheduler_metrics = scrape(scheduler_admin);
    cluster.wait_for(
        "scheduler gauges to show the running instance",
        Duration::from_secs(30),
        || {
            scheduler_metrics = scrape(scheduler_admin);
            total(
                &scheduler_metrics,
                "berth_instances",
                &[("phase", "Running")],
            ) == 1.0
        },
    );
    let m = &scheduler_metrics;
    assert!(
        total(
            m,
            "berth_api_requests_total",
            &[("verb", "apply"), ("kind", "Deployment"), ("code", "ok")]
        ) >= 1.0
    );
    assert!(
        total(
            m,
            "berth_api_requests_total",
            &[("verb", "report"), ("code", "ok")]
        ) >= 1.0
    );
    assert!(
        histogram_count(
            m,
            "berth_api_request_duration_seconds",
            &[("verb", "apply")]
        ) >= 1.0
    );
    assert!(histogram_count(m, "berth_store_commit_duration_seconds", &[]) >= 1.0);
    assert!(total(m, "berth_placement_passes_total", &[]) >= 1.0);
    assert_eq!(total(m, "berth_nodes", &[("condition", "Ready")]), 1.0);
    assert_eq!(total(m, "berth_nodes", &[("condition", "NotReady")]), 0.0);
    assert_eq!(total(m, "berth_instances", &[("phase", "Pending")]), 0.0);

    // The node: requests per deployment and status, latency, instances by
    // phase, and one compile of the hello component. Sandboxes report
    // their requests to the node in batches, a moment later.
    let hello = [("namespace", "default"), ("deployment", "hello")];
    let ok = [hello[0], hello[1], ("code", "200")];
    let mut m = scrape(node_admin);
    cluster.wait_for(
        "the node to count the sandbox's requests",
        Duration::from_secs(10),
        || {
            m = scrape(node_admin);
            samples(&m, "berth_node_requests_total", &ok)
                .map(value)
                .sum::<f64>()
                == 3.0
        },
    );
    assert_eq!(total(&m, "berth_node_requests_total", &ok), 3.0);
    assert_eq!(
        total(
            &m,
            "berth_node_requests_total",
            &[("deployment", ""), ("code", "404")]
        ),
        1.0
    );
    assert_eq!(
        histogram_count(&m, "berth_node_request_duration_seconds", &hello),
        3.0
    );
    assert_eq!(
        total(&m, "berth_node_instances", &[("phase", "Running")]),
        1.0
    );
    assert_eq!(
        total(&m, "berth_node_compiles_total", &[("source", "compiled")])
            + total(&m, "berth_node_compiles_total", &[("source", "disk")]),
        1.0
    );

    // Instantiations come from the sandbox's batches too; its cgroup's
    // usage is read at scrape time; no limit was hit.
    cluster.wait_for(
        "the node to record the sandbox's instantiations",
        Duration::from_secs(10),
        || {
            m = scrape(node_admin);
            histogram_count(&m, "berth_node_instantiation_duration_seconds", &[]) >= 3.0
        },
    );
    let memory: Vec<f64> = samples(&m, "berth_node_sandbox_memory_bytes", &[])
        .map(value)
        .collect();
    assert_eq!(memory.len(), 1, "one sandbox: {memory:?}");
    assert!(memory.iter().all(|bytes| *bytes > 0.0), "{memory:?}");
    assert!(total(&m, "berth_node_sandbox_cpu_seconds_total", &[]) >= 0.0);
    for limit in ["memory", "deadline", "fuel", "table"] {
        assert_eq!(
            total(&m, "berth_node_limit_hits_total", &[("limit", limit)]),
            0.0
        );
    }

    // Placement: attempts and their latency so far; then an instance no
    // node can take is counted unschedulable by reason, and waits in the
    // placement queue.
    let m = scrape(scheduler_admin);
    assert!(total(&m, "berth_placement_attempts_total", &[]) >= 1.0);
    assert!(histogram_count(&m, "berth_placement_duration_seconds", &[]) >= 1.0);
    let big = cluster.manifest(
        "big",
        "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: big
spec:
  replicas: 1
  selector:
    matchLabels: {app: big}
  template:
    metadata:
      labels: {app: big}
    spec:
      component: {component}
      resources:
        requests: {memory: 100000Gi}
",
    );
    cluster.ok(&["apply", "-f", big.to_str().unwrap()]);
    let mut m = scrape(scheduler_admin);
    cluster.wait_for(
        "an unschedulable attempt to be counted",
        Duration::from_secs(30),
        || {
            m = scrape(scheduler_admin);
            samples(
                &m,
                "berth_placement_unschedulable_total",
                &[("reason", "InsufficientMemory")],
            )
            .map(value)
            .sum::<f64>()
                >= 1.0
                && total(
                    &m,
                    "berth_controller_queue_depth",
                    &[("controller", "placement")],
                ) == 1.0
        },
    );
    assert_eq!(
        total(&m, "berth_controller_queue_depth", &[("controller", "gc")]),
        0.0
    );
}
