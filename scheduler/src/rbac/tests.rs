#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use berth_api::rbac::{PolicyRule, RbacSubject, Resource, Role, RoleBinding, RoleRef};
use berth_api::wire::Request;
use berth_api::{Kind, ObjectMeta};

use super::*;

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: namespace.map(str::to_owned),
        ..ObjectMeta::default()
    }
}

fn rule(verbs: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
    PolicyRule {
        verbs: owned(verbs),
        resources: owned(resources),
        resource_names: owned(names),
        ..PolicyRule::default()
    }
}

fn role(kind: &str, name: &str, namespace: Option<&str>, rules: Vec<PolicyRule>) -> Role {
    Role {
        api_version: "berth.dev/v1".into(),
        kind: kind.into(),
        metadata: meta(name, namespace),
        rules,
    }
}

fn binding(
    kind: &str,
    namespace: Option<&str>,
    role_kind: &str,
    role: &str,
    user: &str,
) -> RoleBinding {
    RoleBinding {
        api_version: "berth.dev/v1".into(),
        kind: kind.into(),
        metadata: meta(&format!("{user}-{role}"), namespace),
        role_ref: RoleRef {
            api_group: None,
            kind: role_kind.into(),
            name: role.into(),
        },
        subjects: vec![RbacSubject {
            api_group: None,
            kind: "User".into(),
            name: user.into(),
        }],
    }
}

/// alice: admin of team-a; bob: a Role reading one Deployment of team-b;
/// carol: cluster viewer; root: cluster-admin.
fn policy() -> Policy {
    Policy {
        cluster_roles: berth_api::rbac::builtin_cluster_roles(),
        roles: vec![role(
            "Role",
            "read-web",
            Some("team-b"),
            vec![rule(&["get"], &["deployments"], &["web"])],
        )],
        bindings: vec![
            binding(
                "RoleBinding",
                Some("team-a"),
                "ClusterRole",
                "admin",
                "alice",
            ),
            binding("RoleBinding", Some("team-b"), "Role", "read-web", "bob"),
            // A Role of another namespace grants nothing here.
            binding("RoleBinding", Some("team-a"), "Role", "read-web", "bob"),
        ],
        cluster_bindings: vec![
            binding("ClusterRoleBinding", None, "ClusterRole", "view", "carol"),
            binding(
                "ClusterRoleBinding",
                None,
                "ClusterRole",
                "cluster-admin",
                "root",
            ),
        ],
    }
}

fn can(user: &str, verb: &'static str, kind: Kind, ns: Option<&str>, name: Option<&str>) -> bool {
    policy().allows(user, &Attributes::new(verb, kind, ns, name))
}

#[test]
fn a_namespace_admin_is_admin_there_only() {
    for verb in berth_api::rbac::VERBS {
        for kind in Kind::ALL.into_iter().filter(|k| k.is_namespaced()) {
            assert!(
                can("alice", verb, kind, Some("team-a"), Some("x")),
                "{verb} {kind}"
            );
            assert!(
                !can("alice", verb, kind, Some("team-b"), Some("x")),
                "{verb} {kind}"
            );
            assert!(
                !can("alice", verb, kind, None, None),
                "{verb} {kind} everywhere"
            );
        }
    }
    assert!(!can("alice", "get", Kind::Node, None, Some("n1")));
    assert!(!can(
        "alice",
        "create",
        Kind::Namespace,
        None,
        Some("team-a")
    ));
    assert!(!can(
        "alice",
        "create",
        Kind::ClusterRoleBinding,
        None,
        Some("x")
    ));
}

#[test]
fn resource_names_limit_a_rule() {
    assert!(can(
        "bob",
        "get",
        Kind::Deployment,
        Some("team-b"),
        Some("web")
    ));
    assert!(!can(
        "bob",
        "get",
        Kind::Deployment,
        Some("team-b"),
        Some("db")
    ));
    assert!(!can("bob", "list", Kind::Deployment, Some("team-b"), None));
    assert!(!can(
        "bob",
        "update",
        Kind::Deployment,
        Some("team-b"),
        Some("web")
    ));
    assert!(!can(
        "bob",
        "get",
        Kind::Deployment,
        Some("team-a"),
        Some("web")
    ));
}

