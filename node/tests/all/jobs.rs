//! Command components, a Job's runs: the real `job` guest (see
//! `sdk/examples/job`) prepared with `prepare_command` and run to
//! completion, its exit code becoming the outcome the node reports.

use std::path::Path;

use berth_api::Phase;
use berth_node::jobs::{CommandOutcome, run_to_completion};
use berth_node::logs::{LogQuery, LogStore};
use berth_node::runtime::{EngineOptions, InstanceConfig, RuntimeError, WasmRuntime};

use super::{config, digest_of, hello, shared};

fn job() -> &'static Path {
    Path::new(berth_test_programs::JOB)
}

async fn run_job(runtime: &WasmRuntime, config: InstanceConfig) -> CommandOutcome {
    let command = runtime
        .prepare_command(&digest_of(job()), job(), config)
        .await
        .unwrap();
    run_to_completion(&command).await
}

#[tokio::test]
async fn exit_zero_succeeds_and_output_lands_in_the_log() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();
    let logs = LogStore::new(data.path().join("logs")).unwrap();
    let outcome = run_job(
        &runtime,
        InstanceConfig {
            log: Some(logs.open("uid-1").unwrap()),
            ..config(&[("BERTH_INSTANCE", "report-x1"), ("WORK_MS", "20")])
        },
    )
    .await;
    assert_eq!(
        outcome,
        CommandOutcome {
            exit_code: Some(0),
            phase: Phase::Succeeded,
            reason: "Completed".into(),
            message: "exited with code 0".into(),
        }
    );

    let lines = logs.read("uid-1", &LogQuery::default()).unwrap().lines;
    let texts: Vec<&str> = lines
        .iter()
        .map(|line| line.split_once(' ').unwrap().1)
        .collect();
    assert_eq!(
        texts,
        [
            "stdout job started report-x1",
            "stderr working 20 ms, then exiting with 0",
            "stdout job done",
        ],
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_non_zero_exit_fails_with_its_code() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();
    let outcome = run_job(&runtime, config(&[("EXIT_CODE", "3")])).await;
    assert_eq!(
        outcome,
        CommandOutcome {
            exit_code: Some(3),
            phase: Phase::Failed,
            reason: "Error".into(),
            message: "exited with code 3".into(),
        }
    );
    let outcome = run_job(&runtime, config(&[("EXIT_CODE", "1")])).await;
    assert_eq!((outcome.exit_code, outcome.phase), (Some(1), Phase::Failed));
    // One compile for both runs, and for `prepare_command` and `prepare`
    // alike: the cache holds the linked component.
    assert_eq!(runtime.compiled_count(), 1);
}

#[tokio::test]
async fn each_run_is_a_fresh_instance() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();
    let command = runtime
        .prepare_command(&digest_of(job()), job(), config(&[("EXIT_CODE", "4")]))
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(command.run().await.unwrap(), 4);
    }
}

#[tokio::test]
async fn a_run_out_of_fuel_is_terminated() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::with_options(data.path(), EngineOptions { fuel: true }).unwrap();
    let outcome = run_job(
        &runtime,
        InstanceConfig {
            fuel: Some(1_000),
            ..config(&[])
        },
    )
    .await;
    assert_eq!(
        (outcome.exit_code, outcome.phase, outcome.reason.as_str()),
        (None, Phase::Failed, "FuelExhausted"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn http_and_command_components_are_not_interchangeable() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();

    let err = runtime
        .prepare_command(&digest_of(hello()), hello(), InstanceConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::NotACommandComponent { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "component {} exports wasi:http/incoming-handler: an HTTP component runs in a \
             Deployment, not a Job",
            digest_of(hello())
        )
    );

    // `(component)`: no exports at all.
    let empty = data.path().join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x0d\x00\x01\x00").unwrap();
    let err = runtime
        .prepare_command(&digest_of(&empty), &empty, InstanceConfig::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "component {} does not export wasi:cli/run",
            digest_of(&empty)
        )
    );

    let err = runtime
        .prepare(&digest_of(job()), job(), InstanceConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::NotAnHttpComponent { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "component {} does not export wasi:http/incoming-handler",
            digest_of(job())
        )
    );

    // Both still prepare as what they are, from the cache.
    assert!(
        runtime
            .prepare(&digest_of(hello()), hello(), InstanceConfig::default())
            .await
            .is_ok()
    );
    assert!(
        runtime
            .prepare_command(&digest_of(job()), job(), InstanceConfig::default())
            .await
            .is_ok()
    );
    assert_eq!(runtime.compiled_count(), 3);
}
