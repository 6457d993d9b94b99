//! `Service`: a stable name for the ready instances whose labels match a
//! selector, as Kubernetes' `v1` Service.
//!
//! A component reaches a Service at `http://NAME.NAMESPACE.svc` (or
//! `http://NAME` within its own namespace); every node's service router
//! sends the call to one of the Service's endpoints. The scheduler
//! computes the endpoints (ready instances, in the Service's namespace,
//! on Ready nodes) and pushes them to every node with its assignments; it
//! also shows them in `status.endpoints` when a Service is read (`berth
//! get svc`), computed then rather than stored.
//!
//! Where berth departs from Kubernetes: `selector` is required (no
//! Services with hand-written endpoints), there is no `type`,
//! `clusterIP` or `protocol` (calls are HTTP, resolved by the node, not by
//! an IP), and `ports` are recorded and validated but not yet used for
//! routing: a wasm component has one HTTP handler. See
//! `docs/decisions/0021-services.md`.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::validate::{FieldError, dns1123_label};

/// The name suffix of a Service's host: `NAME.NAMESPACE.svc`.
pub const SERVICE_HOST_SUFFIX: &str = "svc";

/// The highest TCP port.
const MAX_PORT: i32 = 65_535;

/// A stable name for a set of instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `Service`.
    pub kind: String,
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// What the user asks for.
    pub spec: ServiceSpec,
    /// What the cluster observed; owned by the scheduler.
    #[serde(default, skip_serializing_if = "ServiceStatus::is_empty")]
    pub status: ServiceStatus,
}

impl Service {
    /// Whether an object carrying `labels` is selected: every pair of the
    /// selector is among them. An empty selector selects nothing.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.spec.selector.is_empty()
            && self
                .spec
                .selector
                .iter()
                .all(|(key, value)| labels.get(key) == Some(value))
    }
}

/// `Service.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// Labels an instance must carry, every pair, to be an endpoint; a
    /// plain map as in Kubernetes Services (not `matchLabels`). Required.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// The ports the Service exposes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
}

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// Required when the Service has more than one port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The port callers use, 1 to 65535.
    pub port: i32,
    /// The port the instances listen on; `port` if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<i32>,
}

impl ServicePort {
    /// `targetPort`, defaulted to `port`.
    pub fn target(&self) -> i32 {
        self.target_port.unwrap_or(self.port)
    }
}

/// `Service.status`: filled in by the scheduler when the Service is read,
/// never stored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceStatus {
    /// The ready instances the Service routes to, sorted by instance name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointStatus>,
}

impl ServiceStatus {
    /// No endpoints.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }
}

/// One endpoint of a Service, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointStatus {
    /// The instance's name.
    pub instance: String,
    /// The node it runs on.
    pub node: String,
}

/// Checks a Service's spec: a non-empty, valid selector and valid ports,
/// with Kubernetes' rules (names required and unique once there are
/// several ports, port numbers unique).
pub(crate) fn validate_service_spec(spec: &ServiceSpec) -> Result<(), FieldError> {
    if spec.selector.is_empty() {
        return Err(FieldError::new(
            "spec.selector",
            "must not be empty: a Service selects instances by label",
        ));
    }
    crate::validate::validate_labels("spec.selector", &spec.selector)?;
    let mut names = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    let several = spec.ports.len() > 1;
    for (index, port) in spec.ports.iter().enumerate() {
        let path = format!("spec.ports[{index}]");
        match &port.name {
            Some(name) => {
                dns1123_label(name).map_err(|m| FieldError::new(format!("{path}.name"), m))?;
                if !names.insert(name.as_str()) {
                    return Err(FieldError::new(
                        format!("{path}.name"),
                        format!("duplicate value {name:?}"),
                    ));
                }
            }
            None if several => {
                return Err(FieldError::new(
                    format!("{path}.name"),
                    "required when the Service has more than one port",
                ));
            }
            None => {}
        }
        check_port(&format!("{path}.port"), port.port)?;
        if let Some(target) = port.target_port {
            check_port(&format!("{path}.targetPort"), target)?;
        }
        if !numbers.insert(port.port) {
            return Err(FieldError::new(
                format!("{path}.port"),
                format!("duplicate value {}", port.port),
            ));
        }
    }
    Ok(())
}

