//! `berth version`: this client's version.
//!
//! The scheduler's version is not asked for yet: the wire protocol has no
//! request for it.

/// The client's version, as `kubectl version` prints it.
pub fn version() -> String {
    format!("Client Version: {}\n", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_crate_version() {
        assert_eq!(
            super::version(),
            format!("Client Version: {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}
