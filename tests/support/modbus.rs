//! Shared pieces of the Modbus integration tests: an in-process Modbus TCP
//! device whose answers a test scripts, and a harness that runs a source alone.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hpflow::commands::read::ReadArgs;
use hpflow::commands::{ParityArg, TargetArgs};
use hpflow::component::{Output, Source, SourceContext};
use hpflow::event::{Event, Metric};
use hpflow::telemetry::{ComponentMetrics, HealthRegistry, Registry};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_serial::SerialPortBuilderExt;
use tokio_util::sync::CancellationToken;

/// A read as the device saw it: (function code, start, count).
pub type Seen = (u8, u16, u16);

type Rule = Box<dyn Fn(u8, u16, u16) -> Option<ExceptionCode> + Send + Sync>;

/// A scripted Modbus device: words by (function code, address), a rule that
/// refuses reads, a number of "busy" answers to give first, and a log.
pub struct FakeDevice {
    pub words: Mutex<HashMap<(u8, u16), u16>>,
    pub bits: Mutex<HashMap<(u8, u16), bool>>,
    pub rule: Mutex<Option<Rule>>,
    pub busy_first: AtomicU32,
    /// Register reads of this function code are answered one word short.
    pub short_fc: AtomicU32,
    /// Every Nth request (0: none) is answered this many milliseconds late.
    pub late_every: AtomicU32,
    pub late_ms: AtomicU32,
    pub requests: AtomicU32,
    pub log: Mutex<Vec<Seen>>,
}

impl FakeDevice {
    pub fn new() -> Arc<FakeDevice> {
        Arc::new(FakeDevice {
            words: Mutex::new(HashMap::new()),
            bits: Mutex::new(HashMap::new()),
            rule: Mutex::new(None),
            busy_first: AtomicU32::new(0),
            short_fc: AtomicU32::new(0),
            late_every: AtomicU32::new(0),
            late_ms: AtomicU32::new(0),
            requests: AtomicU32::new(0),
            log: Mutex::new(Vec::new()),
        })
    }

    /// Sets words from `start` for function code `fc` (3 holding, 4 input).
    pub fn set(&self, fc: u8, start: u16, words: &[u16]) {
        let mut m = self.words.lock().unwrap();
        for (i, w) in words.iter().enumerate() {
            m.insert((fc, start + i as u16), *w);
        }
    }

    pub fn set_bit(&self, fc: u8, address: u16, bit: bool) {
        self.bits.lock().unwrap().insert((fc, address), bit);
    }

    pub fn refuse(&self, rule: impl Fn(u8, u16, u16) -> Option<ExceptionCode> + Send + Sync + 'static) {
        *self.rule.lock().unwrap() = Some(Box::new(rule));
    }

    pub fn take_log(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    fn answer(&self, req: &Request<'_>) -> Result<Response, ExceptionCode> {
        let (fc, start, count) = match req {
            Request::ReadCoils(a, n) => (1, *a, *n),
            Request::ReadDiscreteInputs(a, n) => (2, *a, *n),
            Request::ReadHoldingRegisters(a, n) => (3, *a, *n),
            Request::ReadInputRegisters(a, n) => (4, *a, *n),
            _ => return Err(ExceptionCode::IllegalFunction),
        };
        self.log.lock().unwrap().push((fc, start, count));
        if self
            .busy_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(ExceptionCode::ServerDeviceBusy);
        }
        if let Some(rule) = self.rule.lock().unwrap().as_ref() {
            if let Some(e) = rule(fc, start, count) {
                return Err(e);
            }
        }
        if fc <= 2 {
            let bits = self.bits.lock().unwrap();
            let v: Vec<bool> = (0..count)
                .map(|i| bits.get(&(fc, start + i)).copied().unwrap_or(false))
                .collect();
            return Ok(if fc == 1 {
                Response::ReadCoils(v)
            } else {
                Response::ReadDiscreteInputs(v)
            });
        }
        let words = self.words.lock().unwrap();
        let short = u16::from(self.short_fc.load(Ordering::SeqCst) == u32::from(fc));
        let v: Vec<u16> = (0..count.saturating_sub(short))
            .map(|i| words.get(&(fc, start + i)).copied().unwrap_or(0))
            .collect();
        Ok(if fc == 3 {
            Response::ReadHoldingRegisters(v)
        } else {
            Response::ReadInputRegisters(v)
        })
    }
}

#[derive(Clone)]
struct Svc(Arc<FakeDevice>);

impl Service for Svc {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Result<Response, ExceptionCode>> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let r = self.0.answer(&req.request);
        let n = self.0.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let every = self.0.late_every.load(Ordering::SeqCst);
        let late = (every > 0 && n.is_multiple_of(every))
            .then(|| Duration::from_millis(u64::from(self.0.late_ms.load(Ordering::SeqCst))));
        Box::pin(async move {
            if let Some(d) = late {
                tokio::time::sleep(d).await;
            }
            r
        })
    }
}

