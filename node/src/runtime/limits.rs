//! Hard per-request limits and how a request that hit one is classified.
//!
//! Every request runs in a store of its own, bounded four ways: a deadline
//! (checked at each tick of the engine's epoch, [`EPOCH_TICK`], and by a
//! wall-clock timer while the guest waits on the host), a bounded wasm stack
//! ([`MAX_WASM_STACK`]), linear-memory and table limits (an
//! [`InstanceLimiter`] that remembers a refused grow) and, where the engine
//! enables it, fuel. [`classify`] turns the error of a request that ended
//! early into a [`Termination`]; see `docs/decisions/0015-request-limits.md`.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter, StoreLimits, StoreLimitsBuilder, Trap};

/// How often the engine's epoch advances. Each tick, a request's store
/// checks its deadline and, if time is left, yields its thread to other
/// tasks: a guest that computes without pause shares its thread in slices of
/// at most this long, and a deadline is enforced this late at most.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The wasm stack one request may use; deeper recursion traps with
/// [`Termination::StackOverflow`]. wasmtime's default, stated here so that
/// it is a decision: it must stay well below the async fiber stack
/// (wasmtime's default 2 MiB), whose rest is left to host calls.
pub const MAX_WASM_STACK: usize = 512 * 1024;

/// Most elements any one table of an instance may grow to. A table element
/// costs the host a pointer or two; compiled toolchains (Rust, C, Python,
/// JavaScript engines) need tens of thousands at most.
pub const TABLE_ELEMENTS_LIMIT: usize = 100_000;

/// The per-request deadline when a Deployment sets no `timeoutSeconds`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Longer request timeouts are cut to this (validation allows an hour).
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// Why the node stopped an instance before it finished a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Termination {
    /// The request ran past its deadline (`timeoutSeconds`), computing or waiting.
    DeadlineExceeded,
    /// A linear-memory grow past the instance's limit was refused, and the
    /// guest then trapped (a Rust guest aborts when an allocation fails).
    MemoryLimitExceeded,
    /// A table grow past [`TABLE_ELEMENTS_LIMIT`] was refused, and the guest
    /// then trapped.
    TableLimitExceeded,
    /// The wasm stack outgrew [`MAX_WASM_STACK`].
    StackOverflow,
    /// The request used up its fuel (`InstanceConfig::fuel`).
    FuelExhausted,
    /// Any other trap (a guest panic is `unreachable`), or a failed host
    /// call, with wasmtime's message.
    Trap(String),
}

impl Termination {
    /// The reason as one word, for status reports (`DeadlineExceeded`, `Trap`).
    pub fn reason(&self) -> &'static str {
        match self {
            Termination::DeadlineExceeded => "DeadlineExceeded",
            Termination::MemoryLimitExceeded => "MemoryLimitExceeded",
            Termination::TableLimitExceeded => "TableLimitExceeded",
            Termination::StackOverflow => "StackOverflow",
            Termination::FuelExhausted => "FuelExhausted",
            Termination::Trap(_) => "Trap",
        }
    }
}

impl std::fmt::Display for Termination {
    /// The reason, and for a trap its message: `Trap: wasm trap: ...`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Termination::Trap(message) => write!(f, "Trap: {message}"),
            other => f.write_str(other.reason()),
        }
    }
}

/// Classifies the error that ended a request early. An epoch interrupt is
/// only ever raised for a passed deadline.
pub(crate) fn classify(error: &wasmtime::Error, limiter: &InstanceLimiter) -> Termination {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Termination::DeadlineExceeded,
        Some(Trap::StackOverflow) => Termination::StackOverflow,
        Some(Trap::OutOfFuel) => Termination::FuelExhausted,
        _ if limiter.memory_refused => Termination::MemoryLimitExceeded,
        _ if limiter.table_refused => Termination::TableLimitExceeded,
        Some(trap) => Termination::Trap(trap.to_string()),
        None => Termination::Trap(error.root_cause().to_string()),
    }
}

