//! Label selectors for `get -l`: kubectl's equality-based grammar.
//!
//! `app=hello,tier!=web,canary,!legacy`: every requirement must hold.
//! `k=v` (or `k==v`) needs the label with that value, `k!=v` any other
//! value or none, `k` the label with any value, `!k` no such label.
//!
//! Selection happens in the CLI after the scheduler answered the whole
//! kind; sending the selector in `Request::Get` so the scheduler filters
//! is a later step. Set-based requirements (`k in (a,b)`) are not read yet.

use std::collections::BTreeMap;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `k=v`: the label is present with this value.
    Equals(String, String),
    /// `k!=v`: the label is absent or has another value.
    NotEquals(String, String),
    /// `k`: the label is present.
    Exists(String),
    /// `!k`: the label is absent.
    Absent(String),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::Absent(k) => !labels.contains_key(k),
        }
    }
}

/// Requirements that must all hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    /// In the order written.
    pub requirements: Vec<Requirement>,
}

impl Selector {
    /// Reads `app=hello,tier!=web,canary`; the error names the bad term.
    pub fn parse(text: &str) -> Result<Selector, String> {
        let requirements = text
            .split(',')
            .map(|term| requirement(term.trim(), text))
            .collect::<Result<_, _>>()?;
        Ok(Selector { requirements })
    }

    /// Whether `labels` meet every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

fn requirement(term: &str, whole: &str) -> Result<Requirement, String> {
    let key = |k: &str| -> Result<String, String> {
        let k = k.trim();
        if k.is_empty() || k.contains(|c: char| c.is_whitespace() || "=!(),".contains(c)) {
            Err(format!(
                "invalid selector {whole:?}: bad key in {term:?}: expected k=v, k!=v, k or !k"
            ))
        } else {
            Ok(k.to_owned())
        }
    };
    let value = |v: &str| -> Result<String, String> {
        let v = v.trim();
        if v.contains(|c: char| c.is_whitespace() || "=!(),".contains(c)) {
            Err(format!("invalid selector {whole:?}: bad value in {term:?}"))
        } else {
            Ok(v.to_owned())
        }
    };
    if let Some((k, v)) = term.split_once("!=") {
        Ok(Requirement::NotEquals(key(k)?, value(v)?))
    } else if let Some((k, v)) = term.split_once("==") {
        Ok(Requirement::Equals(key(k)?, value(v)?))
    } else if let Some((k, v)) = term.split_once('=') {
        Ok(Requirement::Equals(key(k)?, value(v)?))
    } else if let Some(k) = term.strip_prefix('!') {
        Ok(Requirement::Absent(key(k)?))
    } else {
        Ok(Requirement::Exists(key(term)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reads_every_form() {
        let s = Selector::parse("app=hello, tier!=web,canary,!legacy,env==prod").unwrap();
        assert_eq!(
            s.requirements,
            [
                Requirement::Equals("app".into(), "hello".into()),
                Requirement::NotEquals("tier".into(), "web".into()),
                Requirement::Exists("canary".into()),
                Requirement::Absent("legacy".into()),
                Requirement::Equals("env".into(), "prod".into()),
            ]
        );
    }

    #[test]
    fn matches_like_kubectl() {
        let s = Selector::parse("app=hello,tier!=web,canary").unwrap();
        assert!(s.matches(&labels(&[("app", "hello"), ("canary", "")])));
        assert!(s.matches(&labels(&[
            ("app", "hello"),
            ("tier", "db"),
            ("canary", "1")
        ])));
        assert!(!s.matches(&labels(&[
            ("app", "hello"),
            ("tier", "web"),
            ("canary", "1")
        ])));
        assert!(!s.matches(&labels(&[("app", "hello")])));
        assert!(!s.matches(&labels(&[("app", "nope"), ("canary", "1")])));
        let absent = Selector::parse("!legacy").unwrap();
        assert!(absent.matches(&labels(&[])));
        assert!(!absent.matches(&labels(&[("legacy", "true")])));
        let empty_value = Selector::parse("app=").unwrap();
        assert!(empty_value.matches(&labels(&[("app", "")])));
    }

    #[test]
    fn bad_terms_are_named() {
        assert_eq!(
            Selector::parse("app=hello,,x").unwrap_err(),
            "invalid selector \"app=hello,,x\": bad key in \"\": expected k=v, k!=v, k or !k"
        );
        assert_eq!(
            Selector::parse("=v").unwrap_err(),
            "invalid selector \"=v\": bad key in \"=v\": expected k=v, k!=v, k or !k"
        );
        assert_eq!(
            Selector::parse("a=b=c").unwrap_err(),
            "invalid selector \"a=b=c\": bad value in \"a=b=c\""
        );
        assert!(Selector::parse("a in (b)").is_err());
    }
}
