//! Reading manifests: YAML files holding one or more objects separated by
//! `---`, as `kubectl apply -f` reads them.
//!
//! [`parse_manifests`] turns a file's text into typed, defaulted and
//! validated [`Object`]s, or into one [`ManifestError`] that names the file,
//! the document or object, the field and, where YAML knows it, the line:
//!
//! ```text
//! invalid manifest app.yaml: Deployment default/hello: spec.replicas: must be >= 0
//! invalid manifest app.yaml: document 2: spec.template.spec: unknown field `componnt`, expected one of `component`, `env`, `resources`, `nodeName` at line 9 column 7
//! ```
//!
//! A document may also be a `List` (`apiVersion: v1`, `kind: List`,
//! `items: [...]`), as `get -o yaml|json` prints several objects: each
//! item is read as a document of its own.
//!
//! Each document is read twice: once loosely, to learn its `kind` and
//! `apiVersion`, then strictly into the kind's struct, whose
//! `deny_unknown_fields` catches typos. Only user-managed kinds
//! ([`Kind::is_user_managed`]) may appear; a user-supplied `status` is
//! dropped and namespaced objects without a namespace get
//! [`DEFAULT_NAMESPACE`].
//!
//! Out of scope: resolving `spec.template.spec.component` paths, which is
//! the CLI's job.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use crate::meta::{API_VERSION, DEFAULT_NAMESPACE};
use crate::objects::{Kind, Object};
use crate::validate::validate_object;

/// Why a manifest file could not be turned into objects.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {file}: {error}")]
    Read {
        /// The path as the user gave it.
        file: String,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// A document is not valid YAML, not a known kind, or an invalid object.
    #[error(transparent)]
    Invalid(Box<InvalidManifest>),
}

/// One invalid document of a manifest file.
///
/// Displays as `invalid manifest {file}: {where}: {path}: {message}`, where
/// `{where}` is the object (`Deployment default/hello`) once it is known and
/// `document {n}` before, `{path}: ` is left out when no field is to blame,
/// and ` at line {l} column {c}` follows when YAML knows the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidManifest {
    /// The path as the user gave it.
    pub file: String,
    /// Which document of the file, from 1, counting empty ones.
    pub document: usize,
    /// `Kind namespace/name` once the document has been read as an object.
    pub object: Option<String>,
    /// Dotted path of the field to blame, such as `spec.replicas`.
    pub path: Option<String>,
    /// Lowercase description of the problem.
    pub message: String,
    /// Where in the file, when known.
    pub location: Option<Location>,
}

/// A position in a manifest file, both counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line number.
    pub line: usize,
    /// Column number, in characters.
    pub column: usize,
}

impl fmt::Display for InvalidManifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid manifest {}: ", self.file)?;
        match &self.object {
            Some(object) => write!(f, "{object}: ")?,
            None => write!(f, "document {}: ", self.document)?,
        }
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(Location { line, column }) = self.location {
            write!(f, " at line {line} column {column}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidManifest {}

impl From<InvalidManifest> for ManifestError {
    fn from(invalid: InvalidManifest) -> ManifestError {
        ManifestError::Invalid(Box::new(invalid))
    }
}

/// Reads and parses the manifest file at `path`; messages name the path as
/// given.
pub fn parse_manifest_file(path: &Path) -> Result<Vec<Object>, ManifestError> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_manifests(&file, &text),
        Err(error) => Err(ManifestError::Read { file, error }),
    }
}