fn check_port(path: &str, port: i32) -> Result<(), FieldError> {
    if (1..=MAX_PORT).contains(&port) {
        Ok(())
    } else {
        Err(FieldError::new(
            path,
            format!("must be between 1 and {MAX_PORT}, inclusive"),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use crate::manifest::parse_manifests;
    use crate::meta::API_VERSION;
    use crate::objects::Object;
    use crate::validate::validate_object;

    fn service() -> Service {
        Service {
            api_version: API_VERSION.into(),
            kind: "Service".into(),
            metadata: ObjectMeta {
                name: "b".into(),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: ServiceSpec {
                selector: [("app".to_owned(), "b".to_owned())].into(),
                ports: vec![ServicePort {
                    name: None,
                    port: 80,
                    target_port: None,
                }],
            },
            status: ServiceStatus::default(),
        }
    }

    fn check(change: impl FnOnce(&mut Service)) -> Result<(), String> {
        let mut object = service();
        change(&mut object);
        validate_object(&Object::Service(Box::new(object))).map_err(|e| e.to_string())
    }

    fn port(name: Option<&str>, port: i32, target_port: Option<i32>) -> ServicePort {
        ServicePort {
            name: name.map(str::to_owned),
            port,
            target_port,
        }
    }

    #[test]
    fn a_manifest_reads_like_kubernetes() {
        let yaml = "apiVersion: berth.dev/v1
kind: Service
metadata:
  name: b
spec:
  selector:
    app: b
  ports:
    - port: 80
      targetPort: 8080
";
        let objects = parse_manifests("svc.yaml", yaml).unwrap();
        let [Object::Service(service)] = objects.as_slice() else {
            panic!("one Service expected: {objects:?}");
        };
        assert_eq!(service.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(service.spec.ports[0].target(), 8080);
        assert!(service.selects(&[("app".into(), "b".into()), ("x".into(), "y".into())].into()));
        assert!(!service.selects(&[("app".into(), "c".into())].into()));
    }

    #[test]
    fn good_services_pass() {
        assert_eq!(check(|_| {}), Ok(()));
        assert_eq!(check(|s| s.spec.ports.clear()), Ok(()));
        assert_eq!(
            check(|s| {
                s.spec.ports = vec![
                    port(Some("http"), 80, Some(8080)),
                    port(Some("admin"), 65535, Some(1)),
                ];
            }),
            Ok(())
        );
    }

    #[test]
    fn the_selector_is_required_and_checked() {
        assert_eq!(
            check(|s| s.spec.selector.clear()),
            Err("spec.selector: must not be empty: a Service selects instances by label".into())
        );
        let error = check(|s| {
            s.spec.selector.insert("bad key!".into(), "x".into());
        })
        .unwrap_err();
        assert!(
            error.starts_with("spec.selector: label key \"bad key!\" is invalid"),
            "{error}"
        );
        let manifest = "apiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: b}\nspec: {}\n";
        let error = parse_manifests("svc.yaml", manifest)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "invalid manifest svc.yaml: Service default/b: spec.selector: must not be empty: \
             a Service selects instances by label"
        );
    }

    #[test]
    fn ports_are_checked() {
        for (bad, path) in [
            (port(None, 0, None), "port"),
            (port(None, 65_536, None), "port"),
            (port(None, -1, None), "port"),
            (port(None, 80, Some(0)), "targetPort"),
            (port(None, 80, Some(70_000)), "targetPort"),
        ] {
            assert_eq!(
                check(|s| s.spec.ports = vec![bad]),
                Err(format!(
                    "spec.ports[0].{path}: must be between 1 and 65535, inclusive"
                ))
            );
        }
        assert_eq!(
            check(|s| s.spec.ports = vec![port(Some("a"), 80, None), port(None, 81, None)]),
            Err("spec.ports[1].name: required when the Service has more than one port".into())
        );
        assert_eq!(
            check(|s| s.spec.ports = vec![port(Some("a"), 80, None), port(Some("a"), 81, None)]),
            Err("spec.ports[1].name: duplicate value \"a\"".into())
        );
        assert_eq!(
            check(|s| s.spec.ports = vec![port(Some("a"), 80, None), port(Some("b"), 80, None)]),
            Err("spec.ports[1].port: duplicate value 80".into())
        );
        let error = check(|s| s.spec.ports = vec![port(Some("Web"), 80, None)]).unwrap_err();
        assert!(
            error.starts_with("spec.ports[0].name: \"Web\" is not a valid DNS-1123 label"),
            "{error}"
        );
    }

    #[test]
    fn status_stays_out_of_the_json_until_there_are_endpoints() {
        let json = serde_json::to_value(service()).unwrap();
        assert!(json.get("status").is_none(), "{json}");
        let mut with = service();
        with.status.endpoints.push(EndpointStatus {
            instance: "b-x1".into(),
            node: "n1".into(),
        });
        let json = serde_json::to_value(&with).unwrap();
        assert_eq!(
            json["status"]["endpoints"][0],
            serde_json::json!({"instance": "b-x1", "node": "n1"})
        );
    }
}
