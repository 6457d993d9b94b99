//! An instance's lifecycle on the node with the real `hello` component:
//! probes served through a fresh instance, the probe runner deciding
//! readiness (and so routing) and restarts, and graceful stop (drain, then
//! cancel) through the ingress.
//!
//! The probe state machine and the runner's timing are tested next to them
//! (`node/src/probes.rs`), with paused time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_api::lifecycle::{ProbeHandler, ProbeSpec, Probes};
use berth_node::ingress::Routes;
use berth_node::probes::{self, ProbeEvent, ProbeKind, ProbeTransition};
use berth_node::runtime::{PreparedInstance, RuntimeError, Termination, WasmRuntime};
use http::StatusCode;

use super::{HELLO_HOST, Ingress, config, digest_of, hello, request, shared};

/// `hello` with `env`, in namespace `default` as deployment `hello`.
async fn prepare(runtime: &WasmRuntime, env: &[(&str, &str)]) -> PreparedInstance {
    runtime
        .prepare(&digest_of(hello()), hello(), config(env))
        .await
        .unwrap()
}

/// Waits (a few seconds at most) until `instance` has a request in flight.
async fn until_in_flight(instance: &PreparedInstance) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while instance.in_flight() == 0 {
        assert!(Instant::now() < deadline, "the request never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn probes_get_the_components_status_and_are_not_counted() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();
    let instance = prepare(&runtime, &[("UNHEALTHY", "yes")]).await;
    let second = Duration::from_secs(1);

    assert_eq!(
        instance.probe("/healthz", second).await.unwrap(),
        StatusCode::OK
    );
    assert_eq!(
        instance.probe("/status/500", second).await.unwrap(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        instance.probe("/health-env", second).await.unwrap(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let healthy = prepare(&runtime, &[]).await;
    assert_eq!(
        healthy.probe("/health-env", second).await.unwrap(),
        StatusCode::OK
    );

    // A probe that outlives its timeout is a deadline, not a hang.
    let began = Instant::now();
    let error = instance
        .probe("/sleep/5000", Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            RuntimeError::Terminated(Termination::DeadlineExceeded)
        ),
        "{error}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "{:?}",
        began.elapsed()
    );

    let stats = instance.stats();
    assert_eq!(stats.requests, 0, "probes are not requests: {stats:?}");
    assert_eq!(stats.failures(), 0, "nor failures: {stats:?}");
    assert_eq!(instance.in_flight(), 0);
}

#[tokio::test]
async fn only_ready_instances_receive_traffic() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();
    let routes = Arc::new(Routes::default());
    let ingress = Ingress::start(Arc::clone(&routes)).await;
    let instance = prepare(&runtime, &[("GREETING", "Hi"), ("BERTH_INSTANCE", "i-1")]).await;
    // An instance with a readiness probe starts not ready.
    routes.insert_with_readiness("default", "hello", "i-1", instance.clone(), false);

    // Its readiness probe fails: it stays out of routing.
    let status = instance
        .probe("/status/503", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(routes.pick("default", "hello").is_none());
    let (status, _) = ingress.get(Some(HELLO_HOST)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Its readiness probe passes: it is routed.
    let status = instance
        .probe("/healthz", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(routes.set_ready("i-1", status.is_success()));
    let (status, body) = ingress.get(Some(HELLO_HOST)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "Hi! (instance i-1)\n");

    // Not ready again: out again, though still on the node.
    routes.set_ready("i-1", false);
    let (status, _) = ingress.get(Some(HELLO_HOST)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(routes.len(), 1);
    ingress.stop().await;
}

#[tokio::test]
async fn drain_lets_requests_in_flight_finish_within_the_grace_period() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();
    let routes = Arc::new(Routes::default());
    let ingress = Ingress::start(Arc::clone(&routes)).await;
    let instance = prepare(&runtime, &[]).await;
    routes.insert("default", "hello", "i-1", instance.clone());

    let addr = ingress.addr;
    let slow = tokio::spawn(async move { request(addr, Some(HELLO_HOST), "/sleep/500").await });
    until_in_flight(&instance).await;
    let began = Instant::now();
    let left = routes.drain("i-1", Duration::from_secs(5)).await;
    assert_eq!(left, Some(0), "the request finished in time");
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "the drain waited for the request, not the grace period: {:?}",
        began.elapsed()
    );
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body.unwrap(), "slept 500 ms\n");
    assert_eq!(instance.in_flight(), 0);
    assert!(instance.is_cancelled());

    // Drained: new requests find no instance.
    let (status, _) = ingress.get(Some(HELLO_HOST)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    ingress.stop().await;
}

#[tokio::test]
async fn drain_cancels_requests_that_outlive_the_grace_period() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();
    let routes = Arc::new(Routes::default());
    let ingress = Ingress::start(Arc::clone(&routes)).await;
    let instance = prepare(&runtime, &[]).await;
    routes.insert("default", "hello", "i-1", instance.clone());

    let addr = ingress.addr;
    let began = Instant::now();
    let slow = tokio::spawn(async move { request(addr, Some(HELLO_HOST), "/sleep/5000").await });
    until_in_flight(&instance).await;
    let left = routes.drain("i-1", Duration::from_millis(100)).await;
    assert_eq!(left, Some(1), "the request was still running");
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    assert_eq!(
        reply.body.unwrap(),
        "instance stopped: request cancelled after its grace period\n"
    );
    assert!(
        reply.elapsed < Duration::from_secs(4) && began.elapsed() < Duration::from_secs(4),
        "cancelled, not waited for: {:?}",
        reply.elapsed
    );
    // Cancelled requests are not the component's failures.
    assert_eq!(instance.stats().failures(), 0, "{:?}", instance.stats());
    let deadline = Instant::now() + Duration::from_secs(5);
    while instance.in_flight() != 0 {
        assert!(
            Instant::now() < deadline,
            "the cancelled request is still counted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ingress.stop().await;
}

/// A probe of `path` every second, failing after `failures` in a row.
fn every_second(path: &str, failures: u32) -> ProbeSpec {
    ProbeSpec {
        handler: ProbeHandler::HttpGet,
        path: path.into(),
        port: None,
        initial_delay_seconds: 0,
        period_seconds: 1,
        timeout_seconds: 1,
        success_threshold: 1,
        failure_threshold: failures,
    }
}

/// Runs the probes of `instance` in the background, keeping its readiness
/// in `routes` and every event in the returned list, as the supervisor does.
fn probe_in_background(
    instance: &PreparedInstance,
    probes: Probes,
    routes: &Arc<Routes>,
    uid: &'static str,
) -> (
    tokio::task::JoinHandle<Option<probes::Restart>>,
    Arc<Mutex<Vec<ProbeEvent>>>,
) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let task = {
        let (instance, routes, events) =
            (instance.clone(), Arc::clone(routes), Arc::clone(&events));
        tokio::spawn(probes::run(instance, probes, move |event| {
            if let ProbeEvent::Transition(ProbeTransition::Ready { ready, .. }) = &event {
                routes.set_ready(uid, *ready);
            }
            events.lock().unwrap().push(event);
        }))
    };
    (task, events)
}

#[tokio::test]
async fn readiness_probes_decide_routing() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();
    let routes = Arc::new(Routes::default());
    let ingress = Ingress::start(Arc::clone(&routes)).await;

    // A readiness probe on a failing path: never routed.
    let failing = prepare(&runtime, &[]).await;
    let probes = Probes {
        readiness: Some(every_second("/status/503", 1)),
        ..Probes::default()
    };
    routes.insert_with_readiness(
        "default",
        "hello",
        "bad",
        failing.clone(),
        probes::initially_ready(&probes),
    );
    let (task, events) = probe_in_background(&failing, probes, &routes, "bad");
    let deadline = Instant::now() + Duration::from_secs(10);
    while events.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "no probe ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(routes.pick("default", "hello").is_none());
    assert_eq!(routes.is_ready("bad"), Some(false));
    let (status, _) = ingress.get(Some(HELLO_HOST)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(events.lock().unwrap().iter().all(|e| *e
        == ProbeEvent::Failed {
            kind: ProbeKind::Readiness,
            message: "Readiness probe failed: HTTP probe failed with statuscode: 503".into()
        }));
    task.abort();

    // A passing one: routed after its first probe.
    let passing = prepare(&runtime, &[("GREETING", "Hi"), ("BERTH_INSTANCE", "good")]).await;
    let probes = Probes {
        readiness: Some(every_second("/healthz", 3)),
        ..Probes::default()
    };
    routes.insert_with_readiness("default", "hello", "good", passing.clone(), false);
    let (task, events) = probe_in_background(&passing, probes, &routes, "good");
    let deadline = Instant::now() + Duration::from_secs(10);
    while routes.pick("default", "hello").is_none() {
        assert!(
            Instant::now() < deadline,
            "never ready: {:?}",
            events.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = ingress.get(Some(HELLO_HOST)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body, "Hi! (instance good)\n",
        "only the ready instance serves"
    );
    task.abort();
    ingress.stop().await;
}

#[tokio::test]
async fn failing_liveness_probe_decides_a_restart() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();
    let routes = Arc::new(Routes::default());
    let instance = prepare(&runtime, &[("UNHEALTHY", "yes")]).await;
    routes.insert("default", "hello", "sick", instance.clone());
    let probes = Probes {
        liveness: Some(every_second("/health-env", 2)),
        ..Probes::default()
    };
    let (task, events) = probe_in_background(&instance, probes, &routes, "sick");
    let restart = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("a restart within 20 s")
        .unwrap()
        .expect("a restart, not a cancellation");
    let message = "Liveness probe failed: HTTP probe failed with statuscode: 503";
    assert_eq!(restart.reason, probes::REASON_UNHEALTHY);
    assert_eq!(restart.message, message);
    let failed = ProbeEvent::Failed {
        kind: ProbeKind::Liveness,
        message: message.into(),
    };
    assert_eq!(
        *events.lock().unwrap(),
        [
            failed.clone(),
            failed,
            ProbeEvent::Transition(ProbeTransition::Restart(restart)),
        ]
    );
    // Liveness does not touch readiness: the instance was routed all along.
    assert_eq!(routes.is_ready("sick"), Some(true));
}
