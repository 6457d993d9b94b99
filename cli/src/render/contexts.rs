//! `berth config get-contexts`, as `kubectl config get-contexts` prints it.

use crate::config::ContextRow;

/// CURRENT (`*` for the current one), NAME and SERVER.
pub fn contexts(rows: &[ContextRow]) -> String {
    let mut table = vec![vec![
        "CURRENT".to_owned(),
        "NAME".to_owned(),
        "SERVER".to_owned(),
    ]];
    for row in rows {
        table.push(vec![
            if row.current { "*" } else { "" }.to_owned(),
            row.name.clone(),
            row.server.to_string(),
        ]);
    }
    super::columns(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_the_current_context() {
        let row = |current, name: &str, port| ContextRow {
            current,
            name: name.to_owned(),
            server: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        };
        assert_eq!(
            contexts(&[row(false, "default", 7443), row(true, "prod", 9000)]),
            "CURRENT   NAME      SERVER\n\
             \x20         default   127.0.0.1:7443\n\
             *         prod      127.0.0.1:9000\n"
        );
    }
}