/// Whether an error is a trap or a refused limit, rather than some other
/// failure (for instantiation, which fails for other reasons too).
pub(crate) fn is_limit_or_trap(error: &wasmtime::Error, limiter: &InstanceLimiter) -> bool {
    error.is::<Trap>() || limiter.memory_refused || limiter.table_refused
}

/// A request store's memory and table limits, remembering whether a grow
/// was refused so that the trap that follows can be named.
pub(crate) struct InstanceLimiter {
    limits: StoreLimits,
    memory_refused: bool,
    table_refused: bool,
}

impl InstanceLimiter {
    /// Limits each linear memory to `memory_bytes` (`None`: the wasm32
    /// maximum of 4 GiB) and each table to [`TABLE_ELEMENTS_LIMIT`].
    pub(crate) fn new(memory_bytes: Option<u64>) -> Self {
        let mut limits = StoreLimitsBuilder::new().table_elements(TABLE_ELEMENTS_LIMIT);
        if let Some(limit) = memory_bytes {
            limits = limits.memory_size(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        Self {
            limits: limits.build(),
            memory_refused: false,
            table_refused: false,
        }
    }
}

impl ResourceLimiter for InstanceLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        self.memory_refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.table_growing(current, desired, maximum)?;
        self.table_refused |= !allowed;
        Ok(allowed)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// The thread advancing an engine's epoch every [`EPOCH_TICK`]. It stops
/// when this is dropped: the runtime and every prepared instance hold it,
/// so it ticks as long as anything can run a request.
pub(crate) struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the ticker thread. A thread, not a task: it must tick even
    /// when every worker of the async runtime is busy running guests.
    pub(crate) fn start(engine: Engine) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("berth-epoch".to_owned())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        // Disconnecting wakes the thread at once.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn termination_reads_as_its_reason() {
        assert_eq!(
            Termination::DeadlineExceeded.to_string(),
            "DeadlineExceeded"
        );
        let trap = Termination::Trap("wasm trap: wasm `unreachable` instruction executed".into());
        assert_eq!(trap.reason(), "Trap");
        assert_eq!(
            trap.to_string(),
            "Trap: wasm trap: wasm `unreachable` instruction executed"
        );
    }

    #[test]
    fn limiter_remembers_a_refused_grow() {
        let mut limiter = InstanceLimiter::new(Some(1 << 20));
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!limiter.memory_refused);
        assert!(!limiter.memory_growing(1 << 20, 2 << 20, None).unwrap());
        assert!(limiter.memory_refused);

        assert!(
            limiter
                .table_growing(0, TABLE_ELEMENTS_LIMIT, None)
                .unwrap()
        );
        assert!(!limiter.table_refused);
        assert!(
            !limiter
                .table_growing(0, TABLE_ELEMENTS_LIMIT + 1, None)
                .unwrap()
        );
        assert!(limiter.table_refused);
    }

    #[test]
    fn classify_names_traps_and_refusals() {
        let limiter = InstanceLimiter::new(None);
        let classify_trap =
            |trap: Trap, limiter: &InstanceLimiter| classify(&wasmtime::Error::from(trap), limiter);
        assert_eq!(
            classify_trap(Trap::Interrupt, &limiter),
            Termination::DeadlineExceeded
        );
        assert_eq!(
            classify_trap(Trap::StackOverflow, &limiter),
            Termination::StackOverflow
        );
        assert_eq!(
            classify_trap(Trap::OutOfFuel, &limiter),
            Termination::FuelExhausted
        );
        assert!(matches!(
            classify_trap(Trap::UnreachableCodeReached, &limiter),
            Termination::Trap(message) if message.contains("unreachable")
        ));

        let mut refused = InstanceLimiter::new(Some(0));
        assert!(!refused.memory_growing(0, 1 << 16, None).unwrap());
        assert_eq!(
            classify_trap(Trap::UnreachableCodeReached, &refused),
            Termination::MemoryLimitExceeded
        );
        // A deadline is a deadline even after a refused grow.
        assert_eq!(
            classify_trap(Trap::Interrupt, &refused),
            Termination::DeadlineExceeded
        );
    }

    #[test]
    fn ticker_stops_when_dropped() {
        let engine = Engine::default();
        let ticker = EpochTicker::start(engine).unwrap();
        std::thread::sleep(EPOCH_TICK * 2);
        drop(ticker);
    }
}

