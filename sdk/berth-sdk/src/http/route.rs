//! Route patterns and the table that matches method and path against them.
//! Pure logic, independent of the body and the runtime.
//!
//! A pattern is a path of segments: literal (`items`), parameter (`:id`,
//! one whole segment) or, last only, wildcard (`*rest`, the rest of the
//! path, possibly empty). When several patterns match a path, the most
//! specific wins, segment by segment from the left: literal before
//! parameter before wildcard; among equals, the one added first. A path
//! that some pattern matches under another method only is "method not
//! allowed", with the methods that would be.

use std::str::FromStr;

use wstd::http::Method;

use super::Error;

/// One segment of a pattern. The order of the variants is their precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Wildcard(String),
}

impl Segment {
    /// Rank for precedence: lower wins.
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 0,
            Segment::Param(_) => 1,
            Segment::Wildcard(_) => 2,
        }
    }
}

/// A parsed route pattern such as `/items/:id`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    segments: Vec<Segment>,
}

/// A route pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern does not start with `/`.
    #[error("error: route pattern {0:?} does not start with '/'")]
    NotAbsolute(String),
    /// A `:` or `*` segment has no name.
    #[error("error: route pattern {0:?} has a parameter without a name")]
    UnnamedParam(String),
    /// A `*` segment is not the last.
    #[error("error: route pattern {0:?} has a wildcard that is not the last segment")]
    WildcardNotLast(String),
    /// Two parameters have the same name.
    #[error("error: route pattern {pattern:?} names parameter {name:?} twice")]
    DuplicateParam {
        /// The pattern.
        pattern: String,
        /// The repeated name.
        name: String,
    },
}

impl Pattern {
    fn parse(pattern: &str) -> Result<Pattern, PatternError> {
        let Some(rest) = pattern.strip_prefix('/') else {
            return Err(PatternError::NotAbsolute(pattern.to_owned()));
        };
        let parts: Vec<&str> = split(rest).collect();
        let mut segments = Vec::with_capacity(parts.len());
        let mut names: Vec<&str> = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let segment = if let Some(name) = part.strip_prefix(':') {
                if name.is_empty() {
                    return Err(PatternError::UnnamedParam(pattern.to_owned()));
                }
                names.push(name);
                Segment::Param(name.to_owned())
            } else if let Some(name) = part.strip_prefix('*') {
                if name.is_empty() {
                    return Err(PatternError::UnnamedParam(pattern.to_owned()));
                }
                if i + 1 != parts.len() {
                    return Err(PatternError::WildcardNotLast(pattern.to_owned()));
                }
                names.push(name);
                Segment::Wildcard(name.to_owned())
            } else {
                Segment::Literal((*part).to_owned())
            };
            segments.push(segment);
        }
        for (i, name) in names.iter().enumerate() {
            if names.iter().skip(i + 1).any(|other| other == name) {
                return Err(PatternError::DuplicateParam {
                    pattern: pattern.to_owned(),
                    name: (*name).to_owned(),
                });
            }
        }
        Ok(Pattern { segments })
    }

    /// The parameters if `path` (without query) matches.
    fn matches(&self, path: &str) -> Option<Params> {
        let rest = path.strip_prefix('/').unwrap_or(path);
        let mut parts = split(rest);
        let mut params = Params::default();
        for segment in &self.segments {
            match segment {
                Segment::Literal(literal) => {
                    if percent_decode(parts.next()?) != *literal {
                        return None;
                    }
                }
                Segment::Param(name) => {
                    let part = parts.next()?;
                    if part.is_empty() {
                        return None;
                    }
                    params.0.push((name.clone(), percent_decode(part)));
                }
                Segment::Wildcard(name) => {
                    let tail: Vec<&str> = parts.by_ref().collect();
                    params
                        .0
                        .push((name.clone(), percent_decode(&tail.join("/"))));
                }
            }
        }
        parts.next().is_none().then_some(params)
    }

    /// Precedence key: compared lexicographically, lower wins.
    fn key(&self) -> Vec<u8> {
        self.segments.iter().map(Segment::rank).collect()
    }
}

