//! `Ingress`: host and path rules that send outside requests to Services,
//! as Kubernetes' `networking.k8s.io/v1` Ingress.
//!
//! Every node's ingress serves every Ingress: a request whose `Host`
//! matches a rule's `host` goes to the backend Service of the best path
//! (see `node/src/ingress_rules.rs` for matching and
//! `docs/decisions/0027-ingress-objects.md`). Requests matching no rule keep
//! the `<deployment>.<namespace>.<domain>` convention.
//!
//! Where berth departs from Kubernetes: every rule needs a `host` (a rule
//! for any host would swallow the deployment hosts), a backend names a
//! `service` (no `resource` backends), `backend.service.port` is accepted
//! and ignored (Services route by name), there is no `ingressClassName` or
//! `tls`, and `spec.defaultBackend` serves the Ingress's own hosts when no
//! path matches rather than every host of the cluster.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::validate::{FieldError, dns1123_label};

/// Host and path rules to Services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ingress {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `Ingress`.
    pub kind: String,
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// The rules.
    pub spec: IngressSpec,
}

/// `Ingress.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressSpec {
    /// Serves requests for the rules' hosts that no path matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<IngressBackend>,
    /// Host rules, each with its paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<IngressRule>,
}

/// One host and its paths.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressRule {
    /// `shop.example.com`, or `*.example.com` (any one label in place of
    /// the `*`). Required in berth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The paths; none means every request for the host goes to
    /// `spec.defaultBackend`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpIngressRuleValue>,
}

/// `rules[].http`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpIngressRuleValue {
    /// The paths, at least one.
    #[serde(default)]
    pub paths: Vec<HttpIngressPath>,
}

/// One path of a rule and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpIngressPath {
    /// An absolute path; `/` if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How `path` matches.
    pub path_type: PathType,
    /// Where matching requests go.
    pub backend: IngressBackend,
}

impl HttpIngressPath {
    /// `path`, defaulted to `/`.
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or("/")
    }
}

/// How a path matches a request's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PathType {
    /// The request's path is exactly this one.
    Exact,
    /// The request's path starts with this one, element by element
    /// (`/api` matches `/api` and `/api/x`, not `/apix`).
    Prefix,
    /// Treated as `Prefix`.
    ImplementationSpecific,
}

impl PathType {
    /// Whether the path must match exactly.
    pub fn is_exact(self) -> bool {
        self == PathType::Exact
    }
}

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressBackend {
    /// A Service of the Ingress's namespace.
    pub service: IngressServiceBackend,
}

/// `backend.service`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressServiceBackend {
    /// The Service's name.
    pub name: String,
    /// Accepted and ignored: Services route by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<ServiceBackendPort>,
}

/// `backend.service.port`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceBackendPort {
    /// A port number, 1 to 65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i32>,
    /// A port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Checks an Ingress's spec, naming the field at fault.
pub(crate) fn validate_ingress_spec(spec: &IngressSpec) -> Result<(), FieldError> {
    if spec.rules.is_empty() {
        return Err(FieldError::new(
            "spec.rules",
            "must not be empty: an Ingress routes the hosts its rules name",
        ));
    }
    if let Some(backend) = &spec.default_backend {
        check_backend("spec.defaultBackend", backend)?;
    }
    for (index, rule) in spec.rules.iter().enumerate() {
        let path = format!("spec.rules[{index}]");
        let Some(host) = &rule.host else {
            return Err(FieldError::new(
                format!("{path}.host"),
                "required: a rule for every host would hide the deployment hosts",
            ));
        };
        check_host(host).map_err(|m| FieldError::new(format!("{path}.host"), m))?;
        match &rule.http {
            None if spec.default_backend.is_none() => {
                return Err(FieldError::new(
                    format!("{path}.http"),
                    "required when spec.defaultBackend is not set",
                ));
            }
            None => {}
            Some(http) => {
                if http.paths.is_empty() {
                    return Err(FieldError::new(
                        format!("{path}.http.paths"),
                        "must not be empty",
                    ));
                }
                for (p, entry) in http.paths.iter().enumerate() {
                    let at = format!("{path}.http.paths[{p}]");
                    let value = entry.path();
                    if !value.starts_with('/') {
                        return Err(FieldError::new(
                            format!("{at}.path"),
                            format!("{value:?} must be an absolute path"),
                        ));
                    }
                    if value.contains(['?', '#']) || value.chars().any(char::is_whitespace) {
                        return Err(FieldError::new(
                            format!("{at}.path"),
                            format!("{value:?} must not contain '?', '#' or whitespace"),
                        ));
                    }
                    check_backend(&format!("{at}.backend"), &entry.backend)?;
                }
            }
        }
    }
    Ok(())
}

