//! Every connection is mutual TLS: no certificate, a foreign certificate or
//! a wrong join token gets nowhere.

use std::process::Command;

use berth_api::quic;
use berth_api::wire::{ErrorCode, Request, Response};

use crate::harness::{Cluster, Scheduler, berth_bin};

fn ca_pem(cluster: &Cluster) -> String {
    std::fs::read_to_string(cluster.scheduler.data.join("ca.crt")).unwrap()
}

#[test]
fn a_connection_without_a_client_certificate_is_refused() {
    let cluster = Cluster::start(0);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let addr = cluster.scheduler.addr;
        let endpoint = quic::client_endpoint(
            addr,
            quic::anonymous_client_config(&ca_pem(&cluster)).unwrap(),
        )
        .unwrap();
        let connection = quic::connect(&endpoint, addr).await.unwrap();
        let request = Request::Get {
            kind: berth_api::Kind::Deployment,
            namespace: None,
            name: None,
        };
        match quic::call(&connection, &request).await.unwrap() {
            Response::Error(e) => {
                assert_eq!(e.code, ErrorCode::Unauthenticated);
                assert_eq!(e.message, "client certificate required");
            }
            other => panic!("anonymous get answered {other:?}"),
        }
        // The scheduler closes the connection after refusing.
        let reason = connection.closed().await;
        assert!(
            reason.to_string().contains("client certificate required"),
            "{reason}"
        );
    });
}

#[test]
fn a_certificate_from_another_cluster_is_refused() {
    let cluster = Cluster::start(0);
    let other_dir = tempfile::tempdir().unwrap();
    let other = Scheduler::start(other_dir.path(), "127.0.0.1:0");
    // Trust this cluster's CA, but present the other cluster's admin
    // certificate.
    let config = std::fs::read_to_string(&other.config).unwrap();
    let mut config: serde_json::Value = serde_yaml_ng::from_str(&config).unwrap();
    config["server"] = cluster.scheduler.addr.to_string().into();
    config["certificateAuthority"] = ca_pem(&cluster).into();
    let forged = other_dir.path().join("forged-config");
    std::fs::write(&forged, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    let out = Command::new(berth_bin())
        .args(["get", "deployments"])
        .env("BERTH_CONFIG", &forged)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains("handshake") || stderr.contains("certificate"),
        "{stderr}"
    );

    // Plain TCP finds nothing to talk to: the API is QUIC only.
    assert!(std::net::TcpStream::connect(cluster.scheduler.addr).is_err());
}

#[test]
fn a_wrong_join_token_is_refused() {
    let cluster = Cluster::start(0);
    let token = cluster.scheduler.token();
    let (prefix, _) = token.rsplit_once('.').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(berth_bin())
        .args([
            "node",
            "--join",
            &cluster.scheduler.addr.to_string(),
            "--token",
            &format!("{prefix}.not-the-secret"),
            "--name",
            "intruder",
            "--ingress",
            "127.0.0.1:0",
            "--data",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: cannot join the cluster"),
        "{stderr}"
    );
    assert!(stderr.contains("invalid join token"), "{stderr}");
    assert!(
        !dir.path().join("node.crt").exists(),
        "no credentials written"
    );
    let nodes = cluster.objects("nodes");
    assert!(nodes.is_empty(), "{nodes:?}");
}
