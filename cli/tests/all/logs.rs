//! `berth logs` end to end: the hello component prints a line per request,
//! the node captures it with a timestamp, the scheduler relays it from the
//! node, and the CLI prints it, once or following.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::harness::{Cluster, HELLO_HOST, Proc, berth_bin, http_get};

/// Checks that `line` reads `<RFC 3339 UTC time> stdout served / as
/// <instance>`; returns the instance.
fn served_by(line: &str) -> String {
    let (time, rest) = line.split_once(' ').unwrap();
    assert!(time.ends_with('Z'), "time in UTC: {line}");
    if let Err(e) = time.parse::<jiff::Timestamp>() {
        panic!("not an RFC 3339 time in {line:?}: {e}");
    }
    rest.strip_prefix("stdout served / as ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .to_owned()
}

/// `[instance] line` → (instance, line).
fn prefixed(line: &str) -> (&str, &str) {
    let (prefix, rest) = line.split_once(' ').unwrap();
    let name = prefix
        .strip_prefix('[')
        .and_then(|p| p.strip_suffix(']'))
        .unwrap_or_else(|| panic!("no [instance] prefix: {line:?}"));
    (name, rest)
}

/// GETs `/` through the ingress; returns the instance that answered.
fn request(cluster: &Cluster) -> String {
    let (status, body) = http_get(cluster.nodes[0].ingress, HELLO_HOST).unwrap();
    assert_eq!(status, 200, "{body}");
    body.split("(instance ")
        .nth(1)
        .unwrap()
        .trim_end()
        .trim_end_matches(')')
        .to_owned()
}

#[test]
fn logs_print_and_follow_what_instances_write() {
    let mut cluster = Cluster::start(1);
    let manifest = cluster.hello_manifest(2);
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cluster.wait_ready(2);

    let mut served = BTreeMap::<String, usize>::new();
    for _ in 0..4 {
        *served.entry(request(&cluster)).or_default() += 1;
    }

    // One instance: its lines, with times, in order.
    // A sandbox sends its output to the node every 100 ms.
    let (instance, count) = served.iter().next().unwrap();
    let mut out = String::new();
    cluster.wait_for(
        "the lines to reach the node",
        Duration::from_secs(10),
        || {
            let read = cluster.berth(&["logs", instance]);
            out = String::from_utf8_lossy(&read.stdout).into_owned();
            read.status.success() && out.lines().count() == *count
        },
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), *count, "{out}");
    for line in &lines {
        assert_eq!(&served_by(line), instance);
    }
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(sorted, lines, "oldest first");
    assert_eq!(cluster.ok(&["logs", instance, "--since", "1h"]), out);
    assert_eq!(
        cluster.ok(&["logs", instance, "--tail", "1"]),
        format!("{}\n", lines.last().unwrap())
    );

    // A Deployment: the last line of each instance, prefixed with it.
    let out = cluster.ok(&["logs", "deployment/hello", "--tail", "1"]);
    let mut seen = BTreeSet::new();
    for line in out.lines() {
        let (name, rest) = prefixed(line);
        assert_eq!(served_by(rest), name);
        assert!(seen.insert(name.to_owned()), "one line per instance: {out}");
    }
    assert_eq!(seen, served.keys().cloned().collect(), "{out}");

    // Following: what was written, then a line written after it started.
    let mut child = Command::new(berth_bin())
        .args(["logs", "-f", "deployment/hello"])
        .env("BERTH_CONFIG", &cluster.scheduler.config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut follower = Proc::new(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(30))
            .expect("berth logs -f printed a line in time")
    };
    let written: usize = served.values().sum();
    let history: Vec<String> = (0..written).map(|_| next()).collect();
    let newest = history
        .iter()
        .map(|l| prefixed(l).1)
        .max()
        .unwrap()
        .to_owned();
    let answered = request(&cluster);
    let line = next();
    let (name, rest) = prefixed(&line);
    assert_eq!(name, answered);
    assert_eq!(served_by(rest), answered);
    assert!(rest > newest.as_str(), "a new line: {rest} after {newest}");
    follower.kill();

    // Unknown names fail with a message.
    for (target, message) in [
        ("nope", "error: Instance default/nope not found\n"),
        (
            "deployment/nope",
            "error: Deployment default/nope not found\n",
        ),
    ] {
        let out = cluster.berth(&["logs", target]);
        assert!(!out.status.success(), "berth logs {target} succeeded");
        assert_eq!(String::from_utf8_lossy(&out.stderr), message);
    }

    // So does an instance whose node is gone.
    cluster.nodes[0].kill();
    let out = cluster.berth(&["logs", instance]);
    assert!(!out.status.success(), "berth logs of a lost node succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("node node-0"),
        "{stderr}"
    );
}
