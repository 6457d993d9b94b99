//! Tests of sealing, the key file, the store's sealing of Secrets,
//! resolution and the config check.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use berth_api::secret::SourceKind;
use berth_api::{Instance, Kind, Object, Phase};
use serde_json::json;

use super::*;
use crate::controller::Command;
use crate::store::{Store, StoreError, key};

fn key_of(byte: u8) -> SecretsKey {
    SecretsKey::from_bytes(&[byte; KEY_LEN]).unwrap()
}

#[test]
fn sealing_round_trips() {
    let key = key_of(7);
    let sealed = key.seal("Secret/default/db", b"hunter2").unwrap();
    assert!(is_sealed(&sealed));
    assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
    assert_eq!(key.open("Secret/default/db", &sealed).unwrap(), b"hunter2");
    // A fresh nonce every time: the same value never seals the same.
    assert_ne!(sealed, key.seal("Secret/default/db", b"hunter2").unwrap());
}

#[test]
fn altered_bytes_another_key_or_another_name_do_not_open() {
    let key = key_of(7);
    let sealed = key.seal("Secret/default/db", b"hunter2").unwrap();
    for at in SEALED_MAGIC.len()..sealed.len() {
        let mut altered = sealed.clone();
        altered[at] ^= 0x01;
        assert!(
            matches!(
                key.open("Secret/default/db", &altered),
                Err(SecretsError::Open)
            ),
            "byte {at} altered yet opened"
        );
    }
    assert!(matches!(
        key_of(8).open("Secret/default/db", &sealed),
        Err(SecretsError::Open)
    ));
    assert!(matches!(
        key.open("Secret/other/db", &sealed),
        Err(SecretsError::Open)
    ));
    assert!(matches!(
        key.open("Secret/default/db", &sealed[..SEALED_MAGIC.len() + 4]),
        Err(SecretsError::Truncated)
    ));
}

#[test]
fn the_key_file_is_created_private_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (path, create) = key_path(dir.path(), None);
    assert_eq!(path, dir.path().join(KEY_FILE));
    let first = SecretsKey::load_or_create(&path, create).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), KEY_LEN);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = SecretsKey::load_or_create(&path, create).unwrap();
    let sealed = first.seal("k", b"v").unwrap();
    assert_eq!(again.open("k", &sealed).unwrap(), b"v");

    // A key named explicitly must exist; a file of the wrong size is no key.
    let missing = dir.path().join("elsewhere.key");
    let (path, create) = key_path(dir.path(), Some(&missing));
    assert!(!create);
    assert!(matches!(
        SecretsKey::load_or_create(&path, create),
        Err(SecretsError::Io { .. })
    ));
    std::fs::write(&missing, b"short").unwrap();
    let err = SecretsKey::load_or_create(&missing, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "secrets key {}: expected 32 bytes, found 5",
            missing.display()
        )
    );
}

fn object(value: serde_json::Value) -> Object {
    Object::from_json(&serde_json::to_vec(&value).unwrap()).unwrap()
}

fn secret(name: &str, string_data: serde_json::Value) -> Object {
    let mut object = object(json!({
        "apiVersion": "berth.dev/v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "stringData": string_data,
    }));
    if let Object::Secret(s) = &mut object {
        s.normalize();
    }
    object
}

fn config_map(name: &str, data: serde_json::Value) -> Object {
    object(json!({
        "apiVersion": "berth.dev/v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": data,
    }))
}

#[test]
fn the_store_seals_secrets_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.redb");
    let value = "correct-horse-battery-staple";
    let encoded = "Y29ycmVjdC1ob3JzZS1iYXR0ZXJ5LXN0YXBsZQ==";
    {
        let store = Store::open(&path)
            .unwrap()
            .with_secrets_key(Arc::new(key_of(3)));
        store
            .write(|txn| -> Result<(), StoreError> {
                txn.put(secret("db", json!({"password": value})))?;
                txn.put(config_map(
                    "settings",
                    json!({"mode": "plain-config-value"}),
                ))?;
                // Read back inside the transaction, opened.
                let Some(Object::Secret(s)) = txn.get(&key(Kind::Secret, Some("default"), "db"))?
                else {
                    panic!("secret not read back");
                };
                assert_eq!(s.value("password").unwrap(), value.as_bytes());
                Ok(())
            })
            .unwrap();
        let Some(Object::Secret(s)) = store
            .get(&key(Kind::Secret, Some("default"), "db"))
            .unwrap()
        else {
            panic!("secret not read back");
        };
        assert_eq!(s.data["password"], encoded);
        assert_eq!(store.snapshot().unwrap().objects.len(), 2);
    }
    // The raw file holds neither the value nor its base64, but does hold
    // the ConfigMap's value (the grep would find a plain value).
    let raw = std::fs::read(&path).unwrap();
    let holds = |needle: &str| raw.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!holds(value));
    assert!(!holds(encoded));
    assert!(!holds("password"), "key names are inside the sealed JSON");
    assert!(holds("plain-config-value"));

    // Without the key a Secret is refused, not read as garbage.
    let store = Store::open(&path).unwrap();
    assert!(matches!(
        store.list(Kind::Secret, None),
        Err(StoreError::NoSecretsKey { .. })
    ));
    assert!(matches!(
        store.write(|txn| -> Result<_, StoreError> { txn.put(secret("other", json!({"a": "b"}))) }),
        Err(StoreError::NoSecretsKey { .. })
    ));
    // With another key it does not open.
    let store = store.with_secrets_key(Arc::new(key_of(4)));
    assert!(matches!(
        store.list(Kind::Secret, None),
        Err(StoreError::Sealed { .. })
    ));
}