#[test]
fn default_deny() {
    assert!(!can(
        "mallory",
        "get",
        Kind::Deployment,
        Some("default"),
        Some("web")
    ));
    assert!(!Policy::default().allows("admin", &Attributes::new("list", Kind::Node, None, None)));
    assert!(!policy().unrestricted("alice"));
    assert!(policy().unrestricted("root"));
}

#[test]
fn a_cluster_binding_reaches_everywhere() {
    assert!(can("carol", "list", Kind::Deployment, None, None));
    assert!(can("carol", "get", Kind::Node, None, Some("n1")));
    // `view` does not read Secrets.
    assert!(!can(
        "carol",
        "get",
        Kind::Secret,
        Some("team-a"),
        Some("db")
    ));
    assert!(can(
        "alice",
        "get",
        Kind::Secret,
        Some("team-a"),
        Some("db")
    ));
    assert!(!can(
        "carol",
        "delete",
        Kind::Deployment,
        Some("team-a"),
        Some("web")
    ));
    assert!(can("root", "delete", Kind::Node, None, Some("n1")));
    assert!(policy().allows(
        "root",
        &Attributes::of("impersonate", Resource::Users, None, Some("alice"))
    ));
    assert!(!policy().allows(
        "alice",
        &Attributes::of("create", Resource::Users, None, Some("eve"))
    ));
}

#[test]
fn requests_map_to_attributes_and_messages() {
    let delete = Request::Delete {
        kind: Kind::Deployment,
        namespace: Some("team-b".into()),
        name: "web".into(),
    };
    let need = attributes("alice", &delete, |_| false);
    assert_eq!(
        policy().check("alice", &need).as_deref(),
        Some(r#"user "alice" cannot delete deployments "web" in namespace "team-b""#)
    );
    let list = Request::Get {
        kind: Kind::Deployment,
        namespace: None,
        name: None,
    };
    let need = attributes("alice", &list, |_| false);
    assert_eq!(
        policy().check("alice", &need).as_deref(),
        Some(r#"user "alice" cannot list deployments in all namespaces"#)
    );
    // A named object without a namespace is the default namespace's.
    let get = Request::Get {
        kind: Kind::Deployment,
        namespace: None,
        name: Some("web".into()),
    };
    assert_eq!(
        attributes("alice", &get, |_| false),
        Need::All(vec![Attributes::new(
            "get",
            Kind::Deployment,
            Some("default"),
            Some("web")
        )])
    );
    let own = Request::CreateToken {
        name: "ci".into(),
        user: "alice".into(),
        ttl_seconds: 60,
    };
    assert_eq!(attributes("alice", &own, |_| false), Need::Nothing);
    assert!(matches!(attributes("bob", &own, |_| false), Need::All(_)));
}

#[test]
fn apply_is_create_or_update_per_object() {
    let object = |ns: &str| {
        format!(
            r#"{{"apiVersion":"berth.dev/v1","kind":"Role","metadata":{{"name":"r","namespace":"{ns}"}},"rules":[]}}"#
        )
        .into_bytes()
    };
    let apply = Request::Apply {
        objects: vec![object("team-a"), object("team-b")],
    };
    let need = attributes("alice", &apply, |o| o.namespace() == Some("team-a"));
    let Need::All(all) = &need else {
        panic!("{need:?}")
    };
    assert_eq!(all[0].verb, "update");
    assert_eq!(all[1].verb, "create");
    assert_eq!(
        policy().check("alice", &need).as_deref(),
        Some(r#"user "alice" cannot create roles "r" in namespace "team-b""#)
    );
}
