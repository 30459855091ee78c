//! CPU time per component, for profiling a running pipeline.
//!
//! Off by default: set `HPFLOW_COMPONENT_CPU=1` and every component's tasks
//! count the thread CPU time they spend being polled into their
//! [`ComponentMetrics`], shown as `hpflow_component_cpu_seconds_total`. Reading
//! a thread's CPU clock is a system call, two per poll of a task, which is why
//! it is not always on.
//!
//! A component's tasks are the one the topology spawns and every task or
//! blocking closure spawned while one of them is being polled, through
//! [`metered`] and [`metered_blocking`]: the Modbus source's link tasks, the
//! sinks' servers and their connections, the InfluxDB delivery. What no
//! component runs (the runtime's scheduler, the signal handlers) is the
//! difference between the process's CPU time and the sum.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use super::ComponentMetrics;

/// The environment variable that turns metering on (`1`, `true` or `yes`).
pub const ENV: &str = "HPFLOW_COMPONENT_CPU";

/// True when `HPFLOW_COMPONENT_CPU` asked for metering (read once).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var(ENV).is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
    })
}

thread_local! {
    /// The component whose task this thread is polling right now.
    static CURRENT: RefCell<Option<Arc<ComponentMetrics>>> = const { RefCell::new(None) };
}

/// CPU time this thread has used so far (benchmarks time with it too: it
/// leaves out the time other processes had the core).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec, and CLOCK_THREAD_CPUTIME_ID
    // is supported by every Linux kernel hpflow runs on.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f` with `meter` as the current component and adds the CPU it used.
fn charge<R>(meter: &Arc<ComponentMetrics>, f: impl FnOnce() -> R) -> R {
    let before = thread_cpu();
    let outer = CURRENT.with(|c| c.replace(Some(meter.clone())));
    let r = f();
    CURRENT.with(|c| *c.borrow_mut() = outer);
    let used = thread_cpu().saturating_sub(before);
    meter.cpu_nanos.fetch_add(used.as_nanos() as u64, Ordering::Relaxed);
    r
}

/// A future whose polls are charged to a component (or to nobody: then it is
/// the future alone).
pub struct Metered<F> {
    meter: Option<Arc<ComponentMetrics>>,
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        match &this.meter {
            Some(m) => charge(m, || this.inner.as_mut().poll(cx)),
            None => this.inner.as_mut().poll(cx),
        }
    }
}

/// Charges `fut`'s polls to `meter` when metering is on: the topology wraps
/// each component's task in this.
pub fn charged_to<F: Future>(meter: &Arc<ComponentMetrics>, fut: F) -> Metered<F> {
    Metered {
        meter: enabled().then(|| meter.clone()),
        inner: Box::pin(fut),
    }
}

/// Charges `fut`'s polls to the component whose task is spawning it: wrap what
/// a component hands to `tokio::spawn`.
pub fn metered<F: Future>(fut: F) -> Metered<F> {
    let meter = if enabled() {
        CURRENT.with(|c| c.borrow().clone())
    } else {
        None
    };
    Metered {
        meter,
        inner: Box::pin(fut),
    }
}

/// Charges a blocking closure to the component whose task is spawning it:
/// wrap what a component hands to `tokio::task::spawn_blocking`.
pub fn metered_blocking<R>(f: impl FnOnce() -> R) -> impl FnOnce() -> R {
    let meter = if enabled() {
        CURRENT.with(|c| c.borrow().clone())
    } else {
        None
    };
    move || match meter {
        Some(m) => charge(&m, f),
        None => f(),
    }
}

impl ComponentMetrics {
    /// CPU time charged to this component (zero unless metering is on).
    pub fn cpu(&self) -> Duration {
        Duration::from_nanos(self.cpu_nanos.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(d: Duration) {
        let start = thread_cpu();
        while thread_cpu() - start < d {
            std::hint::black_box(0u64);
        }
    }

    #[test]
    fn the_thread_clock_moves_with_work_not_with_sleep() {
        let a = thread_cpu();
        std::thread::sleep(Duration::from_millis(30));
        let b = thread_cpu();
        spin(Duration::from_millis(20));
        let c = thread_cpu();
        assert!(b - a < Duration::from_millis(10), "sleeping used {:?}", b - a);
        assert!(c - b >= Duration::from_millis(20), "spinning used {:?}", c - b);
    }

    #[test]
    fn work_is_charged_to_the_component_polling_and_to_what_it_spawns() {
        let m = Arc::new(ComponentMetrics::new("sink", "test"));
        let child_seen = charge(&m, || {
            spin(Duration::from_millis(5));
            // What a component spawns while polled inherits its meter.
            let child = CURRENT.with(|c| c.borrow().clone());
            child.is_some_and(|c| Arc::ptr_eq(&c, &m))
        });
        assert!(child_seen);
        assert!(m.cpu() >= Duration::from_millis(5), "charged {:?}", m.cpu());
        assert!(
            CURRENT.with(|c| c.borrow().is_none()),
            "the current component is restored"
        );
    }
}
