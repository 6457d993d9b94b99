//! `berth explain KIND[.field[.field]]`: what a kind and its fields mean,
//! as `kubectl explain` shows it, read from the kind's JSON Schema
//! ([`berth_api::schema`]), which is derived from the very types `apply`
//! reads, so it names the fields `apply` accepts, with their types,
//! defaults and doc comments. Rendered by [`crate::render::explain`].
//!
//! The path walks into objects by field name, and through lists and maps
//! to their elements (`deployment.spec.template.spec.env.name`).
//! The generated field reference (`berth docs fields`) walks the same tree.

use anyhow::{Result, bail};
use berth_api::schema::kind_description;
use berth_api::{API_VERSION, Kind};
use serde_json::Value;

/// What `berth explain` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The kind as written in manifests (`Deployment`).
    pub kind: Kind,
    /// `berth.dev/v1`.
    pub version: &'static str,
    /// The field path below the kind (`["spec", "strategy"]`); empty for
    /// the kind itself.
    pub path: Vec<String>,
    /// The kind or the field the path names.
    pub field: Field,
    /// Its fields, by name; empty for a scalar.
    pub fields: Vec<Field>,
}

/// One field, or a kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Its name in manifests (`rollingUpdate`).
    pub name: String,
    /// `string`, `integer`, `boolean`, `number`, a type name
    /// (`DeploymentStrategy`), `[]T` for a list, `map[string]T` for a map.
    pub type_name: String,
    /// The doc comment.
    pub description: String,
    /// Whether a manifest must give it.
    pub required: bool,
    /// The value when it is left out, if the schema says.
    pub default: Option<Value>,
    /// The values it takes, when they are a fixed set, with their meaning.
    pub values: Vec<(String, String)>,
}

/// Explains `target`: `KIND` or `KIND.field.field`, the kind as typed on
/// the command line (`deploy`, `deployment`, `Deployment`).
pub fn explain(target: &str) -> Result<Explanation> {
    let mut parts = target.split('.');
    let kind_name = parts.next().unwrap_or_default();
    let Some(kind) = Kind::from_cli_name(kind_name) else {
        let kinds: Vec<String> = Kind::ALL
            .iter()
            .map(|k| k.as_str().to_ascii_lowercase())
            .collect();
        bail!(
            "unknown kind {kind_name:?}: expected one of {}",
            kinds.join(", ")
        );
    };
    let tree = Tree::of(kind);
    let mut node = tree.root();
    let mut path: Vec<String> = Vec::new();
    for part in parts {
        let Some(child) = node.child(part) else {
            let mut at = kind.as_str().to_ascii_lowercase();
            for p in &path {
                at.push('.');
                at.push_str(p);
            }
            bail!("field {part:?} does not exist in {at}");
        };
        path.push(part.to_owned());
        node = child;
    }
    let mut field = node.field(path.last().map_or(kind.as_str(), String::as_str), false);
    if path.is_empty() {
        field.description = kind_description(kind);
    }
    Ok(Explanation {
        kind,
        version: API_VERSION,
        path,
        fields: node.children(),
        field,
    })
}

/// A kind's schema, with its `$defs` for resolving references.
pub struct Tree {
    root: Value,
}

/// One point in a [`Tree`]: a schema with references and `null`
/// alternatives resolved, and the name of the type it came from.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    tree: &'a Tree,
    /// The schema as the parent gives it (its description is the field's).
    outer: &'a Value,
    /// The schema after references are followed.
    inner: &'a Value,
    type_ref: Option<&'a str>,
}

impl Tree {
    /// The schema of `kind`.
    pub fn of(kind: Kind) -> Tree {
        Tree {
            root: berth_api::schema::kind_schema(kind).to_value(),
        }
    }

    /// The kind itself.
    pub fn root(&self) -> Node<'_> {
        self.node(&self.root)
    }

    /// Every named type the kind uses, by name.
    pub fn defs(&self) -> Vec<(&str, Node<'_>)> {
        let Some(defs) = self.root.get("$defs").and_then(Value::as_object) else {
            return Vec::new();
        };
        defs.iter()
            .map(|(name, def)| {
                let mut node = self.node(def);
                node.type_ref = Some(name.as_str());
                (name.as_str(), node)
            })
            .collect()
    }

    fn node<'a>(&'a self, outer: &'a Value) -> Node<'a> {
        let mut inner = outer;
        let mut type_ref = None;
        // `Option<T>` is `anyOf: [T, null]`; a reference with a field's
        // description beside it is `$ref`. Both may nest once or twice.
        for _ in 0..8 {
            if let Some(one) = single_alternative(inner) {
                inner = one;
            } else if let Some(name) = inner.get("$ref").and_then(Value::as_str) {
                let name = name.rsplit('/').next().unwrap_or(name);
                match self.root.get("$defs").and_then(|d| d.get(name)) {
                    Some(def) => {
                        type_ref = Some(name);
                        inner = def;
                    }
                    None => break,
                }
            } else {
                break;
            }
        }
        Node {
            tree: self,
            outer,
            inner,
            type_ref,
        }
    }
}

