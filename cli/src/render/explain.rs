//! `berth explain`, laid out as `kubectl explain` lays it out: KIND,
//! VERSION, the FIELD asked about, its DESCRIPTION, then its FIELDS with
//! their types, each with its description indented below.

use std::fmt::Write as _;

use crate::commands::explain::{Explanation, Field};

/// Width descriptions are wrapped to, indent included.
const WIDTH: usize = 80;

/// The whole explanation.
pub fn explain(e: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "KIND:       {}", e.kind);
    let _ = writeln!(out, "VERSION:    {}", e.version);
    out.push('\n');
    if !e.path.is_empty() {
        let _ = writeln!(out, "FIELD: {} <{}>", e.field.name, e.field.type_name);
        out.push('\n');
    }
    out.push_str("DESCRIPTION:\n");
    let mut description = e.field.description.clone();
    if let Some(default) = &e.field.default {
        description.push_str(&format!("\n\nDefault: {default}"));
    }
    if description.is_empty() {
        description.push_str("<empty>");
    }
    wrap_into(&mut out, &description, 4);
    let values: Vec<String> = e
        .field
        .values
        .iter()
        .map(|(value, doc)| match doc.is_empty() {
            true => value.clone(),
            false => format!("{value}: {doc}"),
        })
        .collect();
    if !values.is_empty() {
        out.push_str("\nVALUES:\n");
        for value in &values {
            wrap_into(&mut out, value, 4);
        }
    }
    if !e.fields.is_empty() {
        out.push_str("\nFIELDS:\n");
        for (i, field) in e.fields.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            field_into(&mut out, field);
        }
    }
    out
}

/// `  name\t<type> -required-`, the enum values, the default, then the
/// description indented by four.
fn field_into(out: &mut String, field: &Field) {
    let required = if field.required { " -required-" } else { "" };
    let _ = writeln!(out, "  {}\t<{}>{required}", field.name, field.type_name);
    if !field.values.is_empty() {
        let names: Vec<&str> = field.values.iter().map(|(v, _)| v.as_str()).collect();
        let _ = writeln!(out, "  enum: {}", names.join(", "));
    }
    if let Some(default) = &field.default {
        let _ = writeln!(out, "  default: {default}");
    }
    if field.description.is_empty() {
        wrap_into(out, "<no description>", 4);
    } else {
        wrap_into(out, &field.description, 4);
    }
}

/// `text`'s paragraphs, wrapped at [`WIDTH`], each line indented.
fn wrap_into(out: &mut String, text: &str, indent: usize) {
    let pad = " ".repeat(indent);
    for (i, paragraph) in text.split("\n\n").enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && indent + line.len() + 1 + word.len() > WIDTH {
                let _ = writeln!(out, "{pad}{line}");
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            let _ = writeln!(out, "{pad}{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crate::commands::explain::explain as explain_target;

    #[test]
    fn a_field_shows_its_type_and_its_fields_with_their_docs() {
        let text = super::explain(&explain_target("deployment.spec.strategy").unwrap());
        assert!(text.starts_with("KIND:       Deployment\nVERSION:    berth.dev/v1\n"));
        assert!(
            text.contains("FIELD: strategy <DeploymentStrategy>\n"),
            "{text}"
        );
        assert!(
            text.contains("\n  rollingUpdate\t<RollingUpdate>\n    Limits of a rolling update.\n"),
            "{text}"
        );
        assert!(
            text.contains("\n  type\t<string>\n  enum: RollingUpdate, Recreate, Canary\n"),
            "{text}"
        );
    }

    #[test]
    fn long_descriptions_wrap_under_the_width() {
        let text = super::explain(&explain_target("deployment.spec.template.spec").unwrap());
        for line in text.lines() {
            // A single long word may overflow; none is that long here.
            assert!(line.len() <= super::WIDTH + 20, "{line}");
        }
    }
}
