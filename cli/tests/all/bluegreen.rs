//! Blue-green releases with a Service: two Deployments, `blue` and `green`,
//! and a Service whose selector is switched from one to the other. A client
//! calls through the Service the whole time; once the first answer comes
//! from green, none comes from blue again (each node swaps a Service's
//! endpoints in one step), and no call fails.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{Cluster, hello_wasm, http_get};

fn track(name: &str, component: &Path) -> String {
    format!(
        "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: shop, track: {name}}}
  template:
    metadata:
      labels: {{app: shop, track: {name}}}
    spec:
      component: {}
      env:
        - {{name: GREETING, value: {name}}}
",
        component.display()
    )
}

fn service(track: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1
kind: Service
metadata:
  name: shop
spec:
  selector: {{app: shop, track: {track}}}
"
    )
}

fn caller(component: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: front
spec:
  replicas: 1
  selector:
    matchLabels: {{app: front}}
  template:
    metadata:
      labels: {{app: front}}
    spec:
      component: {component}
      nodeName: node-0
      env:
        - {{name: UPSTREAM, value: \"http://shop.default.svc/\"}}
"
    )
}

#[test]
fn switching_the_service_selector_moves_every_new_call_at_once() {
    let cluster = Cluster::start(2);
    let hello = hello_wasm();
    let manifest = [
        track("blue", &hello),
        track("green", &hello),
        service("blue"),
        caller(berth_test_programs::CALLER),
    ]
    .join("---\n");
    let path = cluster.manifest("shop.yaml", &manifest);
    cluster.ok(&["apply", "-f", path.to_str().unwrap()]);
    let ingress = cluster.nodes[0].ingress;
    let call = || match http_get(ingress, "front.default.berth.localhost") {
        Ok((200, body)) => body,
        Ok((status, body)) => format!("{status} {body}"),
        Err(e) => e,
    };
    cluster.wait_for("blue answering", Duration::from_secs(90), || {
        call().starts_with("upstream 200 OK: blue!")
    });
    // Green is up and ready before the switch, as blue-green needs.
    cluster.wait_for("green ready", Duration::from_secs(90), || {
        cluster.ok(&["get", "deployments"]).lines().any(|l| {
            let cells: Vec<_> = l.split_whitespace().collect();
            cells.first() == Some(&"green") && cells.get(1) == Some(&"2/2")
        })
    });

    let switch = cluster.manifest("switch.yaml", &service("green"));
    cluster.ok(&["apply", "-f", switch.to_str().unwrap()]);
    let mut answers = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut greens_in_a_row = 0;
    while greens_in_a_row < 50 {
        assert!(
            Instant::now() < deadline,
            "green never took over: {answers:?}"
        );
        let answer = call();
        if answer.starts_with("upstream 200 OK: green!") {
            greens_in_a_row += 1;
        } else {
            assert!(
                answer.starts_with("upstream 200 OK: blue!"),
                "every call succeeds during the switch: {answer}"
            );
            assert_eq!(
                greens_in_a_row, 0,
                "blue answered after green had: {answers:?}"
            );
        }
        answers.push(answer);
    }
}
