//! Capability policy: which interfaces a namespace's components may not
//! import, checked at admission against the component's actual imports.
//!
//! The policy is the Namespace annotation [`DENIED_IMPORTS`], a list of
//! interface patterns separated by commas or whitespace:
//!
//! ```yaml
//! kind: Namespace
//! metadata:
//!   name: team-b
//!   annotations:
//!     berth.dev/denied-imports: "wasi:http/outgoing-handler, wasi:filesystem/*"
//! ```
//!
//! A pattern is `NS:PKG/IFACE` (one interface, any version), `NS:PKG/*`
//! (every interface of a package) or `NS:*` (every package of a
//! namespace). Imports are compared without their `@version`. A
//! Deployment, Job, DaemonSet or CronJob whose component imports a denied
//! interface is refused ([`check`]); the scheduler reads the imports it
//! recorded when the component was uploaded. See
//! `docs/decisions/0037-network-and-capability-policy.md`.

/// The Namespace annotation holding the denied interface patterns.
pub const DENIED_IMPORTS: &str = "berth.dev/denied-imports";

/// Why a policy cannot be read or a component is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// A pattern is not `NS:PKG/IFACE`, `NS:PKG/*` or `NS:*`.
    #[error("{pattern:?} is not an interface pattern (NS:PKG/IFACE, NS:PKG/* or NS:*)")]
    Pattern {
        /// The pattern as written.
        pattern: String,
    },
    /// The component imports a denied interface.
    #[error(
        "component imports {import}, which namespace {namespace} denies ({DENIED_IMPORTS}: {pattern})"
    )]
    Denied {
        /// The import, as the component names it.
        import: String,
        /// The namespace.
        namespace: String,
        /// The pattern that denies it.
        pattern: String,
    },
}

/// One denied-interface pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// As written.
    text: String,
    /// What an import (without version) must equal, or start with when
    /// `prefix`.
    stem: String,
    prefix: bool,
}

impl Pattern {
    /// Reads one pattern.
    pub fn parse(text: &str) -> Result<Pattern, CapabilityError> {
        let bad = || CapabilityError::Pattern {
            pattern: text.to_owned(),
        };
        let (namespace, rest) = text.split_once(':').ok_or_else(bad)?;
        if !is_word(namespace) {
            return Err(bad());
        }
        if rest == "*" {
            return Ok(Pattern {
                text: text.to_owned(),
                stem: format!("{namespace}:"),
                prefix: true,
            });
        }
        let (package, interface) = rest.split_once('/').ok_or_else(bad)?;
        if !is_word(package) {
            return Err(bad());
        }
        if interface == "*" {
            return Ok(Pattern {
                text: text.to_owned(),
                stem: format!("{namespace}:{package}/"),
                prefix: true,
            });
        }
        if !is_word(interface) {
            return Err(bad());
        }
        Ok(Pattern {
            text: text.to_owned(),
            stem: text.to_owned(),
            prefix: false,
        })
    }

    /// Whether import `name` (`wasi:http/outgoing-handler@0.2.6`) falls
    /// under the pattern.
    pub fn matches(&self, name: &str) -> bool {
        let bare = name.split_once('@').map_or(name, |(bare, _)| bare);
        if self.prefix {
            bare.starts_with(&self.stem)
        } else {
            bare == self.stem
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A WIT identifier as patterns use it: lowercase letters, digits and
/// `-`, not empty.
fn is_word(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The patterns of an annotation value: separated by commas or
/// whitespace; empty entries ignored.
pub fn parse(value: &str) -> Result<Vec<Pattern>, CapabilityError> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .map(Pattern::parse)
        .collect()
}

/// Checks a Namespace's policy annotation, if it has one.
pub fn validate_namespace(metadata: &crate::ObjectMeta) -> Result<(), crate::validate::FieldError> {
    match metadata.annotations.get(DENIED_IMPORTS) {
        Some(value) => parse(value).map(drop).map_err(|e| {
            crate::validate::FieldError::new(
                format!("metadata.annotations[{DENIED_IMPORTS}]"),
                e.to_string(),
            )
        }),
        None => Ok(()),
    }
}

/// Refuses the first of `imports` that a pattern of `namespace`'s policy
/// (its [`DENIED_IMPORTS`] annotation value, `policy`) denies.
pub fn check<'i>(
    namespace: &str,
    policy: &str,
    imports: impl IntoIterator<Item = &'i str>,
) -> Result<(), CapabilityError> {
    let patterns = parse(policy)?;
    for import in imports {
        if let Some(pattern) = patterns.iter().find(|p| p.matches(import)) {
            return Err(CapabilityError::Denied {
                import: import.to_owned(),
                namespace: namespace.to_owned(),
                pattern: pattern.as_str().to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn patterns_name_an_interface_a_package_or_a_namespace() {
        let one = Pattern::parse("wasi:http/outgoing-handler").unwrap();
        assert!(one.matches("wasi:http/outgoing-handler@0.2.6"));
        assert!(one.matches("wasi:http/outgoing-handler"));
        assert!(!one.matches("wasi:http/types@0.2.6"));
        assert!(!one.matches("wasi:http/outgoing-handler-x@0.2.6"));
        let package = Pattern::parse("wasi:filesystem/*").unwrap();
        assert!(package.matches("wasi:filesystem/types@0.2.0"));
        assert!(package.matches("wasi:filesystem/preopens@0.2.0"));
        assert!(!package.matches("wasi:filesystem-x/types@0.2.0"));
        let namespace = Pattern::parse("wasi:*").unwrap();
        assert!(namespace.matches("wasi:sockets/tcp@0.2.0"));
        assert!(!namespace.matches("berth:config/store"));
        for bad in [
            "wasi",
            "wasi:http",
            "wasi:/x",
            ":http/x",
            "WASI:http/x",
            "wasi:http/*x",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_denied_import_is_refused_naming_import_and_policy() {
        let imports = [
            "wasi:cli/environment@0.2.6",
            "wasi:http/outgoing-handler@0.2.6",
            "wasi:http/types@0.2.6",
        ];
        let policy = "wasi:filesystem/*, wasi:http/outgoing-handler";
        let refused = check("team-b", policy, imports).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "component imports wasi:http/outgoing-handler@0.2.6, which namespace team-b denies \
             (berth.dev/denied-imports: wasi:http/outgoing-handler)"
        );
        assert!(check("team-b", policy, ["wasi:http/types@0.2.6"]).is_ok());
        assert!(
            check("team-b", "", imports).is_ok(),
            "an empty policy denies nothing"
        );
        assert!(matches!(
            check("team-b", "wasi", imports),
            Err(CapabilityError::Pattern { .. })
        ));
        assert_eq!(parse(" a:b/c,\n d:e/* ").unwrap().len(), 2);
    }
}