/// Guests that have computed for a whole epoch tick (10 ms) without
/// finishing, allowed to go on at once in this process: every CPU of the
/// machine but one (at least one). A request that runs past one tick takes
/// a slot for the rest of its life, waiting (without running) if none is
/// free, so that spinning or CPU-heavy guests leave a CPU to short
/// requests: a neighbour's request then runs at once instead of waiting for
/// the kernel to preempt a spinning guest. Short requests never take a slot.
static LONG_RUNNING: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        std::sync::Arc::new(tokio::sync::Semaphore::new(cpus.saturating_sub(1).max(1)))
    });

/// The long-running slot of one request, once it has one; released when
/// the request's store is dropped.
#[derive(Clone)]
pub(crate) struct CpuSlot {
    permit: std::sync::Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>,
    /// Epoch ticks the guest was running at.
    ticks: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// The slots it takes from: the process's.
    slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Default for CpuSlot {
    fn default() -> Self {
        CpuSlot::from(std::sync::Arc::clone(&LONG_RUNNING))
    }
}

impl CpuSlot {
    fn from(slots: std::sync::Arc<tokio::sync::Semaphore>) -> CpuSlot {
        CpuSlot {
            permit: std::sync::Arc::default(),
            ticks: std::sync::Arc::default(),
            slots,
        }
    }

    /// What a guest does at each epoch tick it is running at. At its
    /// first tick (a short request that merely straddles one): let other
    /// tasks run and go on. From its second tick on (it has run a whole
    /// tick): give back the slot it holds, if any, and queue for one
    /// (first come, first served), so that long guests share the slots in
    /// turns of one tick instead of the first ones keeping them until
    /// their deadline.
    pub(crate) fn after_tick(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let first = self
            .ticks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            == 0;
        if first {
            return Box::pin(tokio::task::yield_now());
        }
        drop(
            self.permit
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
        let slot = self.permit.clone();
        let slots = std::sync::Arc::clone(&self.slots);
        Box::pin(async move {
            if let Ok(permit) = slots.acquire_owned().await {
                *slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(permit);
            }
        })
    }
}

#[cfg(test)]
mod cpu_slot_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::CpuSlot;

    #[tokio::test]
    async fn only_guests_past_one_tick_take_a_slot_and_wait_when_none_is_free() {
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let long = CpuSlot::from(Arc::clone(&slots));
        long.after_tick().await; // straddled one tick: no slot
        assert_eq!(slots.available_permits(), 1);
        long.after_tick().await; // ran a whole tick: takes the slot
        assert_eq!(slots.available_permits(), 0);
        long.after_tick().await; // gives it back and, nobody waiting, takes it again
        assert_eq!(slots.available_permits(), 0);
        let other = CpuSlot::from(Arc::clone(&slots));
        other.after_tick().await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), other.after_tick()).await;
        assert!(
            waiting.is_err(),
            "no slot free: the second long guest waits"
        );
        // Queued first, `other` gets the slot when `long` next ticks; `long`
        // then waits for its turn.
        let queued = tokio::spawn({
            let other = other.clone();
            async move { other.after_tick().await }
        });
        tokio::task::yield_now().await;
        let turn = tokio::spawn({
            let long = long.clone();
            async move { long.after_tick().await }
        });
        tokio::time::timeout(Duration::from_secs(5), queued)
            .await
            .expect("the waiting guest gets its turn")
            .unwrap();
        assert!(
            !turn.is_finished(),
            "the long guest waits for its next turn"
        );
        drop(other); // the second request ends: its store and slot go
        tokio::time::timeout(Duration::from_secs(5), turn)
            .await
            .expect("the slot comes back")
            .unwrap();
        assert_eq!(slots.available_permits(), 0);
    }
}
