//! The `switchback` command line: a thin layer over the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use switchback::{check, ctl, demo, serve};

/// `0.1.0 (3f2a9c1d0b7e)`: the package version and the commit built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("SWITCHBACK_COMMIT"),
    ")"
);

/// Exit status: the configuration is invalid.
const EXIT_INVALID: u8 = 1;
/// Exit status: valid configuration, but something it needs is unusable (a port, a file).
const EXIT_START: u8 = 3;

/// A blue/green and canary front-door HTTP proxy.
#[derive(Parser)]
#[command(name = "switchback", version = VERSION, about)]
struct Cli {
    /// Process log format on stderr: `text`, or `json` (one object per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SWITCHBACK_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// Path of the TOML config file.
        #[arg(long, short, env = "SWITCHBACK_CONFIG")]
        config: PathBuf,
        /// Take over the listeners of a running switchback (zero-downtime binary upgrade):
        /// start this, then send the old process SIGQUIT within 5 s.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a config file without binding anything; list every problem.
    Check {
        /// Path of the TOML config file.
        #[arg(long, short, env = "SWITCHBACK_CONFIG")]
        config: PathBuf,
        /// Print `{"ok", "summary", "problems", "warnings"}` on stdout instead.
        #[arg(long)]
        json: bool,
        /// With `[state] etcd`: reach the cluster, and report its members and the shared
        /// state's version (fails when it does not answer).
        #[arg(long)]
        connect: bool,
    },
    /// GET a URL and exit 0 on a 2xx answer (container health checks without curl).
    Probe {
        /// `http://host:port/path`, e.g. the `[proxy] health-path` or the admin `/healthz`.
        url: String,
        /// Give up after this long.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Print a shell completion script: `switchback completions bash > /etc/bash_completion.d/switchback`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Talk to a running proxy's admin API.
    Ctl(ctl::CtlArgs),
    /// Zero-setup showcase: blue and green demo upstreams behind the proxy on loopback.
    Demo {
        /// Proxy port.
        #[arg(long, default_value_t = 8080)]
        proxy_port: u16,
        /// Blue demo upstream port.
        #[arg(long, default_value_t = 9001)]
        blue_port: u16,
        /// Green demo upstream port.
        #[arg(long, default_value_t = 9002)]
        green_port: u16,
        /// Admin API port.
        #[arg(long, default_value_t = 9900)]
        admin_port: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => log.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => log.json().init(),
    }
    match cli.command {
        Command::Check {
            config: path,
            json,
            connect,
        } => {
            let (output, code) = check::run(&path, json, connect);
            match (code, json) {
                (0, _) | (_, true) => print_out(&output),
                _ => eprintln!("{output}"),
            }
            ExitCode::from(code)
        }
        Command::Serve { config, upgrade } => match serve::run(&config, None, upgrade) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e @ serve::ServeError::Config(_)) => fail_with(&e, EXIT_INVALID),
            Err(e) => fail_with(&e, EXIT_START),
        },
        Command::Probe { url, timeout } => match switchback::process::probe::probe(&url, timeout) {
            Ok(line) => {
                print_out(&line);
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "switchback",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Ctl(args) => match ctl::run(&args) {
            Ok(out) => {
                print_out(&out);
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Demo {
            proxy_port,
            blue_port,
            green_port,
            admin_port,
        } => {
            let ports = demo::DemoPorts {
                proxy: proxy_port,
                blue: blue_port,
                green: green_port,
                admin: admin_port,
            };
            match demo::run(ports) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
    }
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    fail_with(error, 1)
}

fn fail_with(error: &dyn std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(code)
}

/// Prints `text` and a line end to stdout. A reader that went away (`ctl status | grep -q`, `| head`)
/// is no error of ours: no panic on a broken pipe (`println!` panics), the rest is dropped.
fn print_out(text: &dyn std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}
