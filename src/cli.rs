//! Command-line interface. Every flag has a `WEIR_…` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Weir: a streaming SQL database for sensor and event data.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive list).
    #[arg(long, global = true, env = "WEIR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
}

/// Flags of `weir serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to accept PostgreSQL clients on.
    #[arg(long, env = "WEIR_LISTEN", default_value = "127.0.0.1:5488")]
    pub listen: SocketAddr,
    /// Directory for Weir's data (catalog and checkpoints, as durable state lands).
    #[arg(long, env = "WEIR_DATA_DIR", default_value = "weir-data")]
    pub data_dir: PathBuf,
    /// Do not run the demo script (examples/quickstart.sql) at start.
    #[arg(long, env = "WEIR_NO_DEMO")]
    pub no_demo: bool,
    /// SQL script run at start when the catalog is empty (default: the built-in quickstart).
    #[arg(long, env = "WEIR_DEMO_SCRIPT")]
    pub demo_script: Option<PathBuf>,
}

impl Cli {
    /// The serve flags, from `weir serve …` or plain `weir …`.
    pub fn serve_options(&self) -> ServeArgs {
        match &self.command {
            Some(Command::Serve(args)) => args.clone(),
            None => self.serve.clone(),
        }
    }
}
