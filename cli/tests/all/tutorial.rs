//! `docs/tutorial.md`, executed: its commands run in order against a real
//! `berth dev` cluster, and the output shown under them must appear, so
//! the tutorial cannot rot.
//!
//! What the test reads in the page:
//! - a ` ```sh ` block: one command a line (`#` starts a comment), each of
//!   which must succeed; ` ```sh skip ` blocks are shown, not run (the
//!   build: the test runs on what `cargo test` built), and the one
//!   ` ```sh background ` block starts the cluster and leaves it running;
//! - a ` ```text ` block right after a command block: lines the output of
//!   its last command must contain, in order, each on a line of its own;
//!   runs of spaces count as one, and `...` stands for any text;
//! - a ` ```yaml file=PATH ` block: a file the reader saves, written to PATH.
//!
//! The reader's clone is a temporary directory whose `target/guest` is the
//! guest build's; `HOME` is a temporary one too. `berth` is the binary
//! under test. The cluster listens on ports the OS picks: the page's
//! `127.0.0.1:7443` and `127.0.0.1:8080` are mapped to them both ways, as
//! is `~` to the temporary `HOME`. `curl -H 'Host: H' URL` is a GET by the
//! test itself. A `curl` or a `berth get` is repeated (for up to a minute)
//! until its expected output appears, as a reader would look again: the
//! node registers, and Service endpoints reach it, a moment after the
//! command before returns.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{Proc, berth_bin, http_get_path};

const PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/tutorial.md");
const DOC_INGRESS: &str = "127.0.0.1:8080";
const DOC_SCHEDULER: &str = "127.0.0.1:7443";

/// One thing the page asks the reader to do.
#[derive(Debug)]
enum Step {
    Write {
        path: String,
        content: String,
    },
    Run {
        commands: Vec<String>,
        background: bool,
        expect: Vec<String>,
    },
}

/// The steps of the page, in order.
fn steps(page: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut lines = page.lines();
    // Whether the last block was a command block a `text` block may follow.
    let mut after_run = false;
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let Some(info) = trimmed.strip_prefix("```") else {
            continue;
        };
        let indent = line.len() - trimmed.len();
        let mut body = Vec::new();
        for inner in lines.by_ref() {
            if inner.trim() == "```" {
                break;
            }
            body.push(inner.get(indent..).unwrap_or(inner.trim_start()));
        }
        let words: Vec<&str> = info.split_whitespace().collect();
        match words.as_slice() {
            ["sh"] | ["sh", "background"] => {
                let commands = body
                    .iter()
                    .map(|l| l.trim())
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned)
                    .collect();
                steps.push(Step::Run {
                    commands,
                    background: words.len() == 2,
                    expect: Vec::new(),
                });
                after_run = true;
                continue;
            }
            ["text"] if after_run => {
                if let Some(Step::Run { expect, .. }) = steps.last_mut() {
                    *expect = body
                        .iter()
                        .filter(|l| !l.trim().is_empty())
                        .map(|l| (*l).to_owned())
                        .collect();
                }
            }
            ["yaml", file] if file.starts_with("file=") => {
                steps.push(Step::Write {
                    path: file.trim_start_matches("file=").to_owned(),
                    content: body.join("\n") + "\n",
                });
            }
            _ => {}
        }
        after_run = false;
    }
    steps
}

/// Splits a command line as a shell would for the page's simple commands:
/// words, 'single' and "double" quotes. Pipes, redirections and variables
/// are refused, so the page keeps to what this test can run.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#') if !in_word => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '|' | '>' | '<' | '&' | ';' | '$' | '`' | '\\') => {
                panic!("docs/tutorial.md: {line:?}: the tutorial test runs plain commands only")
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    assert!(
        quote.is_none(),
        "docs/tutorial.md: {line:?}: unclosed quote"
    );
    if in_word {
        words.push(word);
    }
    words
}

