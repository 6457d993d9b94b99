//! Components run to completion, as a Job's runs or a CronJob's.
//!
//! A job is a `wasi:cli/run` command: mark an `async fn main()` (or a plain
//! `fn main()`) with [`#[berth_sdk::job]`](macro@crate::job) and return `()` or
//! a `Result`. An `Err` is logged as an `error` line and the run fails with
//! exit code 1; [`exit`] ends the run with any code from 0 to 255, which
//! berth records on the Job.
//!
//! ```ignore
//! #[berth_sdk::job]
//! async fn main() -> Result<(), String> {
//!     let batch = berth_sdk::config::get("BATCH").unwrap_or_default();
//!     berth_sdk::info!(batch = batch; "processing");
//!     Ok(())
//! }
//! ```

use std::fmt::Display;
use std::io::Write as _;

/// What a job's `main` may return: `()` or `Result<(), E: Display>`.
pub trait Outcome {
    /// `Ok` when the run succeeded, else the error to log.
    fn into_result(self) -> Result<(), String>;
}

impl Outcome for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> Outcome for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// Ends the run with what `main` returned: exit code 0 on success, 1 after
/// logging the error. Called by the `#[job]` expansion.
pub fn finish(outcome: impl Outcome) {
    match outcome.into_result() {
        Ok(()) => exit(0),
        Err(message) => {
            crate::error!("{message}");
            exit(1)
        }
    }
}

/// Ends the run now with `code`, flushing stdout first. Codes other than 0
/// and 1 travel through `wasi:cli/exit.exit-with-code`
/// (`std::process::exit` reports only success or failure on
/// `wasm32-wasip2`).
pub fn exit(code: u8) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    if code > 1 {
        crate::__private::wasip2::cli::exit::exit_with_code(code);
    }
    std::process::exit(i32::from(code))
}
