//! What `berth new`, `build` and `deploy` print.

use std::fmt::Write as _;
use std::io::Write;

use crate::commands::build::{Built, World};
use crate::commands::deploy::{Deployed, Step};
use crate::commands::new::Created;
use crate::render::progress::ProgressLine;

/// `berth new`: what was made and what to do next.
pub fn created(created: &Created) -> String {
    let dir = created.dir.display();
    let mut out = format!(
        "Created {} project {:?} in {dir}\n",
        created.template.as_str(),
        created.name
    );
    for file in &created.files {
        let _ = writeln!(out, "  {file}");
    }
    let _ = write!(out, "Next:\n  cd {dir}\n  berth build\n  berth deploy\n");
    out
}

/// `berth build`: the component's path, digest and kind.
pub fn built(built: &Built) -> String {
    let world = match built.world {
        World::Http => "http service",
        World::Command => "command",
    };
    format!(
        "Built {} ({world}, {} bytes)\n  path:   {}\n  digest: {}\n",
        built.name,
        built.size,
        built.path.display(),
        built.digest
    )
}

/// One step of `berth deploy`, as it happens.
pub fn deploy_step<W: Write>(step: Step<'_>, progress: &mut ProgressLine<W>) {
    match step {
        Step::Applied(outcome) => progress.line(&crate::outcome_line(outcome)),
        Step::Unused {
            manifest,
            component,
        } => eprintln!(
            "Warning: {manifest} does not use the component just built ({})",
            component.display()
        ),
        Step::Progress(p) => progress.show(p),
    }
}

/// `berth deploy`'s last lines: where each Deployment answers.
pub fn deployed(deployed: &Deployed) -> String {
    let mut out = String::new();
    for endpoint in &deployed.endpoints {
        let _ = writeln!(
            out,
            "{}: {}\n  try: curl -H 'Host: {}' http://{}/",
            endpoint.name,
            endpoint.url(),
            endpoint.host,
            endpoint.ingress
        );
    }
    for name in &deployed.unreachable {
        let _ = writeln!(out, "{name}: no Ready node serves it yet");
    }
    for name in &deployed.jobs {
        let _ = writeln!(
            out,
            "{name}: finished; its output: berth get instances -l app={name}, then berth logs INSTANCE"
        );
    }
    out
}