/// Whether `line` (spaces collapsed) matches `pattern`, whose `...` stand
/// for any text.
fn line_matches(pattern: &str, line: &str) -> bool {
    let pattern = collapse(pattern);
    let line = collapse(line);
    let pieces: Vec<&str> = pattern.split("...").collect();
    if pieces.len() == 1 {
        return line == pattern;
    }
    let mut rest = line.as_str();
    for (i, piece) in pieces.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(piece) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == pieces.len() - 1 {
            return rest.ends_with(piece);
        } else {
            match rest.find(piece) {
                Some(at) => rest = &rest[at + piece.len()..],
                None => return false,
            }
        }
    }
    true
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The expected lines not found in `output`, in order; empty if all are.
fn missing(expect: &[String], output: &str) -> Vec<String> {
    let mut lines = output.lines();
    let mut missing = Vec::new();
    for pattern in expect {
        if !lines.by_ref().any(|line| line_matches(pattern, line)) {
            missing.push(pattern.clone());
            lines = output.lines();
        }
    }
    missing
}

/// The reader's machine: a clone, a home, and the cluster's addresses.
struct Reader {
    clone: PathBuf,
    home: PathBuf,
    ingress: Option<SocketAddr>,
    scheduler: Option<String>,
}

impl Reader {
    /// The command as this test runs it: `berth` under test, the cluster
    /// in the temporary home.
    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(&self.clone)
            .env("HOME", &self.home)
            .env("BERTH_CONFIG", self.home.join(".config/berth/config"))
            .env("BERTH_LOG", "warn")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("BERTH_DATA")
            .env_remove("BERTH_LISTEN")
            .env_remove("NO_COLOR");
        command
    }

    /// `text` with the real addresses and home written as the page shows them.
    fn as_documented(&self, text: &str) -> String {
        let mut text = text.replace(&*self.home.to_string_lossy(), "~");
        if let Some(ingress) = self.ingress {
            text = text.replace(&ingress.to_string(), DOC_INGRESS);
        }
        if let Some(scheduler) = &self.scheduler {
            text = text.replace(scheduler, DOC_SCHEDULER);
        }
        text
    }

    fn arg(&self, word: &str) -> String {
        match self.ingress {
            Some(ingress) => word.replace(DOC_INGRESS, &ingress.to_string()),
            None => word.to_owned(),
        }
    }

    /// Starts `berth dev` on free ports; waits for the expected lines and
    /// learns the addresses from the first.
    fn start_cluster(&mut self, line: &str, expect: &[String]) -> Proc {
        let words = words(line);
        assert_eq!(
            words,
            ["berth", "dev"],
            "the background command is berth dev"
        );
        let mut child = self
            .command(&berth_bin())
            .args(["dev", "--listen", "127.0.0.1:0", "--ingress", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let dev = Proc::new(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        // berth dev: scheduler on ADDR (quic), ingress on http://ADDR
        let scheduler = first
            .split("scheduler on ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap();
        let ingress = first.split("http://").nth(1).unwrap().trim();
        self.scheduler = Some(scheduler.to_owned());
        self.ingress = Some(ingress.parse().unwrap());
        let mut output = self.as_documented(&first) + "\n";
        let deadline = Instant::now() + Duration::from_secs(60);
        while !missing(expect, &output).is_empty() {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| {
                    panic!(
                        "berth dev: {:?} not printed; output:\n{output}",
                        missing(expect, &output)
                    )
                });
            output.push_str(&self.as_documented(&line));
            output.push('\n');
        }
        dev
    }

    /// Runs one command; returns its output as the page shows it.
    fn run(&self, line: &str, expect: &[String]) -> String {
        let words: Vec<String> = words(line).iter().map(|w| self.arg(w)).collect();
        match words.first().map(String::as_str) {
            Some("berth") => {
                // A read (`get`) is repeated until it shows what the page
                // says: the node registers, and the instances start, a
                // moment after the commands before it return.
                let read = words.get(1).is_some_and(|verb| verb == "get");
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let output = self
                        .command(&berth_bin())
                        .args(&words[1..])
                        .output()
                        .unwrap();
                    let stdout = self.as_documented(&String::from_utf8_lossy(&output.stdout));
                    assert!(
                        output.status.success(),
                        "docs/tutorial.md: {line:?} failed ({}):\n{stdout}{}",
                        output.status,
                        String::from_utf8_lossy(&output.stderr)
                    );
                    if !read || missing(expect, &stdout).is_empty() || Instant::now() > deadline {
                        return stdout;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            Some("curl") => self.curl(line, &words, expect),
            _ => panic!("docs/tutorial.md: {line:?}: the test runs only berth and curl"),
        }
    }

    /// `curl [-s] -H 'Host: H' http://ADDR/PATH`, as a GET of the test's.
    fn curl(&self, line: &str, words: &[String], expect: &[String]) -> String {
        let mut host = None;
        let mut url = None;
        let mut rest = words.iter().skip(1);
        while let Some(word) = rest.next() {
            match word.as_str() {
                "-s" => {}
                "-H" => {
                    let header = rest.next().unwrap();
                    host = header.strip_prefix("Host: ").map(str::to_owned);
                }
                w if w.starts_with("http://") => url = Some(w.to_owned()),
                w => panic!("docs/tutorial.md: {line:?}: curl option {w:?} is not understood"),
            }
        }
        let url = url.unwrap();
        let address = url.trim_start_matches("http://");
        let (authority, path) = address.split_at(address.find('/').unwrap_or(address.len()));
        let ingress: SocketAddr = authority.parse().unwrap();
        let host = host.unwrap_or_else(|| authority.to_owned());
        let path = if path.is_empty() { "/" } else { path };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let body = match http_get_path(ingress, &host, path) {
                Ok((_, body)) => self.as_documented(&body),
                Err(e) => format!("curl: {e}"),
            };
            if missing(expect, &body).is_empty() || Instant::now() > deadline {
                return body;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The directory of the guest build (`target/guest`), found from the path
/// of a component in it.
fn guest_dir() -> PathBuf {
    let component = Path::new(berth_test_programs::HELLO_SDK);
    component
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "guest"))
        .unwrap()
        .to_owned()
}

#[test]
fn the_tutorial_runs_as_written() {
    let page = std::fs::read_to_string(PAGE).unwrap();
    let steps = steps(&page);
    let commands: usize = steps
        .iter()
        .map(|s| match s {
            Step::Run { commands, .. } => commands.len(),
            Step::Write { .. } => 0,
        })
        .sum();
    assert!(
        commands >= 10,
        "docs/tutorial.md: too few commands found: {steps:?}"
    );
    // The components the page uses are built with the test programs.
    let _ = (
        berth_test_programs::CALL_SERVICE,
        berth_test_programs::HELLO,
    );

    let dir = tempfile::tempdir().unwrap();
    let clone = dir.path().join("clone");
    std::fs::create_dir_all(clone.join("target")).unwrap();
    std::os::unix::fs::symlink(guest_dir(), clone.join("target/guest")).unwrap();
    let mut reader = Reader {
        clone,
        home: dir.path().join("home"),
        ingress: None,
        scheduler: None,
    };
    std::fs::create_dir_all(&reader.home).unwrap();

    let mut cluster = None;
    for step in &steps {
        match step {
            Step::Write { path, content } => {
                let path = reader.clone.join(path);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, content).unwrap();
            }
            Step::Run {
                commands,
                background: true,
                expect,
            } => {
                assert!(
                    cluster.is_none(),
                    "docs/tutorial.md: one background command only"
                );
                assert_eq!(commands.len(), 1, "docs/tutorial.md: {commands:?}");
                cluster = Some(reader.start_cluster(&commands[0], expect));
            }
            Step::Run {
                commands,
                background: false,
                expect,
            } => {
                let Some((last, before)) = commands.split_last() else {
                    continue;
                };
                for line in before {
                    reader.run(line, &[]);
                }
                let output = reader.run(last, expect);
                let missing = missing(expect, &output);
                assert!(
                    missing.is_empty(),
                    "docs/tutorial.md: the output of {last:?} lacks {missing:?}; it was:\n{output}"
                );
            }
        }
    }
    assert!(cluster.is_some(), "docs/tutorial.md starts no cluster");
}

#[test]
fn expected_lines_match_with_wildcards_and_loose_spaces() {
    assert!(line_matches(
        "hello-... 1/1 Running",
        "hello-x2k9p   1/1   Running"
    ));
    assert!(line_matches("NAME READY", "NAME    READY"));
    assert!(!line_matches("NAME READY", "NAME    READY   AGE"));
    assert!(line_matches("a ... c ... e", "a b c d e"));
    assert!(!line_matches("hello-...)", "hello-x"));
    assert_eq!(
        words(r#"curl -H 'Host: a.b' http://x/ # a comment"#),
        ["curl", "-H", "Host: a.b", "http://x/"]
    );
    let found = missing(&["one".to_owned(), "three".to_owned()], "one\ntwo\nthree\n");
    assert!(found.is_empty(), "{found:?}");
    let found = missing(&["three".to_owned(), "one".to_owned()], "one\ntwo\nthree\n");
    assert_eq!(found, ["one"]);
}
