//! How `describe` shows Secrets and ConfigMaps: a Secret's keys only (its
//! values never reach `describe`: the scheduler answers `get` with them
//! emptied), a ConfigMap's keys and values.

use berth_api::secret::{ConfigMap, Secret};

/// Longest ConfigMap value shown in full by `describe`.
const MAX_SHOWN_VALUE: usize = 200;

/// `describe`'s lines for a Secret: its type and its keys.
pub(super) fn describe_secret(secret: &Secret) -> Vec<(String, String)> {
    let keys: Vec<&str> = secret.data.keys().map(String::as_str).collect();
    vec![
        ("Type".to_owned(), secret.type_.clone()),
        (
            "Data".to_owned(),
            if keys.is_empty() {
                "<none>".to_owned()
            } else {
                format!("{} (values hidden)", keys.join(", "))
            },
        ),
    ]
}

/// `describe`'s lines for a ConfigMap: each key with its value.
pub(super) fn describe_config_map(map: &ConfigMap) -> Vec<(String, String)> {
    if map.data.is_empty() {
        return vec![("Data".to_owned(), "<none>".to_owned())];
    }
    map.data
        .iter()
        .map(|(key, value)| {
            let shown: String = value.chars().take(MAX_SHOWN_VALUE).collect();
            let shown = if shown.len() < value.len() {
                format!("{shown}...")
            } else {
                shown
            };
            (format!("Data {key}"), shown.replace('\n', "\\n"))
        })
        .collect()
}