/// A server task that stops when dropped.
pub struct Served {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `device` on `listener` with tokio-modbus' TCP server.
pub fn serve(device: Arc<FakeDevice>, listener: TcpListener) -> Served {
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let server = tokio_modbus::server::tcp::Server::new(listener);
        let on_connected = move |stream: TcpStream, _: SocketAddr| {
            let svc = Svc(device.clone());
            async move { Ok(Some((svc, stream))) }
        };
        let _ = server.serve(&on_connected, |_| {}).await;
    });
    Served { addr, task }
}

/// Serves `device` as Modbus RTU on the serial port (a pty) at `path`.
pub fn serve_fake_rtu(device: Arc<FakeDevice>, path: &Path) -> JoinHandle<()> {
    let port = tokio_serial::new(path.to_string_lossy(), 19200)
        .open_native_async()
        .expect("the pty opens");
    tokio::spawn(async move {
        let server = tokio_modbus::server::rtu::Server::new(port);
        let _ = server.serve_forever(Svc(device)).await;
    })
}

pub async fn serve_fake(device: Arc<FakeDevice>) -> Served {
    serve(device, TcpListener::bind("127.0.0.1:0").await.unwrap())
}

/// A port with nothing listening: bound, then released.
pub async fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// Accepts connections and never answers a byte.
pub async fn black_hole() -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    Served { addr, task }
}

/// A source running alone, its events in `rx`.
pub struct Running {
    pub rx: mpsc::Receiver<Event>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
    /// Where the source counts its devices' health.
    pub telemetry: Arc<Registry>,
}

impl Running {
    /// The running source's device health.
    pub fn devices(&self) -> &HealthRegistry {
        self.telemetry.devices()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }

    /// The next metric, or a panic naming what was awaited.
    pub async fn next(&mut self, within: Duration, what: &str) -> Metric {
        loop {
            match tokio::time::timeout(within, self.rx.recv()).await {
                Ok(Some(Event::Metric(m))) => return (*m).clone(),
                Ok(Some(_)) => continue,
                Ok(None) => panic!("source stopped while waiting for {what}"),
                Err(_) => panic!("no event within {within:?} while waiting for {what}"),
            }
        }
    }
}

/// Runs a built source with a detached output.
pub fn run(id: &str, source: Box<dyn Source>, telemetry: Arc<Registry>) -> Running {
    let metrics = Arc::new(ComponentMetrics::new("source", "modbus"));
    let (out, rx) = Output::detached(metrics.clone());
    let shutdown = CancellationToken::new();
    let cx = SourceContext {
        id: id.into(),
        out,
        shutdown: shutdown.clone(),
        metrics,
    };
    let task = tokio::spawn(async move {
        let _ = source.run(cx).await;
    });
    Running {
        rx,
        shutdown,
        task,
        telemetry,
    }
}

/// A `modbus_tcp` source from TOML (paths relative to `dir`), running.
pub fn run_tcp(id: &str, dir: &Path, toml_text: &str) -> Running {
    let cfg: hpflow::sources::modbus::ModbusTcpConfig = toml::from_str(toml_text).expect("valid modbus_tcp config");
    let source = cfg.build_source(dir).expect("source builds");
    let telemetry = source.telemetry();
    run(id, Box::new(source), telemetry)
}

/// A `modbus_rtu` source from TOML, running.
pub fn run_rtu(id: &str, dir: &Path, toml_text: &str) -> Running {
    let cfg: hpflow::sources::modbus::ModbusRtuConfig = toml::from_str(toml_text).expect("valid modbus_rtu config");
    let source = cfg.build_source(dir).expect("source builds");
    let telemetry = source.telemetry();
    run(id, Box::new(source), telemetry)
}

/// Writes a register map into `dir` and returns its file name.
pub fn write_map(dir: &Path, yaml: &str) -> &'static str {
    std::fs::write(dir.join("map.yml"), yaml).unwrap();
    "map.yml"
}

/// `hpflow read --json` of device `id`, a WPM at `unit` on loopback `port`
/// (`registers`: another map than the built-in one).
pub fn read_args(port: u16, unit: u8, registers: Option<PathBuf>, id: &str) -> ReadArgs {
    ReadArgs {
        target: TargetArgs {
            host: Some("127.0.0.1".into()),
            port,
            serial: None,
            baud: 9600,
            parity: ParityArg::None,
            data_bits: 8,
            stop_bits: 1,
            unit_id: unit,
            timeout: Duration::from_secs(2),
        },
        model: "stiebel_eltron_wpm".into(),
        registers,
        id: id.into(),
        json: true,
        plan: false,
        max_registers: None,
        max_gap: None,
    }
}
