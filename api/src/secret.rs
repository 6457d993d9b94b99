//! `Secret` and `ConfigMap`: named key-value data in a namespace, and the
//! references templates make to it (`env[].valueFrom`, `envFrom`).
//!
//! Both kinds are shaped as Kubernetes': a ConfigMap's `data` is plain
//! text; a Secret's `data` holds base64 values and its `stringData` plain
//! ones, which admission merges into `data` ([`Secret::normalize`]), so the
//! stored form has `data` only. Keys are `[-._a-zA-Z0-9]+`, and one
//! object's values total at most [`MAX_DATA_BYTES`].
//!
//! Out of scope here: encryption at rest (the scheduler's store), who may
//! read a Secret's values (the scheduler redacts them in answers to `get`
//! with [`Secret::redacted`]) and resolving references into an instance's
//! environment (the scheduler, when it sends a node its assignments). See
//! `docs/decisions/0036-secrets-and-configmaps.md`.

use std::collections::BTreeMap;

use base64::Engine as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::validate::FieldError;

/// Most bytes the values of one Secret or ConfigMap may total (decoded),
/// as Kubernetes' 1 MiB object limit.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// Longest key, as Kubernetes (a DNS subdomain's length).
pub const MAX_KEY_LEN: usize = 253;

/// The one Secret type berth has: arbitrary user data.
pub const SECRET_TYPE_OPAQUE: &str = "Opaque";

/// Named configuration: plain text values by key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMap {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `ConfigMap`.
    pub kind: String,
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// The values, by key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
}

/// Named confidential data, encrypted at rest and never shown unless asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Secret {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `Secret`.
    pub kind: String,
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// `Opaque` (the default and the only type).
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub type_: String,
    /// The values, base64-encoded, by key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Plain values, by key: merged into `data` at admission (a key in
    /// both takes this value), never stored.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
}

impl Secret {
    /// The stored form: `stringData` base64-encoded into `data` (winning
    /// over a `data` key of the same name), and `type` set to `Opaque`.
    pub fn normalize(&mut self) {
        let engine = base64::engine::general_purpose::STANDARD;
        for (key, value) in std::mem::take(&mut self.string_data) {
            self.data.insert(key, engine.encode(value.as_bytes()));
        }
        if self.type_.is_empty() {
            self.type_ = SECRET_TYPE_OPAQUE.to_owned();
        }
    }

    /// The same Secret with every value replaced by an empty string: what
    /// `get` shows without `--show-secrets`. The keys stay, so `DATA`
    /// counts them.
    pub fn redacted(&self) -> Secret {
        let mut shown = self.clone();
        for value in shown.data.values_mut() {
            value.clear();
        }
        shown.string_data.clear();
        shown
    }

    /// The decoded value of `key`, if the key exists and its value is
    /// valid base64.
    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.data.get(key).and_then(|v| decode(v).ok())
    }
}

fn decode(value: &str) -> Result<Vec<u8>, base64::DecodeError> {
    base64::engine::general_purpose::STANDARD.decode(value)
}

/// Checks a ConfigMap's keys and size.
pub fn validate_config_map(map: &ConfigMap) -> Result<(), FieldError> {
    let mut total = 0usize;
    for (key, value) in &map.data {
        validate_key(&format!("data[{key:?}]"), key)?;
        total = total.saturating_add(value.len());
    }
    check_total(total)
}

/// Checks a Secret's type, keys, base64 values and size.
pub fn validate_secret(secret: &Secret) -> Result<(), FieldError> {
    if !secret.type_.is_empty() && secret.type_ != SECRET_TYPE_OPAQUE {
        return Err(FieldError::new(
            "type",
            format!(
                "unsupported Secret type {:?}: only {SECRET_TYPE_OPAQUE} is supported",
                secret.type_
            ),
        ));
    }
    let mut total = 0usize;
    for (key, value) in &secret.data {
        let field = format!("data[{key:?}]");
        validate_key(&field, key)?;
        let bytes = decode(value).map_err(|e| {
            FieldError::new(
                field,
                format!("value is not valid base64 (use stringData for plain text): {e}"),
            )
        })?;
        if !secret.string_data.contains_key(key) {
            total = total.saturating_add(bytes.len());
        }
    }
    for (key, value) in &secret.string_data {
        validate_key(&format!("stringData[{key:?}]"), key)?;
        total = total.saturating_add(value.len());
    }
    check_total(total)
}

