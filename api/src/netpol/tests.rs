#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn policy(namespace: &str, name: &str, yaml_spec: &str) -> NetworkPolicy {
    let spec: NetworkPolicySpec = serde_yaml_ng::from_str(yaml_spec).unwrap();
    NetworkPolicy {
        api_version: crate::API_VERSION.into(),
        kind: "NetworkPolicy".into(),
        metadata: ObjectMeta {
            name: name.into(),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        spec,
    }
}

fn namespaces() -> BTreeMap<String, BTreeMap<String, String>> {
    BTreeMap::from([
        ("team-a".to_owned(), labels(&[("tenant", "a")])),
        ("team-b".to_owned(), labels(&[("tenant", "b")])),
        ("team-c".to_owned(), labels(&[])),
    ])
}

fn from(namespace: &str, pairs: &[(&str, &str)]) -> Caller {
    Caller::Instance {
        namespace: namespace.into(),
        labels: labels(pairs),
    }
}

fn check(policies: &[NetworkPolicyRoute], dest: &[(&str, &str)], caller: &Caller) -> bool {
    decide(policies, "team-a", &labels(dest), "web", caller).is_ok()
}

#[test]
fn unguarded_instances_accept_every_call() {
    assert!(check(&[], &[], &from("team-b", &[])));
    assert!(check(&[], &[], &Caller::Unknown));
    // A policy of another namespace, or selecting other labels, guards nothing here.
    let other = compile(&policy("team-b", "deny", "{}"), &namespaces());
    let db_only = compile(
        &policy("team-a", "db", "podSelector: {matchLabels: {app: db}}"),
        &namespaces(),
    );
    assert!(check(
        &[other, db_only],
        &[("app", "web")],
        &from("team-b", &[])
    ));
}

#[test]
fn default_deny_refuses_everyone_and_says_which_policy() {
    let deny = compile(
        &policy("team-a", "default-deny", "podSelector: {}"),
        &namespaces(),
    );
    assert!(deny.allow.is_empty());
    for caller in [from("team-a", &[]), from("team-b", &[]), Caller::Unknown] {
        let refused = decide(
            std::slice::from_ref(&deny),
            "team-a",
            &labels(&[]),
            "web",
            &caller,
        )
        .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "denied by network policy default-deny in namespace team-a: it admits no caller"
        );
    }
}

#[test]
fn namespace_and_pod_selectors_admit_as_kubernetes_does() {
    let deny = compile(&policy("team-a", "default-deny", "{}"), &namespaces());
    let from_b = compile(
        &policy(
            "team-a",
            "from-b",
            "ingress: [{from: [{namespaceSelector: {matchLabels: {tenant: b}}}]}]",
        ),
        &namespaces(),
    );
    let policies = [deny.clone(), from_b];
    assert!(check(&policies, &[], &from("team-b", &[("app", "x")])));
    assert!(!check(&policies, &[], &from("team-c", &[])));
    assert!(!check(&policies, &[], &Caller::Unknown));
    let refused = decide(
        &policies,
        "team-a",
        &labels(&[]),
        "web",
        &from("team-c", &[("app", "x")]),
    )
    .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "no network policy allows calls from namespace team-c with labels app=x to web in \
         namespace team-a (guarded by default-deny, from-b)"
    );

    // podSelector alone: instances of the policy's own namespace.
    let own = compile(
        &policy(
            "team-a",
            "own",
            "ingress: [{from: [{podSelector: {matchLabels: {role: client}}}]}]",
        ),
        &namespaces(),
    );
    assert!(check(
        std::slice::from_ref(&own),
        &[],
        &from("team-a", &[("role", "client")])
    ));
    assert!(!check(
        std::slice::from_ref(&own),
        &[],
        &from("team-a", &[])
    ));
    assert!(!check(&[own], &[], &from("team-b", &[("role", "client")])));

    // Both in one entry: AND.
    let both = compile(
        &policy(
            "team-a",
            "both",
            "ingress: [{from: [{namespaceSelector: {matchLabels: {tenant: b}}, podSelector: {matchLabels: {role: client}}}]}]",
        ),
        &namespaces(),
    );
    assert!(check(
        std::slice::from_ref(&both),
        &[],
        &from("team-b", &[("role", "client")])
    ));
    assert!(!check(
        std::slice::from_ref(&both),
        &[],
        &from("team-b", &[])
    ));
    assert!(!check(&[both], &[], &from("team-a", &[("role", "client")])));

    // namespaceSelector {}: every instance, but not an unidentified caller.
    let all = compile(
        &policy(
            "team-a",
            "all",
            "ingress: [{from: [{namespaceSelector: {}}]}]",
        ),
        &namespaces(),
    );
    assert!(check(
        std::slice::from_ref(&all),
        &[],
        &from("anywhere", &[])
    ));
    assert!(!check(&[all], &[], &Caller::Unknown));

    // A rule without from: anyone.
    let open = compile(&policy("team-a", "open", "ingress: [{}]"), &namespaces());
    assert!(check(&[deny.clone(), open.clone()], &[], &Caller::Unknown));
    assert!(check(&[deny, open], &[], &from("team-c", &[])));
}

#[test]
fn specs_are_validated() {
    let bad = policy("team-a", "x", "policyTypes: [Egress]");
    assert!(
        validate_spec(&bad.spec)
            .unwrap_err()
            .to_string()
            .starts_with("spec.policyTypes[0]")
    );
    let empty_peer = policy("team-a", "x", "ingress: [{from: [{}]}]");
    assert!(validate_spec(&empty_peer.spec).is_err());
    let good = policy("team-a", "x", "policyTypes: [Ingress]\ningress: [{}]");
    assert!(validate_spec(&good.spec).is_ok());
}

#[test]
fn callers_travel_as_a_header_value() {
    for caller in [
        from("team-b", &[]),
        from("team-b", &[("app", "caller"), ("example.com/tier", "web")]),
        Caller::Unknown,
    ] {
        assert_eq!(decode_caller(&encode_caller(&caller)), caller);
    }
    assert_eq!(decode_caller(""), Caller::Unknown);
    assert_eq!(decode_caller("team-b novalue"), Caller::Unknown);
}
