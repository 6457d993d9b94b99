//! When output may be coloured: only when it goes to a terminal, and never
//! when `NO_COLOR` is set to anything but the empty string
//! (<https://no-color.org>). Tables, JSON and YAML are never coloured;
//! `berth diff` colours its added and removed lines.

use std::ffi::OsStr;
use std::io::IsTerminal as _;

/// Whether to colour output going to a terminal (`is_terminal`) given the
/// value of `NO_COLOR`.
pub fn wanted(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Whether to colour what this process writes to standard output.
pub fn stdout() -> bool {
    wanted(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// An SGR colour for one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    /// Removed lines.
    Red,
    /// Added lines.
    Green,
    /// Hunk headers.
    Cyan,
    /// File headers.
    Bold,
}

impl Colour {
    fn code(self) -> &'static str {
        match self {
            Colour::Red => "31",
            Colour::Green => "32",
            Colour::Cyan => "36",
            Colour::Bold => "1",
        }
    }
}

/// `text` wrapped in the escape sequences of `colour`.
pub fn paint(text: &str, colour: Colour) -> String {
    format!("\x1b[{}m{text}\x1b[0m", colour.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(wanted(true, None));
        assert!(wanted(true, Some(OsStr::new(""))));
        assert!(!wanted(true, Some(OsStr::new("1"))));
        assert!(!wanted(false, None));
        assert!(!wanted(false, Some(OsStr::new("1"))));
        assert_eq!(paint("+a", Colour::Green), "\x1b[32m+a\x1b[0m");
    }
}
