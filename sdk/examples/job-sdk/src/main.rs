//! berth's example Job written with berth-sdk: a `wasi:cli/run` command
//! that runs to completion. It sums the numbers 1..=`COUNT` (config, 10 by
//! default), logging progress as structured lines, prints
//! `sum 1..=COUNT = TOTAL` to stdout and exits 0. A `COUNT` that is not a
//! number fails the run (exit code 1, the reason logged); `EXIT_CODE` ends
//! it with that code instead, after the work.

use berth_sdk::config::{self, ConfigError};

#[berth_sdk::job]
async fn main() -> Result<(), ConfigError> {
    let count: u64 = config::parse("COUNT")?.unwrap_or(10);
    berth_sdk::info!(count = count, instance = config::instance(); "job started");
    let total: u64 = (1..=count).sum();
    println!("sum 1..={count} = {total}");
    berth_sdk::info!(total = total; "job done");
    if let Some(code) = config::parse::<u8>("EXIT_CODE")? {
        berth_sdk::job::exit(code);
    }
    Ok(())
}