/// Parses every document of a manifest's `text` into a checked object;
/// `file` names the manifest in messages. Empty documents are skipped.
pub fn parse_manifests(file: &str, text: &str) -> Result<Vec<Object>, ManifestError> {
    // Two passes over the same text yield the same documents in step: one
    // to peek at `kind`, one to read the document strictly.
    let heads = serde_yaml_ng::Deserializer::from_str(text);
    let bodies = serde_yaml_ng::Deserializer::from_str(text);
    let mut objects = Vec::new();
    for (index, (head, body)) in heads.zip(bodies).enumerate() {
        let document = index + 1;
        let invalid =
            |path: Option<String>, message: String, location: Option<Location>| InvalidManifest {
                file: file.to_owned(),
                document,
                object: None,
                path,
                message,
                location,
            };
        let value = Value::deserialize(head).map_err(|error| {
            let (path, message, location) = yaml_message(&error, None);
            invalid(path, message, location)
        })?;
        if let Some(items) = list_items(&value)
            .map_err(|(path, message)| invalid(path.map(str::to_owned), message, None))?
        {
            objects.extend(list_objects(file, document, items)?);
            continue;
        }
        let kind = match read_kind(&value) {
            Ok(Some(kind)) => kind,
            Ok(None) => continue,
            Err((path, message)) => {
                return Err(invalid(path.map(str::to_owned), message, None).into());
            }
        };
        let mut object = read_object(kind, body).map_err(|(path, error)| {
            let (path, message, location) = yaml_message(&error, path.as_deref());
            invalid(path, message, location)
        })?;
        if kind.is_namespaced() {
            object
                .metadata_mut()
                .namespace
                .get_or_insert_with(|| DEFAULT_NAMESPACE.to_owned());
        }
        if let Object::Deployment(deployment) = &mut object {
            deployment.status = None;
        }
        if let Object::Job(job) = &mut object {
            job.status = crate::job::JobStatus::default();
        }
        if let Object::DaemonSet(daemonset) = &mut object {
            daemonset.status = crate::daemonset::DaemonSetStatus::default();
        }
        if let Object::CronJob(cronjob) = &mut object {
            cronjob.status = crate::cronjob::CronJobStatus::default();
        }
        if let Object::Service(service) = &mut object {
            service.status = crate::service::ServiceStatus::default();
        }
        if let Object::ResourceQuota(quota) = &mut object {
            quota.status = crate::quota::ResourceQuotaStatus::default();
        }
        validate_object(&object).map_err(|error| InvalidManifest {
            object: (!object.metadata().name.is_empty()).then(|| object.describe()),
            ..invalid(Some(error.path), error.message, None)
        })?;
        objects.push(object);
    }
    Ok(objects)
}

/// The `apiVersion` a `List` may carry: kubectl's `v1`, or berth's own.
const LIST_API_VERSIONS: [&str; 2] = ["v1", API_VERSION];

/// The items of a document that is a `List` (`kind: List`, `items: [...]`,
/// as `kubectl get -o yaml` and `berth get -o yaml` print several
/// objects), `None` for any other document, or the field to blame and why.
fn list_items(value: &Value) -> Result<Option<&[Value]>, (Option<&'static str>, String)> {
    let Value::Mapping(mapping) = value else {
        return Ok(None);
    };
    if !matches!(mapping.get("kind"), Some(Value::String(kind)) if kind == "List") {
        return Ok(None);
    }
    match mapping.get("apiVersion") {
        Some(Value::String(version)) if LIST_API_VERSIONS.contains(&version.as_str()) => {}
        _ => {
            return Err((
                Some("apiVersion"),
                format!("a List must have apiVersion \"v1\" or {API_VERSION:?}"),
            ));
        }
    }
    for key in mapping.keys() {
        let known = ["apiVersion", "kind", "metadata", "items"];
        match key {
            Value::String(key) if known.contains(&key.as_str()) => {}
            Value::String(key) => {
                return Err((
                    None,
                    format!(
                        "unknown field `{key}` in a List, expected `apiVersion`, `kind`, `metadata` or `items`"
                    ),
                ));
            }
            other => {
                return Err((
                    None,
                    format!("a List's keys must be strings, found {}", value_type(other)),
                ));
            }
        }
    }
    match mapping.get("items") {
        None | Some(Value::Null) => Ok(Some(&[])),
        Some(Value::Sequence(items)) => Ok(Some(items.as_slice())),
        Some(other) => Err((
            Some("items"),
            format!("expected a sequence, found {}", value_type(other)),
        )),
    }
}

/// The objects of a `List`'s `items`, each read, defaulted and checked as
/// a document of its own. Errors name the List's document and, until the
/// object is known, the item (`items[2].spec`); YAML positions are left
/// out, since they would point into the re-encoded item.
fn list_objects(
    file: &str,
    document: usize,
    items: &[Value],
) -> Result<Vec<Object>, ManifestError> {
    let mut objects = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let at = |path: Option<String>| match path {
            Some(path) => format!("items[{index}].{path}"),
            None => format!("items[{index}]"),
        };
        let invalid = |path: Option<String>, message: String| InvalidManifest {
            file: file.to_owned(),
            document,
            object: None,
            path: Some(at(path)),
            message,
            location: None,
        };
        if !matches!(item, Value::Mapping(_)) {
            return Err(invalid(
                None,
                format!(
                    "expected a mapping with apiVersion and kind, found {}",
                    value_type(item)
                ),
            )
            .into());
        }
        let text = serde_yaml_ng::to_string(item)
            .map_err(|error| invalid(None, format!("cannot re-encode the item: {error}")))?;
        match parse_manifests(file, &text) {
            Ok(found) => objects.extend(found),
            Err(ManifestError::Invalid(mut error)) => {
                error.document = document;
                error.location = None;
                if error.object.is_none() {
                    error.path = Some(at(error.path.take()));
                }
                return Err(ManifestError::Invalid(error));
            }
            Err(error) => return Err(error),
        }
    }
    Ok(objects)
}