fn check_backend(path: &str, backend: &IngressBackend) -> Result<(), FieldError> {
    dns1123_label(&backend.service.name)
        .map_err(|m| FieldError::new(format!("{path}.service.name"), m))?;
    if let Some(port) = &backend.service.port {
        match (port.number, &port.name) {
            (Some(number), None) if (1..=65_535).contains(&number) => {}
            (Some(_), None) => {
                return Err(FieldError::new(
                    format!("{path}.service.port.number"),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            (None, Some(name)) => dns1123_label(name)
                .map_err(|m| FieldError::new(format!("{path}.service.port.name"), m))?,
            _ => {
                return Err(FieldError::new(
                    format!("{path}.service.port"),
                    "exactly one of number and name must be set",
                ));
            }
        }
    }
    Ok(())
}

/// A rule's host: DNS labels, lowercase, optionally `*.` first; not an IP.
fn check_host(host: &str) -> Result<(), String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let labels: Vec<&str> = name.split('.').collect();
    if host.len() > 253 || labels.iter().any(|label| dns1123_label(label).is_err()) {
        return Err(format!(
            "{host:?} must be a lowercase DNS name, optionally starting with \"*.\""
        ));
    }
    if labels.len() < 2 && host.starts_with('*') {
        return Err(format!("{host:?}: a wildcard needs a domain after \"*.\""));
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(format!("{host:?} must be a DNS name, not an IP address"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use crate::manifest::parse_manifests;
    use crate::objects::Object;

    const SHOP: &str = "apiVersion: berth.dev/v1
kind: Ingress
metadata:
  name: shop
spec:
  defaultBackend:
    service: {name: web}
  rules:
    - host: shop.example.com
      http:
        paths:
          - path: /api
            pathType: Prefix
            backend:
              service:
                name: api
                port: {number: 80}
          - path: /
            pathType: ImplementationSpecific
            backend:
              service: {name: web}
    - host: \"*.example.com\"
";

    fn error(yaml: &str) -> String {
        parse_manifests("ing.yaml", yaml).unwrap_err().to_string()
    }

    #[test]
    fn a_manifest_reads_like_kubernetes() {
        let objects = parse_manifests("ing.yaml", SHOP).unwrap();
        let [Object::Ingress(ingress)] = objects.as_slice() else {
            panic!("one Ingress expected: {objects:?}");
        };
        assert_eq!(ingress.metadata.namespace.as_deref(), Some("default"));
        let paths = &ingress.spec.rules[0].http.as_ref().unwrap().paths;
        assert_eq!(paths[0].backend.service.name, "api");
        assert_eq!(paths[1].path(), "/");
    }

    #[test]
    fn bad_ingresses_name_the_field() {
        let cases = [
            (
                SHOP.replace("shop.example.com", "Shop.example.com"),
                "spec.rules[0].host: \"Shop.example.com\" must be a lowercase DNS name",
            ),
            (
                SHOP.replace("\"*.example.com\"", "\"*.*.com\""),
                "spec.rules[1].host:",
            ),
            (
                SHOP.replace("\"*.example.com\"", "\"*\""),
                "spec.rules[1].host:",
            ),
            (
                SHOP.replace("path: /api", "path: api"),
                "spec.rules[0].http.paths[0].path: \"api\" must be an absolute path",
            ),
            (
                SHOP.replace("pathType: Prefix", "pathType: Regex"),
                "spec.rules[0].http.paths[0].pathType",
            ),
            (
                SHOP.replace("name: api", "name: Api"),
                "spec.rules[0].http.paths[0].backend.service.name: \"Api\"",
            ),
            (
                SHOP.replace("{number: 80}", "{number: 0}"),
                "spec.rules[0].http.paths[0].backend.service.port.number: must be between",
            ),
            (
                SHOP.replace("  defaultBackend:\n    service: {name: web}\n", ""),
                "spec.rules[1].http: required when spec.defaultBackend is not set",
            ),
            (
                SHOP.replace("    - host: shop.example.com\n", "    - http:\n")
                    .replace("      http:\n        paths:", "        paths:"),
                "spec.rules[0].host: required",
            ),
            (
                "apiVersion: berth.dev/v1\nkind: Ingress\nmetadata: {name: x}\nspec: {}\n"
                    .to_owned(),
                "spec.rules: must not be empty",
            ),
        ];
        for (yaml, expected) in cases {
            let message = error(&yaml);
            assert!(message.contains(expected), "{expected:?} in {message:?}");
        }
    }
}