fn check_total(total: usize) -> Result<(), FieldError> {
    if total > MAX_DATA_BYTES {
        return Err(FieldError::new(
            "data",
            format!("values total {total} bytes, over the limit of {MAX_DATA_BYTES} (1 MiB)"),
        ));
    }
    Ok(())
}

/// A key as Kubernetes allows: `[-._a-zA-Z0-9]+`, at most
/// [`MAX_KEY_LEN`] characters, not `.` or `..`.
pub fn validate_key(field: &str, key: &str) -> Result<(), FieldError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if key.is_empty() || !key.bytes().all(allowed) {
        return Err(FieldError::new(
            field,
            format!("invalid key {key:?}: a key must consist of letters, digits, '-', '_' or '.'"),
        ));
    }
    if key == "." || key == ".." {
        return Err(FieldError::new(
            field,
            format!("invalid key {key:?}: must not be '.' or '..'"),
        ));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(FieldError::new(
            field,
            format!("invalid key: longer than {MAX_KEY_LEN} characters"),
        ));
    }
    Ok(())
}

/// `env[].valueFrom`: where one variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVarSource {
    /// One key of a Secret in the instance's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeySelector>,
    /// One key of a ConfigMap in the instance's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeySelector>,
}

/// `secretKeyRef` and `configMapKeyRef`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeySelector {
    /// The Secret's or ConfigMap's name.
    pub name: String,
    /// The key.
    pub key: String,
    /// When true, a missing object or key leaves the variable unset
    /// instead of holding the instance back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// `envFrom[]`: every key of one Secret or ConfigMap as a variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvFromSource {
    /// Put before each key to make the variable's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// A Secret, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<ObjectRef>,
    /// A ConfigMap, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ObjectRef>,
}

/// `secretRef` and `configMapRef`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectRef {
    /// The Secret's or ConfigMap's name.
    pub name: String,
    /// When true, a missing object adds nothing instead of holding the
    /// instance back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// Which of the two kinds a reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    /// A Secret.
    Secret,
    /// A ConfigMap.
    ConfigMap,
}

impl SourceKind {
    /// `Secret` or `ConfigMap`, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Secret => "Secret",
            SourceKind::ConfigMap => "ConfigMap",
        }
    }
}

impl EnvVarSource {
    /// The one reference, with its kind; `None` if not exactly one is set.
    pub fn reference(&self) -> Option<(SourceKind, &KeySelector)> {
        match (&self.secret_key_ref, &self.config_map_key_ref) {
            (Some(s), None) => Some((SourceKind::Secret, s)),
            (None, Some(c)) => Some((SourceKind::ConfigMap, c)),
            _ => None,
        }
    }
}

impl EnvFromSource {
    /// The one reference, with its kind; `None` if not exactly one is set.
    pub fn reference(&self) -> Option<(SourceKind, &ObjectRef)> {
        match (&self.secret_ref, &self.config_map_ref) {
            (Some(s), None) => Some((SourceKind::Secret, s)),
            (None, Some(c)) => Some((SourceKind::ConfigMap, c)),
            _ => None,
        }
    }
}

/// Checks a template's `env[index].valueFrom` (at `path`, the env entry).
pub fn validate_value_from(path: &str, value: &str, from: &EnvVarSource) -> Result<(), FieldError> {
    let field = format!("{path}.valueFrom");
    if !value.is_empty() {
        return Err(FieldError::new(
            field,
            "may not be given together with value",
        ));
    }
    let Some((_, selector)) = from.reference() else {
        return Err(FieldError::new(
            field,
            "give exactly one of secretKeyRef and configMapKeyRef",
        ));
    };
    let which = if from.secret_key_ref.is_some() {
        "secretKeyRef"
    } else {
        "configMapKeyRef"
    };
    crate::validate::dns1123_subdomain(&selector.name)
        .map_err(|e| FieldError::new(format!("{field}.{which}.name"), e.to_string()))?;
    validate_key(&format!("{field}.{which}.key"), &selector.key)
}

