//! Cost of the dashboard's overview page: 10 pumps of the shipped Stiebel
//! Eltron model with 24 hours of 10-second polls of every field, rendered
//! through the router (`oneshot`, no socket: the page, not the network) by
//! 16 concurrent clients on a runtime of 2 worker threads. Prints requests per
//! second, median and p99 latency, the page size and the memory the history
//! takes (resident set before and after feeding it).
//!
//! Two runs: with the wall clock (each card is rendered once a second and
//! pump, then served from the card cache: the real load), and with a clock
//! that moves a second on every request, so every request renders every card
//! from scratch (the worst case). Requests per second are also derived from
//! the CPU time used, as the machine may be busy with other work.
//!
//! `cargo bench --bench dashboard_overview`. Targets: ≥ 2,000 req/s, p99 < 20 ms.
//! `HPFLOW_BENCH_SCENARIO=wall` or `=fresh` runs one of the two alone (to profile it).

#[path = "../tests/support/dashboard.rs"]
mod fixture;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

const CLIENTS: usize = 16;
const WARM_UP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

struct Run {
    requests: usize,
    latencies: Vec<Duration>,
    size: usize,
    cpu: Option<f64>,
}

fn run(app: Arc<hpflow::sinks::dashboard::App>) -> Run {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let router = hpflow::sinks::dashboard::router(app);
    rt.block_on(async move {
        let one = |router: axum::Router| async move {
            let res = router
                .oneshot(
                    Request::get("/")
                        .header("host", "localhost")
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert!(res.status().is_success());
            axum::body::to_bytes(res.into_body(), 1 << 22).await.unwrap().len()
        };
        let size = one(router.clone()).await;
        let measure_from = Instant::now() + WARM_UP;
        let end = measure_from + MEASURE;
        // On a thread of its own: the clients keep both workers busy.
        let cpu_probe = std::thread::spawn(move || {
            std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
            let a = cpu_seconds();
            std::thread::sleep(MEASURE);
            a.zip(cpu_seconds()).map(|(a, b)| b - a)
        });
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let router = router.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let t = Instant::now();
                    if t >= end {
                        break;
                    }
                    one(router.clone()).await;
                    if t >= measure_from {
                        lat.push(t.elapsed());
                    }
                    // Rendering never waits, so let the other clients have a turn.
                    tokio::task::yield_now().await;
                }
                lat
            }));
        }
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.unwrap());
        }
        latencies.sort();
        Run {
            requests: latencies.len(),
            latencies,
            size,
            cpu: cpu_probe.join().unwrap(),
        }
    })
}

fn report(what: &str, r: &Run) {
    let l = &r.latencies;
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "{what}: overview of 10 pumps ({} bytes): {:.0} req/s on 2 worker threads ({CLIENTS} clients); \
         latency median {:.2} ms, p99 {:.2} ms",
        r.size,
        r.requests as f64 / MEASURE.as_secs_f64(),
        pct(0.5),
        pct(0.99),
    );
    if let Some(cpu) = r.cpu {
        let per = cpu / r.requests as f64;
        println!(
            "{what}: {:.3} ms of CPU a request, so {:.0} req/s on 2 cores of its own (load average {})",
            per * 1e3,
            2.0 / per,
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .next()
                .unwrap_or("?")
        );
    }
}

fn main() {
    let scenario = std::env::var("HPFLOW_BENCH_SCENARIO").unwrap_or_default();
    let before = rss_kib();
    let started = Instant::now();
    let now = SystemTime::now();
    // The data ends now; the first run reads the wall clock.
    let fx = fixture::fixture(10, 24, true, now, Arc::new(SystemTime::now));
    let built = started.elapsed();
    if let (Some(b), Some(a)) = (before, rss_kib()) {
        println!(
            "history of 10 pumps × {} fields × 24 h: built in {:.1} s, resident memory +{:.1} MB",
            fixture::wpm().fields.len(),
            built.as_secs_f64(),
            (a.saturating_sub(b)) as f64 / 1024.0
        );
    }
    if scenario != "fresh" {
        report("wall clock", &run(fx.app.clone()));
    }
    drop(fx);
    if scenario == "wall" {
        return;
    }

    let tick = Arc::new(AtomicU64::new(0));
    let clock = Arc::new(move || now + Duration::from_secs(tick.fetch_add(1, Ordering::Relaxed) % 20));
    let fx = fixture::fixture(10, 24, true, now, clock);
    report("every card rendered", &run(fx.app.clone()));
}