/// The segments of a path without its leading `/`; `""` and a trailing `/`
/// give no segment, so `/items` and `/items/` match alike.
fn split(rest: &str) -> impl Iterator<Item = &str> {
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.split('/').filter({
        let empty = rest.is_empty();
        move |_| !empty
    })
}

/// `%XX` escapes decoded (as UTF-8, invalid sequences replaced); anything
/// malformed is kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Some(decoded) = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(decoded);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The parameters a route's pattern captured from the path, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The value of parameter `name` (`id` for `:id`, `rest` for `*rest`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The value of parameter `name` parsed as `T`; a missing or malformed
    /// value is a `400` [`Error`] naming it.
    pub fn parse<T>(&self, name: &str) -> Result<T, Error>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let value = self.get(name).ok_or_else(|| {
            Error::bad_request(format!("error: path parameter {name} is missing"))
        })?;
        value.parse().map_err(|e: T::Err| {
            Error::bad_request(format!("error: path parameter {name}={value:?}: {e}"))
        })
    }

    /// Every parameter, in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Lookup<'a, H> {
    /// The route's handler and parameters.
    Found(&'a H, Params),
    /// Some route matches the path, none with this method; the methods that
    /// would do.
    MethodNotAllowed(Vec<Method>),
    /// No route matches the path.
    NotFound,
}

/// A route: its method (`None`: any), pattern and handler.
#[derive(Debug)]
struct Route<H> {
    method: Option<Method>,
    pattern: Pattern,
    handler: H,
}

/// Routes in the order added, with the patterns that failed to parse.
#[derive(Debug)]
pub(crate) struct Table<H> {
    routes: Vec<Route<H>>,
    errors: Vec<PatternError>,
}

impl<H> Default for Table<H> {
    fn default() -> Self {
        Table {
            routes: Vec::new(),
            errors: Vec::new(),
        }
    }
}

impl<H> Table<H> {
    /// Adds a route; a bad pattern is kept in [`Table::errors`] instead.
    pub(crate) fn insert(&mut self, method: Option<Method>, pattern: &str, handler: H) {
        match Pattern::parse(pattern) {
            Ok(pattern) => self.routes.push(Route {
                method,
                pattern,
                handler,
            }),
            Err(error) => self.errors.push(error),
        }
    }

    /// The patterns that could not be added.
    pub(crate) fn errors(&self) -> &[PatternError] {
        &self.errors
    }