fn instance(env: serde_json::Value, env_from: serde_json::Value) -> Instance {
    let Object::Instance(instance) = object(json!({
        "apiVersion": "berth.dev/v1", "kind": "Instance",
        "metadata": {"name": "web-abcde", "namespace": "default", "resourceVersion": "4"},
        "spec": {"component": "sha256:00", "env": env, "envFrom": env_from, "nodeName": "a"},
        "status": {"phase": "Scheduled"},
    })) else {
        panic!("not an instance");
    };
    *instance
}

fn lookup(kind: SourceKind, name: &str) -> Option<resolve::Data> {
    let data = |pairs: &[(&str, &[u8])]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect()
    };
    match (kind, name) {
        (SourceKind::Secret, "db") => Some(data(&[
            ("password", b"hunter2"),
            ("user", b"app"),
            ("binary", &[0xff, 0x00]),
        ])),
        (SourceKind::ConfigMap, "settings") => Some(data(&[
            ("MODE", b"fast"),
            ("LEVEL", b"3"),
            ("not a name", b"x"),
            ("BERTH_INSTANCE", b"spoofed"),
        ])),
        _ => None,
    }
}

#[test]
fn env_resolves_env_from_first_then_env_over_it() {
    let i = instance(
        json!([
            {"name": "A", "value": "1"},
            {"name": "GREETING", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "LEVEL"}}},
            {"name": "GONE", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}},
        ]),
        json!([
            {"configMapRef": {"name": "settings"}},
            {"prefix": "DB_", "secretRef": {"name": "db"}},
            {"secretRef": {"name": "absent", "optional": true}},
        ]),
    );
    // The binary key of `db` comes only through `envFrom`: not text.
    let err = resolve("default", &i.spec, &mut lookup).unwrap_err();
    assert_eq!(
        err.to_string(),
        "key binary in Secret default/db is not valid UTF-8"
    );
    let mut without_binary = |kind: SourceKind, name: &str| {
        lookup(kind, name).map(|mut d| {
            d.remove("binary");
            d
        })
    };
    let env = resolve("default", &i.spec, &mut without_binary).unwrap();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        pairs,
        [
            ("LEVEL", "3"),
            ("MODE", "3"),
            ("DB_password", "hunter2"),
            ("DB_user", "app"),
            ("A", "1"),
            ("GREETING", "hunter2"),
        ]
    );
}

#[test]
fn unresolvable_references_say_why_as_kubernetes_does() {
    let missing_secret = instance(
        json!([{"name": "G", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]),
        json!([]),
    );
    assert_eq!(
        resolve("default", &missing_secret.spec, &mut lookup)
            .unwrap_err()
            .to_string(),
        "secret \"nope\" not found"
    );
    let missing_key = instance(
        json!([{"name": "G", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}}]),
        json!([]),
    );
    assert_eq!(
        resolve("default", &missing_key.spec, &mut lookup)
            .unwrap_err()
            .to_string(),
        "couldn't find key k in ConfigMap default/settings"
    );
    let missing_map = instance(json!([]), json!([{"configMapRef": {"name": "nope"}}]));
    assert_eq!(
        resolve("default", &missing_map.spec, &mut lookup)
            .unwrap_err()
            .to_string(),
        "configmap \"nope\" not found"
    );
}

#[test]
fn bound_instances_wait_for_their_references_and_go_on_when_they_resolve() {
    let waiting = instance(
        json!([{"name": "GREETING", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]),
        json!([]),
    );
    let plain = instance(json!([{"name": "A", "value": "1"}]), json!([]));
    let none = Sources::default();
    let commands = config_errors(&[waiting.clone(), plain.clone()], &none);
    assert_eq!(commands.len(), 1, "{commands:?}");
    let Command::Update { seen, object } = &commands[0] else {
        panic!("{commands:?}");
    };
    assert_eq!(seen, "4");
    let Object::Instance(held) = &**object else {
        panic!("{object:?}");
    };
    assert_eq!(held.status.phase, Phase::Pending);
    assert_eq!(held.status.reason, REASON_CREATE_CONTAINER_CONFIG_ERROR);
    assert_eq!(held.status.message, "secret \"db\" not found");
    // Marked once: nothing more while it stays so.
    assert!(config_errors(&[(**held).clone()], &none).is_empty());

    // The Secret appears, without the key and then with it.
    let without_key = Sources::from_objects(&[secret("db", json!({"user": "app"}))]);
    let commands = config_errors(&[(**held).clone()], &without_key);
    let Command::Update { object, .. } = &commands[0] else {
        panic!("{commands:?}");
    };
    let Object::Instance(still) = &**object else {
        panic!("{object:?}");
    };
    assert_eq!(
        still.status.message,
        "couldn't find key password in Secret default/db"
    );
    let with_key = Sources::from_objects(&[secret("db", json!({"password": "hunter2"}))]);
    let commands = config_errors(&[(**held).clone()], &with_key);
    let Command::Update { object, .. } = &commands[0] else {
        panic!("{commands:?}");
    };
    let Object::Instance(released) = &**object else {
        panic!("{object:?}");
    };
    assert_eq!(released.status.phase, Phase::Scheduled);
    assert!(released.status.reason.is_empty());
    assert!(config_errors(&[waiting], &with_key).is_empty());

    // Unbound instances are placement's business.
    let mut unbound = held.clone();
    unbound.spec.node_name = None;
    assert!(config_errors(&[*unbound], &with_key).is_empty());
}
