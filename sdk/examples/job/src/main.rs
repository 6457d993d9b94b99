//! berth's example Job: a `wasi:cli/command` component (a plain `main`
//! built for `wasm32-wasip2`) that runs to completion.
//!
//! It prints `job started <BERTH_INSTANCE>` to stdout and a line to
//! stderr, sleeps `WORK_MS` milliseconds if that is set, prints `job done`
//! and exits with the code in `EXIT_CODE` (0 when unset), so tests can
//! make it succeed or fail at will.

use std::io::Write as _;
use std::time::Duration;

fn main() {
    let instance = std::env::var("BERTH_INSTANCE").unwrap_or_default();
    println!("job started {instance}");
    let work_ms = number("WORK_MS").unwrap_or(0);
    let code = number("EXIT_CODE").unwrap_or(0);
    eprintln!("working {work_ms} ms, then exiting with {code}");
    if work_ms > 0 {
        std::thread::sleep(Duration::from_millis(work_ms));
    }
    println!("job done");
    exit(code);
}

/// Exits with `code` (0 to 255). `std::process::exit` would do for 0 and
/// 1 only: on wasm32-wasip2 it reports success or failure
/// (`wasi:cli/exit.exit` takes a `result`), so any other code goes through
/// `wasi:cli/exit.exit-with-code` (WASI 0.2.12).
fn exit(code: u64) -> ! {
    let _ = std::io::stdout().flush();
    match u8::try_from(code) {
        Ok(0) => std::process::exit(0),
        Ok(code) => wasip2::cli::exit::exit_with_code(code),
        Err(_) => {}
    }
    std::process::exit(1)
}

/// The variable `name` as a number; `None` when unset or not a number.
fn number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}