    /// The most specific route for `method` and `path`. `HEAD` falls back to
    /// a `GET` route.
    pub(crate) fn lookup(&self, method: &Method, path: &str) -> Lookup<'_, H> {
        let mut best: Option<(Vec<u8>, &Route<H>, Params)> = None;
        let mut allowed: Vec<Method> = Vec::new();
        for route in &self.routes {
            let Some(params) = route.pattern.matches(path) else {
                continue;
            };
            let fits = match &route.method {
                None => true,
                Some(m) => m == method || (*method == Method::HEAD && *m == Method::GET),
            };
            if !fits {
                if let Some(m) = &route.method
                    && !allowed.contains(m)
                {
                    allowed.push(m.clone());
                }
                continue;
            }
            let key = route.pattern.key();
            if best.as_ref().is_none_or(|(k, _, _)| key < *k) {
                best = Some((key, route, params));
            }
        }
        match best {
            Some((_, route, params)) => Lookup::Found(&route.handler, params),
            None if allowed.is_empty() => Lookup::NotFound,
            None => Lookup::MethodNotAllowed(allowed),
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    fn table(routes: &[(Option<Method>, &str, &'static str)]) -> Table<&'static str> {
        let mut table = Table::default();
        for (method, pattern, name) in routes {
            table.insert(method.clone(), pattern, *name);
        }
        table
    }

    fn found(table: &Table<&'static str>, method: Method, path: &str) -> (&'static str, Params) {
        match table.lookup(&method, path) {
            Lookup::Found(handler, params) => (*handler, params),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn literals_params_and_wildcards_match_whole_paths() {
        let t = table(&[
            (Some(Method::GET), "/", "root"),
            (Some(Method::GET), "/items", "list"),
            (Some(Method::GET), "/items/:id", "item"),
            (Some(Method::GET), "/files/*path", "file"),
        ]);
        assert_eq!(found(&t, Method::GET, "/").0, "root");
        assert_eq!(found(&t, Method::GET, "/items").0, "list");
        assert_eq!(found(&t, Method::GET, "/items/").0, "list");
        let (name, params) = found(&t, Method::GET, "/items/42");
        assert_eq!((name, params.get("id")), ("item", Some("42")));
        let (name, params) = found(&t, Method::GET, "/files/a/b%20c.txt");
        assert_eq!((name, params.get("path")), ("file", Some("a/b c.txt")));
        assert_eq!(found(&t, Method::GET, "/files").1.get("path"), Some(""));
        assert!(matches!(
            t.lookup(&Method::GET, "/items/42/x"),
            Lookup::NotFound
        ));
        assert!(matches!(
            t.lookup(&Method::GET, "/nothing"),
            Lookup::NotFound
        ));
        assert!(matches!(
            t.lookup(&Method::GET, "/items//"),
            Lookup::NotFound
        ));
    }

    #[test]
    fn the_most_specific_route_wins_whatever_the_order() {
        let t = table(&[
            (Some(Method::GET), "/*any", "fallback"),
            (Some(Method::GET), "/items/:id", "item"),
            (Some(Method::GET), "/items/new", "new"),
            (Some(Method::GET), "/items/:other", "second"),
        ]);
        assert_eq!(found(&t, Method::GET, "/items/new").0, "new");
        assert_eq!(found(&t, Method::GET, "/items/7").0, "item");
        assert_eq!(found(&t, Method::GET, "/elsewhere/deep").0, "fallback");
    }

    #[test]
    fn a_path_known_under_other_methods_is_method_not_allowed() {
        let t = table(&[
            (Some(Method::GET), "/items", "list"),
            (Some(Method::POST), "/items", "create"),
            (Some(Method::DELETE), "/items/:id", "delete"),
            (None, "/any", "any"),
        ]);
        assert_eq!(found(&t, Method::POST, "/items").0, "create");
        assert_eq!(found(&t, Method::HEAD, "/items").0, "list");
        assert_eq!(found(&t, Method::PATCH, "/any").0, "any");
        match t.lookup(&Method::PUT, "/items") {
            Lookup::MethodNotAllowed(methods) => assert_eq!(methods, [Method::GET, Method::POST]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_patterns_are_reported_not_routed() {
        let t = table(&[
            (None, "items", "relative"),
            (None, "/a/:", "unnamed"),
            (None, "/a/*rest/b", "wildcard"),
            (None, "/a/:x/:x", "twice"),
        ]);
        assert_eq!(t.errors().len(), 4);
        assert_eq!(t.errors()[0], PatternError::NotAbsolute("items".into()));
        assert!(
            matches!(t.errors()[3], PatternError::DuplicateParam { ref name, .. } if name == "x")
        );
        assert!(matches!(t.lookup(&Method::GET, "/a/b"), Lookup::NotFound));
    }

    #[test]
    fn params_parse_into_types_or_answer_400() {
        let t = table(&[(None, "/items/:id", "item")]);
        let params = found(&t, Method::GET, "/items/12").1;
        assert_eq!(params.parse::<u32>("id"), Ok(12));
        let error = found(&t, Method::GET, "/items/twelve")
            .1
            .parse::<u32>("id")
            .unwrap_err();
        assert_eq!(error.status(), 400);
        assert!(error.message().contains("id=\"twelve\""), "{error}");
        assert_eq!(params.parse::<u32>("nope").unwrap_err().status(), 400);
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }
}
