//! {{name}}: a berth Job, a command that runs to completion. It prints a
//! greeting to `GREETING` (config, `world` by default) and exits 0; an
//! `Err` from `main` is logged and exits 1.

use berth_sdk::config::{self, ConfigError};

#[berth_sdk::job]
async fn main() -> Result<(), ConfigError> {
    let whom = config::get("GREETING").unwrap_or_else(|| "world".to_owned());
    println!("Hello, {whom}!");
    berth_sdk::info!(instance = config::instance(); "{{name}} done");
    Ok(())
}
