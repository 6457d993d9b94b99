//! `berth completion bash|zsh|fish`: a shell completion script, generated
//! by `clap_complete` from the same definitions that parse the arguments,
//! so it never drifts from them.

use clap_complete::Shell;

/// The completion script of `command` for `shell`.
pub fn script(shell: Shell, command: &mut clap::Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, command, "berth", &mut out);
    out
}
