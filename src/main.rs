//! The `switchback` command line: a thin layer over the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchback::{check, config, ctl, demo, serve};

/// A blue/green and canary front-door HTTP proxy.
#[derive(Parser)]
#[command(name = "switchback", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// Path of the TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Take over the listeners of a running switchback (zero-downtime binary upgrade):
        /// start this, then send the old process SIGQUIT within 5 s.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a config file without binding anything; list every problem.
    Check {
        /// Path of the TOML config file.
        #[arg(long, short)]
        config: PathBuf,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match Cli::parse().command {
        Command::Check { config: path } => match config::load(&path) {
            Ok(valid) => match check::preflight(&path, &valid) {
                Ok(_) => {
                    println!("{}", check::summary(&valid));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            },
            Err(e) => fail(&e),
        },
        Command::Serve { config, upgrade } => match serve::run(&config, None, upgrade) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Command::Ctl(args) => match ctl::run(&args) {
            Ok(out) => {
                println!("{out}");
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
    eprintln!("error: {error}");
    ExitCode::FAILURE
}
