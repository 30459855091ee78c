//! The `hpflow` command line: parses arguments, sets up logging, calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use hpflow::commands::EXIT_CONFIG;
use hpflow::config::load_pipeline;

#[derive(Parser)]
#[command(
    name = "hpflow",
    version,
    about = "Polls heat pumps over Modbus and delivers their values to InfluxDB, Prometheus and a live dashboard",
    after_help = "Examples:\n  hpflow run pipelines/heatpump.toml\n  hpflow validate pipelines/heatpump.toml\n  hpflow simulate --listen 127.0.0.1:5020\n  hpflow read --host 127.0.0.1 --port 5020 --model stiebel_eltron_wpm\n\nDocumentation: README.md (pipeline format, every component's keys)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "HPFLOW_LOG_FORMAT")]
    log_format: LogFormat,

    /// Log level or filter (e.g. `info`, `debug`, `hpflow=debug,warn`); RUST_LOG wins when set.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline until SIGINT or SIGTERM, then drain and flush every sink.
    #[command(
        after_help = "Example:\n  hpflow run pipelines/heatpump.toml\n  HPFLOW_DATA_DIR=/var/lib/hpflow hpflow --log-format json run /etc/hpflow/heatpump.toml"
    )]
    Run {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
    },
    /// Check a pipeline and everything it references; print every problem at once.
    ///
    /// Exits 0 when the pipeline is valid, 78 on configuration errors.
    #[command(after_help = "Example:\n  hpflow validate pipelines/heatpump.toml && echo ok")]
    Validate {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
    },
    /// Serve a simulated Stiebel Eltron WPM heat pump over Modbus TCP or RTU.
    #[command(
        after_help = "Examples:\n  hpflow simulate --listen 127.0.0.1:5020\n  hpflow simulate --listen 127.0.0.1:0 --devices 2 --truth /tmp/truth.json\n  hpflow simulate --pty --exception-rate 0.05"
    )]
    Simulate(hpflow::commands::SimulateArgs),
    /// Poll one device once and print its decoded values (commissioning).
    #[command(
        after_help = "Examples:\n  hpflow read --host 192.0.2.10 --model stiebel_eltron_wpm\n  hpflow read --host 127.0.0.1 --port 5020 --model stiebel_eltron_wpm --json\n  hpflow read --host 127.0.0.1 --port 5020 --model stiebel_eltron_wpm --plan"
    )]
    Read(hpflow::commands::ReadArgs),
    /// Start two simulated heat pumps in-process and run the demo pipeline against them.
    #[command(
        after_help = "Examples:\n  hpflow demo\n  INFLUXDB_URL=http://127.0.0.1:8086 INFLUXDB_DATABASE=hpflow hpflow demo"
    )]
    Demo(hpflow::commands::DemoArgs),
    /// Exit 0 when a running hpflow answers (for container HEALTHCHECKs), 1 when not.
    #[command(
        after_help = "Examples:\n  hpflow healthcheck\n  hpflow healthcheck http://127.0.0.1:8080/ --timeout 2s"
    )]
    Healthcheck(hpflow::commands::HealthcheckArgs),
    /// Turn an HPManager config folder into an hpflow pipeline and config files.
    #[command(
        after_help = "Examples:\n  hpflow import /opt/hpmanager/config\n  hpflow import ../hpmanager/config -o pipelines/imported.toml"
    )]
    Import(hpflow::commands::ImportArgs),
    /// Find which register addresses a device answers.
    #[command(after_help = "Example:\n  hpflow scan --host 127.0.0.1 --port 5020 --type input --range 500-3800")]
    Scan(hpflow::commands::ScanArgs),
}

/// glibc gives threads that allocate their own heap arenas (up to 8 per core)
/// and keeps freed memory in each: with tokio's workers and blocking threads a
/// heap of tens of MiB spread over a dozen arenas, and RSS grew by a fifth
/// (pipeline_poll at 1,000 devices). Two arenas serve the two busy kinds of
/// thread. `MALLOC_ARENA_MAX` in the environment still decides when set.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: sets one parameter of glibc's allocator, before any other
        // thread exists; mallopt has no other effect.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log_level);
    if let Command::Validate { pipeline } = &cli.command {
        return validate(pipeline);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Validate { .. } => return ExitCode::SUCCESS,
        Command::Run { pipeline } => return rt.block_on(hpflow::commands::run::run(&pipeline)),
        Command::Simulate(args) => rt.block_on(hpflow::commands::simulate::run(args)),
        Command::Demo(args) => rt.block_on(hpflow::commands::demo::run(args)),
        Command::Healthcheck(args) => rt.block_on(hpflow::commands::healthcheck::run(args)),
        Command::Import(args) => rt.block_on(hpflow::commands::import::run(args)),
        Command::Read(args) => rt.block_on(hpflow::commands::read::run(args)),
        Command::Scan(args) => rt.block_on(hpflow::commands::scan::run(args)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn validate(path: &std::path::Path) -> ExitCode {
    match load_pipeline(path) {
        Ok((pipeline, warnings)) => {
            eprint!("{warnings}");
            println!("{}: valid: {}", path.display(), pipeline.summary());
            ExitCode::SUCCESS
        }
        Err(diags) => {
            eprint!("{diags}");
            let n = diags.errors().count();
            eprintln!("{}: {n} error{}", path.display(), if n == 1 { "" } else { "s" });
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
