//! berth's example Job: a `wasi:cli/command` component (a plain `main`
//! built for `wasm32-wasip2`) that runs to completion.
//!
//! It prints `job started` to stdout and a line to stderr, sleeps `WORK_MS`
//! milliseconds if that is set, and exits with the code in `EXIT_CODE`
//! (0 when unset), so tests can make it succeed or fail at will.

use std::time::Duration;

fn main() {
    let instance = std::env::var("BERTH_INSTANCE").unwrap_or_default();
    println!("job started {instance}");
    let work_ms = number("WORK_MS").unwrap_or(0);
    let code = number("EXIT_CODE")
        .and_then(|code| i32::try_from(code).ok())
        .unwrap_or(0);
    eprintln!("working {work_ms} ms, then exiting with {code}");
    if work_ms > 0 {
        std::thread::sleep(Duration::from_millis(work_ms));
    }
    println!("job done");
    std::process::exit(code);
}

/// The variable `name` as a number; `None` when unset or not a number.
fn number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}
