//! Progress that redraws one line in place on a terminal (`rollout
//! status`, `deploy`) and prints each new line otherwise, so that logs and
//! pipes get plain lines. A redrawn line is cut to the terminal's width: a
//! line that wrapped could not be redrawn. A line left open is ended when
//! the printer is dropped, so an error message starts on a line of its own.

use std::io::{IsTerminal as _, Write};

use crate::commands::rollout::Progress;

/// Prints progress lines to `W`.
pub struct ProgressLine<W: Write> {
    out: W,
    /// Columns of the terminal, when redrawing.
    redraw: Option<usize>,
    /// A redrawn line is on screen without its newline.
    open: bool,
}

impl ProgressLine<std::io::Stdout> {
    /// Progress on standard output: redrawn if it is a terminal.
    pub fn stdout() -> Self {
        let out = std::io::stdout();
        let redraw = out.is_terminal().then(|| terminal_width(&out));
        ProgressLine::new(out, redraw)
    }
}

/// The terminal's width in columns (80 when it does not say).
fn terminal_width(out: &std::io::Stdout) -> usize {
    rustix::termios::tcgetwinsize(out)
        .ok()
        .map(|size| usize::from(size.ws_col))
        .filter(|&columns| columns > 0)
        .unwrap_or(80)
}

impl<W: Write> ProgressLine<W> {
    /// A printer writing to `out`, redrawing in `columns` columns or not.
    pub fn new(out: W, redraw: Option<usize>) -> Self {
        ProgressLine {
            out,
            redraw,
            open: false,
        }
    }

    /// Shows one step: a waiting line stays open to be redrawn, the last
    /// line ends with a newline.
    pub fn show(&mut self, progress: &Progress) {
        let (line, last) = match progress {
            Progress::Waiting(line) => (line, false),
            Progress::Done(line) | Progress::Failed(line) => (line, true),
        };
        let text = match self.redraw {
            Some(columns) => {
                let shown: String = if last {
                    line.clone()
                } else {
                    line.chars().take(columns.saturating_sub(1)).collect()
                };
                self.open = !last;
                format!("\r\x1b[2K{shown}{}", if last { "\n" } else { "" })
            }
            None => format!("{line}\n"),
        };
        // Progress is best effort: a closed stdout must not fail the work.
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }

    /// Prints a line of its own, below the progress line.
    pub fn line(&mut self, text: &str) {
        self.close();
        let _ = writeln!(self.out, "{text}");
    }

    fn close(&mut self) {
        if self.open {
            let _ = self.out.write_all(b"\n");
            let _ = self.out.flush();
            self.open = false;
        }
    }

    /// What was written, for tests.
    #[cfg(test)]
    fn into_inner(mut self) -> W
    where
        W: Default,
    {
        self.close();
        std::mem::take(&mut self.out)
    }
}

impl<W: Write> Drop for ProgressLine<W> {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps() -> Vec<Progress> {
        vec![
            Progress::Waiting("waiting for 0 of 1".into()),
            Progress::Waiting("waiting for 1 of 1, a long line".into()),
            Progress::Done("done".into()),
        ]
    }

    #[test]
    fn plain_lines_off_a_terminal() {
        let mut printer = ProgressLine::new(Vec::new(), None);
        for step in steps() {
            printer.show(&step);
        }
        let text = String::from_utf8(printer.into_inner()).unwrap();
        assert_eq!(
            text,
            "waiting for 0 of 1\nwaiting for 1 of 1, a long line\ndone\n"
        );
    }

    #[test]
    fn one_redrawn_line_on_a_terminal() {
        let mut printer = ProgressLine::new(Vec::new(), Some(20));
        for step in steps() {
            printer.show(&step);
        }
        let text = String::from_utf8(printer.into_inner()).unwrap();
        assert_eq!(
            text,
            "\r\x1b[2Kwaiting for 0 of 1\r\x1b[2Kwaiting for 1 of 1,\r\x1b[2Kdone\n"
        );
    }

    #[test]
    fn an_open_line_is_ended_before_other_lines() {
        let mut printer = ProgressLine::new(Vec::new(), Some(80));
        printer.show(&Progress::Waiting("waiting".into()));
        printer.line("applied");
        let text = String::from_utf8(printer.into_inner()).unwrap();
        assert_eq!(text, "\r\x1b[2Kwaiting\napplied\n");
    }
}