/// The document's kind after checking `kind` and `apiVersion`, `None` for
/// an empty document, or the field to blame and why.
fn read_kind(value: &Value) -> Result<Option<Kind>, (Option<&'static str>, String)> {
    let user_kinds = || {
        Kind::ALL
            .into_iter()
            .filter(|kind| kind.is_user_managed())
            .map(Kind::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mapping = match value {
        Value::Null => return Ok(None),
        Value::Mapping(mapping) => mapping,
        other => {
            return Err((
                None,
                format!(
                    "expected a mapping with apiVersion and kind, found {}",
                    value_type(other)
                ),
            ));
        }
    };
    let kind = match mapping.get("kind") {
        None | Some(Value::Null) => {
            return Err((
                Some("kind"),
                format!("must be set to one of {}", user_kinds()),
            ));
        }
        Some(Value::String(kind)) => kind,
        Some(other) => {
            return Err((
                Some("kind"),
                format!("expected a string, found {}", value_type(other)),
            ));
        }
    };
    let kind = match Kind::from_manifest_name(kind) {
        Some(kind) if kind.is_user_managed() => kind,
        Some(kind) => {
            return Err((
                Some("kind"),
                format!("{kind} objects are created by the cluster and cannot be applied"),
            ));
        }
        None => {
            return Err((
                Some("kind"),
                format!("unknown kind {kind:?}, expected one of {}", user_kinds()),
            ));
        }
    };
    match mapping.get("apiVersion") {
        Some(Value::String(version)) if version == API_VERSION => Ok(Some(kind)),
        Some(Value::String(version)) => Err((
            Some("apiVersion"),
            format!("unsupported apiVersion {version:?}, expected {API_VERSION:?}"),
        )),
        None | Some(Value::Null) => Err((
            Some("apiVersion"),
            format!("must be set to {API_VERSION:?}"),
        )),
        Some(other) => Err((
            Some("apiVersion"),
            format!("expected a string, found {}", value_type(other)),
        )),
    }
}

/// Reads the document strictly as a `kind`; on failure, the dotted path of
/// the field to blame (`None` for the document itself) and YAML's error.
fn read_object(
    kind: Kind,
    document: serde_yaml_ng::Deserializer<'_>,
) -> Result<Object, (Option<String>, serde_yaml_ng::Error)> {
    fn read<T: DeserializeOwned>(
        document: serde_yaml_ng::Deserializer<'_>,
    ) -> Result<T, (Option<String>, serde_yaml_ng::Error)> {
        serde_path_to_error::deserialize(document).map_err(|error| {
            let path = error.path().to_string();
            let path = (path != ".").then_some(path);
            (path, error.into_inner())
        })
    }
    Ok(match kind {
        Kind::Namespace => Object::Namespace(read(document)?),
        Kind::Deployment => Object::Deployment(Box::new(read(document)?)),
        Kind::Instance => Object::Instance(Box::new(read(document)?)),
        Kind::Node => Object::Node(Box::new(read(document)?)),
        Kind::PriorityClass => Object::PriorityClass(Box::new(read(document)?)),
        Kind::Event => Object::Event(Box::new(read(document)?)),
        Kind::Job => Object::Job(Box::new(read(document)?)),
        Kind::Service => Object::Service(Box::new(read(document)?)),
        Kind::DaemonSet => Object::DaemonSet(Box::new(read(document)?)),
        Kind::Ingress => Object::Ingress(Box::new(read(document)?)),
        Kind::CronJob => Object::CronJob(Box::new(read(document)?)),
        Kind::PodDisruptionBudget => Object::PodDisruptionBudget(Box::new(read(document)?)),
        Kind::HorizontalAutoscaler => Object::HorizontalAutoscaler(Box::new(read(document)?)),
        Kind::ResourceQuota => Object::ResourceQuota(Box::new(read(document)?)),
        Kind::LimitRange => Object::LimitRange(Box::new(read(document)?)),
        Kind::Role => Object::Role(Box::new(read(document)?)),
        Kind::ClusterRole => Object::ClusterRole(Box::new(read(document)?)),
        Kind::RoleBinding => Object::RoleBinding(Box::new(read(document)?)),
        Kind::ClusterRoleBinding => Object::ClusterRoleBinding(Box::new(read(document)?)),
        Kind::Secret => Object::Secret(Box::new(read(document)?)),
        Kind::ConfigMap => Object::ConfigMap(Box::new(read(document)?)),
        Kind::NetworkPolicy => Object::NetworkPolicy(Box::new(read(document)?)),
    })
}

/// YAML's message without the field path and position it may carry, since
/// [`InvalidManifest`] prints both itself; the path to blame; the position.
///
/// serde_yaml_ng prefixes the message of every error it positions with the
/// path of the value it was reading, except at the top level. That path is
/// `path` (from serde_path_to_error) or one of its ancestors: for an unknown
/// field, `path` ends with the unknown key while YAML blames the mapping
/// that holds it, which is what the user should look at.
fn yaml_message(
    error: &serde_yaml_ng::Error,
    path: Option<&str>,
) -> (Option<String>, String, Option<Location>) {
    let mut message = error.to_string();
    let location = error.location().map(|location| Location {
        line: location.line(),
        column: location.column(),
    });
    if let Some(Location { line, column }) = location {
        message = message.replacen(&format!(" at line {line} column {column}"), "", 1);
    }
    let mut candidate = path;
    while let Some(prefix) = candidate {
        if let Some(rest) = message
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix(": "))
        {
            return (Some(prefix.to_owned()), rest.to_owned(), location);
        }
        candidate = prefix
            .rfind(['.', '['])
            .and_then(|end| prefix.get(..end))
            .filter(|parent| !parent.is_empty());
    }
    let path = if location.is_some() { None } else { path };
    (path.map(str::to_owned), message, location)
}

fn value_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a sequence",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOYMENT: &str = "\
apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: 2
  selector:
    matchLabels:
      app: hello
  template:
    metadata:
      labels:
        app: hello
    spec:
      component: hello.wasm
";

    fn error(text: &str) -> String {
        match parse_manifests("a.yaml", text) {
            Ok(objects) => format!("parsed {} objects", objects.len()),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn reads_and_defaults_a_deployment() {
        let text = DEPLOYMENT.replace("  replicas: 2\n", "");
        let objects = parse_manifests("a.yaml", &text).map_err(|e| e.to_string());
        let Ok([Object::Deployment(deployment)]) = objects.as_deref() else {
            unreachable!("expected one deployment, got {objects:?}");
        };
        assert_eq!(deployment.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(deployment.spec.replicas, 1);
        assert_eq!(deployment.spec.template.spec.component, "hello.wasm");
    }

    #[test]
    fn drops_user_status() {
        let text = format!("{DEPLOYMENT}status:\n  readyReplicas: 5\n");
        let objects = parse_manifests("a.yaml", &text).map_err(|e| e.to_string());
        assert!(
            matches!(objects.as_deref(), Ok([Object::Deployment(d)]) if d.status.is_none()),
            "{objects:?}"
        );
    }

    #[test]
    fn empty_input_has_no_objects() {
        for text in ["", "\n", "---\n", "# nothing\n---\n---\n"] {
            assert_eq!(error(text), "parsed 0 objects", "{text:?}");
        }
    }

    #[test]
    fn head_errors_name_the_document() {
        assert_eq!(
            error(
                "---\nkind: Namespace\napiVersion: berth.dev/v1\nmetadata: {name: a}\n---\n- 1\n"
            ),
            "invalid manifest a.yaml: document 2: \
             expected a mapping with apiVersion and kind, found a sequence"
        );
        assert_eq!(
            error("apiVersion: berth.dev/v1\nkind: [1]\n"),
            "invalid manifest a.yaml: document 1: kind: expected a string, found a sequence"
        );
        assert_eq!(
            error("kind: Namespace\n"),
            "invalid manifest a.yaml: document 1: apiVersion: must be set to \"berth.dev/v1\""
        );
        assert_eq!(
            error("apiVersion: berth.dev/v1\nkind: Node\nmetadata: {name: n1}\n"),
            "invalid manifest a.yaml: document 1: \
             kind: Node objects are created by the cluster and cannot be applied"
        );
    }

    #[test]
    fn strict_errors_carry_path_and_position() {
        let text = DEPLOYMENT.replace("  replicas: 2", "  replicas: two");
        assert_eq!(
            error(&text),
            "invalid manifest a.yaml: document 1: spec.replicas: \
             invalid type: string \"two\", expected i64 at line 6 column 13"
        );
        let text = DEPLOYMENT.replace("metadata:\n  name: hello", "metadata:\n  nam: hello");
        assert_eq!(
            error(&text),
            "invalid manifest a.yaml: document 1: metadata: unknown field `nam`, expected one of \
             `name`, `namespace`, `labels`, `annotations`, `uid`, `resourceVersion`, `generation`, \
             `creationTimestamp`, `deletionTimestamp`, `ownerReferences` at line 4 column 3"
        );
        assert_eq!(
            error("apiVersion: berth.dev/v1\nkind: Namespace\n"),
            "invalid manifest a.yaml: document 1: missing field `metadata` at line 1 column 1"
        );
    }

    #[test]
    fn validation_errors_name_the_object() {
        let text = DEPLOYMENT.replace("  name: hello", "  name: hello\n  namespace: prod");
        let text = text.replace("replicas: 2", "replicas: -1");
        assert_eq!(
            error(&text),
            "invalid manifest a.yaml: Deployment prod/hello: spec.replicas: must be >= 0"
        );
        let text = DEPLOYMENT.replace("  name: hello", "  name: \"\"");
        assert_eq!(
            error(&text),
            "invalid manifest a.yaml: document 1: metadata.name: must not be empty"
        );
    }

    /// The DEPLOYMENT document indented as the item of a List.
    fn item(text: &str) -> String {
        let mut lines = text.lines();
        let first = lines.next().unwrap_or_default();
        let mut out = format!("- {first}\n");
        for line in lines {
            out.push_str(&format!("  {line}\n"));
        }
        out
    }

    #[test]
    fn reads_the_items_of_a_list() {
        let namespace = "apiVersion: berth.dev/v1\nkind: Namespace\nmetadata: {name: team}\n";
        for version in ["v1", "berth.dev/v1"] {
            let text = format!(
                "apiVersion: {version}\nkind: List\nmetadata: {{}}\nitems:\n{}{}",
                item(DEPLOYMENT),
                item(namespace)
            );
            let objects = parse_manifests("a.yaml", &text).map_err(|e| e.to_string());
            let Ok([Object::Deployment(d), Object::Namespace(n)]) = objects.as_deref() else {
                unreachable!("expected a deployment and a namespace, got {objects:?}");
            };
            assert_eq!(d.metadata.namespace.as_deref(), Some("default"));
            assert_eq!(n.metadata.name, "team");
        }
        // A List among other documents, and an empty one, as JSON.
        let text = format!(
            "{DEPLOYMENT}---\n{{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": []}}\n"
        );
        assert_eq!(error(&text), "parsed 1 objects");
    }

    #[test]
    fn list_errors_name_the_item() {
        let list = |items: &str| format!("apiVersion: v1\nkind: List\nitems:\n{items}");
        let bad = DEPLOYMENT.replace("  replicas: 2", "  replicas: two");
        assert_eq!(
            error(&format!("{DEPLOYMENT}---\n{}", list(&item(&bad)))),
            "invalid manifest a.yaml: document 2: items[0].spec.replicas: \
             invalid type: string \"two\", expected i64"
        );
        let negative = DEPLOYMENT.replace("  replicas: 2", "  replicas: -1");
        assert_eq!(
            error(&list(&format!("{}{}", item(DEPLOYMENT), item(&negative)))),
            "invalid manifest a.yaml: Deployment default/hello: spec.replicas: must be >= 0"
        );
        assert_eq!(
            error(&list("- kind: Deployment\n")),
            "invalid manifest a.yaml: document 1: items[0].apiVersion: must be set to \"berth.dev/v1\""
        );
        assert_eq!(
            error(&list("- 3\n")),
            "invalid manifest a.yaml: document 1: items[0]: \
             expected a mapping with apiVersion and kind, found a number"
        );
        assert_eq!(
            error("apiVersion: v2\nkind: List\nitems: []\n"),
            "invalid manifest a.yaml: document 1: apiVersion: \
             a List must have apiVersion \"v1\" or \"berth.dev/v1\""
        );
        assert_eq!(
            error("apiVersion: v1\nkind: List\nitems: {}\n"),
            "invalid manifest a.yaml: document 1: items: expected a sequence, found a mapping"
        );
        assert_eq!(
            error("apiVersion: v1\nkind: List\nitem: []\n"),
            "invalid manifest a.yaml: document 1: unknown field `item` in a List, \
             expected `apiVersion`, `kind`, `metadata` or `items`"
        );
    }

    #[test]
    fn unreadable_file_is_named() {
        let result = parse_manifest_file(Path::new("does/not/exist.yaml"));
        assert!(
            matches!(
                &result,
                Err(ManifestError::Read { file, .. }) if file == "does/not/exist.yaml"
            ),
            "{result:?}"
        );
        let message = result.map(|_| ()).map_err(|e| e.to_string());
        assert!(
            message.is_err_and(|m| m.starts_with("cannot read manifest does/not/exist.yaml: ")),
        );
    }
}
