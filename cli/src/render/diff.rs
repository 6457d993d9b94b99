//! `berth diff`'s output: a unified diff of YAML for each object that
//! would change, live first, as `kubectl diff` prints it (`diff -u -N`:
//! an object that does not exist yet is all added lines).

use similar::TextDiff;

use super::colour::{Colour, paint};
use crate::commands::diff::ObjectDiff;

/// Lines of context around each change.
const CONTEXT_LINES: usize = 3;

/// The unified diffs of the changed objects of `diffs`, in their order;
/// empty when nothing would change. With `colour`, removed lines are red,
/// added ones green, hunk headers cyan and file headers bold.
pub fn diff(diffs: &[ObjectDiff], colour: bool) -> String {
    let mut out = String::new();
    for object in diffs.iter().filter(|d| d.changed()) {
        let live = object.live.as_deref().unwrap_or_default();
        let text = TextDiff::from_lines(live, object.merged.as_str());
        let unified = text
            .unified_diff()
            .context_radius(CONTEXT_LINES)
            .header(
                &format!("live/{}", object.path),
                &format!("merged/{}", object.path),
            )
            .to_string();
        for line in unified.lines() {
            let painted = match line.as_bytes().first() {
                _ if !colour => line.to_owned(),
                _ if line.starts_with("--- ") || line.starts_with("+++ ") => {
                    paint(line, Colour::Bold)
                }
                Some(b'@') => paint(line, Colour::Cyan),
                Some(b'-') => paint(line, Colour::Red),
                Some(b'+') => paint(line, Colour::Green),
                _ => line.to_owned(),
            };
            out.push_str(&painted);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(live: Option<&str>, merged: &str) -> ObjectDiff {
        ObjectDiff {
            path: "Deployment.default.hello".into(),
            live: live.map(str::to_owned),
            merged: merged.to_owned(),
        }
    }

    const LIVE: &str =
        "kind: Deployment\nmetadata:\n  name: hello\nspec:\n  replicas: 2\n  paused: false\n";

    #[test]
    fn prints_unified_diffs_of_changed_objects_only() {
        let changed = LIVE.replace("replicas: 2", "replicas: 3");
        let text = diff(
            &[object(Some(LIVE), LIVE), object(Some(LIVE), &changed)],
            false,
        );
        assert_eq!(
            text,
            "--- live/Deployment.default.hello\n\
             +++ merged/Deployment.default.hello\n\
             @@ -2,5 +2,5 @@\n \
             metadata:\n   \
             name: hello\n \
             spec:\n\
             -  replicas: 2\n\
             +  replicas: 3\n   \
             paused: false\n"
        );
        assert_eq!(diff(&[object(Some(LIVE), LIVE)], false), "");
    }

    #[test]
    fn a_new_object_is_all_added_lines() {
        let text = diff(
            &[object(None, "kind: Namespace\nmetadata:\n  name: a\n")],
            false,
        );
        assert_eq!(
            text,
            "--- live/Deployment.default.hello\n\
             +++ merged/Deployment.default.hello\n\
             @@ -0,0 +1,3 @@\n\
             +kind: Namespace\n\
             +metadata:\n\
             +  name: a\n"
        );
    }

    #[test]
    fn colour_marks_added_and_removed_lines() {
        let changed = LIVE.replace("replicas: 2", "replicas: 3");
        let text = diff(&[object(Some(LIVE), &changed)], true);
        assert!(text.contains("\x1b[31m-  replicas: 2\x1b[0m\n"), "{text:?}");
        assert!(text.contains("\x1b[32m+  replicas: 3\x1b[0m\n"), "{text:?}");
        assert!(
            text.contains("\x1b[36m@@ -2,5 +2,5 @@\x1b[0m\n"),
            "{text:?}"
        );
        assert!(
            text.contains("\x1b[1m--- live/Deployment.default.hello\x1b[0m\n"),
            "{text:?}"
        );
        assert!(text.contains("\n   name: hello\n"), "{text:?}");
    }
}