/// Checks a template's `envFrom` entries (at `path`, the spec).
pub fn validate_env_from(path: &str, sources: &[EnvFromSource]) -> Result<(), FieldError> {
    for (index, source) in sources.iter().enumerate() {
        let field = format!("{path}.envFrom[{index}]");
        let Some((_, reference)) = source.reference() else {
            return Err(FieldError::new(
                field,
                "give exactly one of secretRef and configMapRef",
            ));
        };
        let which = if source.secret_ref.is_some() {
            "secretRef"
        } else {
            "configMapRef"
        };
        crate::validate::dns1123_subdomain(&reference.name)
            .map_err(|e| FieldError::new(format!("{field}.{which}.name"), e.to_string()))?;
        if !source.prefix.is_empty() && !crate::validate::is_env_name(&source.prefix) {
            return Err(FieldError::new(
                format!("{field}.prefix"),
                format!(
                    "{:?} is not a valid environment variable name prefix",
                    source.prefix
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn secret(data: &[(&str, &str)], string_data: &[(&str, &str)]) -> Secret {
        Secret {
            api_version: crate::API_VERSION.into(),
            kind: "Secret".into(),
            metadata: ObjectMeta {
                name: "db".into(),
                ..ObjectMeta::default()
            },
            type_: String::new(),
            data: data
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            string_data: string_data
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn string_data_merges_into_data_and_wins() {
        let mut s = secret(
            &[("a", "eA=="), ("b", "eQ==")],
            &[("b", "plain"), ("c", "z")],
        );
        validate_secret(&s).unwrap();
        s.normalize();
        assert!(s.string_data.is_empty());
        assert_eq!(s.type_, "Opaque");
        assert_eq!(s.value("a").unwrap(), b"x");
        assert_eq!(s.value("b").unwrap(), b"plain");
        assert_eq!(s.value("c").unwrap(), b"z");
    }

    #[test]
    fn redaction_keeps_keys_and_drops_values() {
        let mut s = secret(&[("password", "aHVudGVyMg==")], &[("token", "t")]);
        s.normalize();
        let shown = s.redacted();
        assert_eq!(shown.data.len(), 2);
        assert!(shown.data.values().all(String::is_empty));
        let json = serde_json::to_string(&shown).unwrap();
        assert!(!json.contains("aHVudGVyMg=="), "{json}");
    }

    #[test]
    fn keys_values_types_and_sizes_are_checked() {
        let bad_key = secret(&[], &[("a/b", "x")]);
        assert_eq!(
            validate_secret(&bad_key).unwrap_err().to_string(),
            "stringData[\"a/b\"]: invalid key \"a/b\": a key must consist of letters, digits, '-', '_' or '.'"
        );
        assert!(validate_secret(&secret(&[], &[("..", "x")])).is_err());
        assert!(validate_secret(&secret(&[], &[("a.b-c_D9", "x")])).is_ok());
        let not_base64 = secret(&[("a", "not base64!")], &[]);
        assert!(
            validate_secret(&not_base64)
                .unwrap_err()
                .to_string()
                .starts_with("data[\"a\"]: value is not valid base64")
        );
        let mut typed = secret(&[], &[]);
        typed.type_ = "kubernetes.io/tls".into();
        assert_eq!(
            validate_secret(&typed).unwrap_err().to_string(),
            "type: unsupported Secret type \"kubernetes.io/tls\": only Opaque is supported"
        );
        let big = "x".repeat(MAX_DATA_BYTES);
        let too_big = secret(&[], &[("a", &big), ("b", "y")]);
        assert!(
            validate_secret(&too_big)
                .unwrap_err()
                .to_string()
                .contains("over the limit of 1048576 (1 MiB)")
        );
        let map = ConfigMap {
            api_version: crate::API_VERSION.into(),
            kind: "ConfigMap".into(),
            metadata: ObjectMeta::default(),
            data: [("bad key".to_owned(), "v".to_owned())].into(),
        };
        assert!(validate_config_map(&map).is_err());
    }

    #[test]
    fn references_name_exactly_one_source() {
        let both = EnvVarSource {
            secret_key_ref: Some(KeySelector {
                name: "a".into(),
                key: "k".into(),
                optional: false,
            }),
            config_map_key_ref: Some(KeySelector {
                name: "b".into(),
                key: "k".into(),
                optional: false,
            }),
        };
        assert_eq!(
            validate_value_from("env[0]", "", &both)
                .unwrap_err()
                .to_string(),
            "env[0].valueFrom: give exactly one of secretKeyRef and configMapKeyRef"
        );
        let none = EnvFromSource {
            prefix: String::new(),
            secret_ref: None,
            config_map_ref: None,
        };
        assert_eq!(
            validate_env_from("spec", &[none]).unwrap_err().to_string(),
            "spec.envFrom[0]: give exactly one of secretRef and configMapRef"
        );
    }
}
