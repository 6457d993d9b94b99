//! `berth config get-contexts|use-context|current-context` over the client
//! config a real scheduler wrote: the single-cluster file is the context
//! `default`; a second context switched to sends the user verbs elsewhere.

use crate::harness::Cluster;

#[test]
fn contexts_switch_the_cluster_user_verbs_talk_to() {
    let cluster = Cluster::start(0);
    let config = &cluster.scheduler.config;
    let written = std::fs::read_to_string(config).unwrap();
    assert!(!written.contains("contexts"), "{written}");
    assert_eq!(cluster.ok(&["config", "current-context"]), "default\n");
    let server = cluster.scheduler.addr.to_string();
    assert_eq!(
        cluster.ok(&["config", "get-contexts"]),
        format!("CURRENT   NAME      SERVER\n*         default   {server}\n")
    );

    // A second context: this cluster's credentials, a port nothing
    // listens on.
    let value: serde_json::Value = serde_yaml_ng::from_str(&written).unwrap();
    let unreachable = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = unreachable.local_addr().unwrap().to_string();
    drop(unreachable);
    let context = format!(
        "contexts:\n- name: elsewhere\n  server: {dead}\n  certificateAuthority: {}\n  \
         clientCertificate: {}\n  clientKey: {}\n",
        serde_json::to_string(&value["certificateAuthority"]).unwrap(),
        serde_json::to_string(&value["clientCertificate"]).unwrap(),
        serde_json::to_string(&value["clientKey"]).unwrap(),
    );
    std::fs::write(config, format!("{written}{context}")).unwrap();
    cluster.ok(&["get", "deployments"]);

    assert_eq!(
        cluster.ok(&["config", "use-context", "elsewhere"]),
        "Switched to context \"elsewhere\".\n"
    );
    assert_eq!(cluster.ok(&["config", "current-context"]), "elsewhere\n");
    assert_eq!(
        cluster.ok(&["config", "get-contexts"]),
        format!(
            "CURRENT   NAME        SERVER\n\
             \x20         default     {server}\n\
             *         elsewhere   {dead}\n"
        )
    );
    let out = cluster.berth(&["get", "deployments"]);
    assert!(!out.status.success(), "reached a dead address");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");

    let out = cluster.berth(&["config", "use-context", "nowhere"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no context named \"nowhere\"") && stderr.contains("default, elsewhere"),
        "{stderr}"
    );
    assert_eq!(cluster.ok(&["config", "current-context"]), "elsewhere\n");

    cluster.ok(&["config", "use-context", "default"]);
    cluster.ok(&["get", "deployments"]);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(config).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}