/// The one branch of `anyOf`/`oneOf` that is not `null`, if there is one.
fn single_alternative(schema: &Value) -> Option<&Value> {
    let branches = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))?
        .as_array()?;
    let mut real = branches.iter().filter(|b| !is_null(b));
    let one = real.next()?;
    real.next().is_none().then_some(one)
}

/// Whether a default says nothing worth showing: null, false, "", [], {}.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) => false,
    }
}

/// A doc comment without rustdoc's link brackets: "[`crate::canary`]"
/// reads "`crate::canary`".
fn unlink(text: &str) -> String {
    text.replace("[`", "`").replace("`]", "`")
}

fn is_null(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
}

impl<'a> Node<'a> {
    /// Where a path part leads: a field of an object, or the element of a
    /// list or map and then its field.
    pub fn child(&self, name: &str) -> Option<Node<'a>> {
        let container = self.element().unwrap_or(*self);
        let property = container.inner.get("properties")?.get(name)?;
        Some(self.tree.node(property))
    }

    /// The fields of this object, or of the elements of this list or map.
    pub fn children(&self) -> Vec<Field> {
        self.entries()
            .into_iter()
            .map(|(name, required, node)| node.field(&name, required))
            .collect()
    }

    /// [`Node::children`] as nodes: name, whether required, node.
    pub fn entries(&self) -> Vec<(String, bool, Node<'a>)> {
        let container = self.element().unwrap_or(*self);
        let required: Vec<&str> = container
            .inner
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let Some(properties) = container.inner.get("properties").and_then(Value::as_object) else {
            return Vec::new();
        };
        properties
            .iter()
            .map(|(name, schema)| {
                let required = required.contains(&name.as_str());
                (name.clone(), required, self.tree.node(schema))
            })
            .collect()
    }

    /// The name of the type this node is, when it is a named one
    /// (`DeploymentStrategy`), looking through lists and maps.
    pub fn type_ref(&self) -> Option<&'a str> {
        self.element().unwrap_or(*self).type_ref
    }

    /// The elements' node of a list or a map (repeatedly: a list of lists).
    fn element(&self) -> Option<Node<'a>> {
        let mut node = *self;
        let mut found = None;
        while let Some(items) = node.inner.get("items").or_else(|| {
            node.inner
                .get("additionalProperties")
                .filter(|v| v.is_object())
        }) {
            node = self.tree.node(items);
            found = Some(node);
        }
        found
    }

    /// This node as a field called `name`.
    pub fn field(&self, name: &str, required: bool) -> Field {
        let description = self
            .outer
            .get("description")
            .or_else(|| self.inner.get("description"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let description = unlink(description);
        Field {
            name: name.to_owned(),
            type_name: self.type_name(),
            description,
            required,
            default: self
                .outer
                .get("default")
                .or_else(|| self.inner.get("default"))
                .filter(|v| !is_empty(v))
                .cloned(),
            values: self.values(),
        }
    }

    fn types(&self) -> Vec<&'a str> {
        match self.inner.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect(),
            _ if self.inner.get("oneOf").is_some() || self.inner.get("enum").is_some() => {
                vec!["string"]
            }
            _ => Vec::new(),
        }
    }

    fn type_name(&self) -> String {
        let types = self.types();
        match types.as_slice() {
            ["array"] => match self.inner.get("items") {
                Some(items) => format!("[]{}", self.tree.node(items).type_name()),
                None => "[]Object".to_owned(),
            },
            ["object"] => match self.inner.get("additionalProperties") {
                Some(values) if values.is_object() && self.inner.get("properties").is_none() => {
                    format!("map[string]{}", self.tree.node(values).type_name())
                }
                _ => self.type_ref.unwrap_or("Object").to_owned(),
            },
            // A named scalar (`Quantity`) keeps its name; an enum reads
            // `string`, its values listed beside it.
            [one] => match self.type_ref {
                Some(name) if self.values().is_empty() => name.to_owned(),
                _ => (*one).to_owned(),
            },
            [] => self.type_ref.unwrap_or("Object").to_owned(),
            _ => self
                .type_ref
                .map_or_else(|| types.join(" or "), str::to_owned),
        }
    }

    /// The fixed values of an enum, each with its doc comment.
    fn values(&self) -> Vec<(String, String)> {
        if let Some(values) = self.inner.get("enum").and_then(Value::as_array) {
            return values
                .iter()
                .filter_map(Value::as_str)
                .map(|v| (v.to_owned(), String::new()))
                .collect();
        }
        let Some(branches) = self.inner.get("oneOf").and_then(Value::as_array) else {
            return Vec::new();
        };
        let mut values = Vec::new();
        for branch in branches {
            let doc = branch
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let doc = unlink(doc);
            if let Some(v) = branch.get("const").and_then(Value::as_str) {
                values.push((v.to_owned(), doc));
            } else if let Some(vs) = branch.get("enum").and_then(Value::as_array) {
                values.extend(
                    vs.iter()
                        .filter_map(Value::as_str)
                        .map(|v| (v.to_owned(), doc.clone())),
                );
            }
        }
        values
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn field<'a>(e: &'a Explanation, name: &str) -> &'a Field {
        e.fields.iter().find(|f| f.name == name).unwrap()
    }

    #[test]
    fn a_kind_lists_its_top_level_fields() {
        let e = explain("deploy").unwrap();
        assert_eq!(e.kind, Kind::Deployment);
        assert!(e.path.is_empty());
        assert_eq!(e.field.description, "Desired replicas of one component.");
        assert_eq!(field(&e, "spec").type_name, "DeploymentSpec");
        assert!(field(&e, "spec").required);
        assert!(!field(&e, "status").required);
    }

    #[test]
    fn a_path_walks_objects_lists_and_options() {
        let e = explain("deployment.spec.strategy").unwrap();
        assert_eq!(e.field.type_name, "DeploymentStrategy");
        assert!(
            field(&e, "rollingUpdate")
                .description
                .contains("rolling update")
        );
        let type_ = field(&e, "type");
        assert_eq!(type_.type_name, "string");
        let values: Vec<&str> = type_.values.iter().map(|(v, _)| v.as_str()).collect();
        assert!(values.contains(&"Recreate"), "{values:?}");

        let e = explain("deployment.spec.template.spec.env").unwrap();
        assert_eq!(e.field.type_name, "[]EnvVar");
        assert!(field(&e, "name").required);
        let e = explain("deployment.spec.template.spec.env.value").unwrap();
        assert_eq!(e.field.type_name, "string");
        assert!(e.fields.is_empty());

        let e = explain("deployment.spec.replicas").unwrap();
        assert_eq!(e.field.type_name, "integer");
        assert_eq!(e.field.default, Some(Value::from(1)));
        let e = explain("deployment.metadata.labels").unwrap();
        assert_eq!(e.field.type_name, "map[string]string");
        let e = explain("deployment.spec.strategy.rollingUpdate.maxSurge").unwrap();
        assert_eq!(e.field.type_name, "IntOrPercent");
    }

    #[test]
    fn unknown_kinds_and_fields_are_named() {
        let e = explain("deployment.spec.foo").unwrap_err();
        assert_eq!(
            e.to_string(),
            "field \"foo\" does not exist in deployment.spec"
        );
        let e = explain("widget").unwrap_err();
        assert!(e.to_string().contains("\"widget\""), "{e}");
    }

    /// The field reference and `explain` are only as good as the doc
    /// comments: every field of every kind must have one.
    #[test]
    fn every_field_of_every_kind_is_documented() {
        let mut undocumented = Vec::new();
        for kind in Kind::ALL {
            let tree = Tree::of(kind);
            let mut nodes = vec![(kind.as_str().to_owned(), tree.root())];
            nodes.extend(
                tree.defs()
                    .into_iter()
                    .map(|(n, node)| (n.to_owned(), node)),
            );
            for (owner, node) in nodes {
                for field in node.children() {
                    if field.description.trim().is_empty() {
                        undocumented.push(format!("{owner}.{}", field.name));
                    }
                }
            }
        }
        undocumented.sort();
        undocumented.dedup();
        assert!(
            undocumented.is_empty(),
            "fields without a doc comment: {undocumented:?}"
        );
    }

    #[test]
    fn every_kind_explains_with_a_description() {
        for kind in Kind::ALL {
            let e = explain(kind.as_str()).unwrap();
            assert!(!e.field.description.is_empty(), "{kind}");
            assert!(!e.fields.is_empty(), "{kind}");
        }
    }
}
