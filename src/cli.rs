//! Command-line interface. Every flag has a `WEIR_…` environment variable, and every flag of
//! `weir serve` a key in the `--config` file ([`crate::config`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

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
    /// Settings file (TOML): every serve flag as a key of the same name (`data-dir = "…"`);
    /// flags and WEIR_… variables override it. See examples/weir.toml.
    #[arg(long, global = true, env = "WEIR_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Send lines from stdin to a Kafka topic, one record per line.
    Produce(ProduceArgs),
}

/// Flags of `weir produce`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProduceArgs {
    /// Kafka bootstrap servers (host:port, comma separated).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic to write to.
    #[arg(long)]
    pub topic: String,
    /// Partition to write to (default: spread by librdkafka's partitioner).
    #[arg(long)]
    pub partition: Option<i32>,
}

/// Flags of `weir serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to accept PostgreSQL clients on.
    #[arg(long, env = "WEIR_LISTEN", default_value = "127.0.0.1:5488")]
    pub listen: SocketAddr,
    /// Directory for Weir's data: the catalog of sources and views, and checkpoints. On start,
    /// what it holds is restored.
    #[arg(long, env = "WEIR_DATA_DIR", default_value = "weir-data")]
    pub data_dir: PathBuf,
    /// Keep the catalog and checkpoints in an object store instead of --data-dir:
    /// `s3://bucket/prefix` (S3 or an S3-compatible service; credentials, region and endpoint
    /// from the AWS_* environment variables, e.g. AWS_ENDPOINT and AWS_ALLOW_HTTP=true).
    #[arg(long, env = "WEIR_CHECKPOINT_URL")]
    pub checkpoint_url: Option<String>,
    /// How often a checkpoint is taken (e.g. 10s, 500ms). `CHECKPOINT` takes one at once.
    #[arg(long, env = "WEIR_CHECKPOINT_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub checkpoint_interval: std::time::Duration,
    /// Do not run the demo script (examples/quickstart.sql) when the data directory is new.
    #[arg(long, env = "WEIR_NO_DEMO")]
    pub no_demo: bool,
    /// SQL script run when the data directory is new (default: the built-in quickstart).
    #[arg(long, env = "WEIR_DEMO_SCRIPT")]
    pub demo_script: Option<PathBuf>,
    /// How clients authenticate: `none` (only on a loopback address unless
    /// --allow-unauthenticated-network) or `password` (SCRAM-SHA-256, users from --users-file).
    #[arg(long, env = "WEIR_AUTH", value_enum, default_value = "none")]
    pub auth: AuthMode,
    /// Users for --auth password: one `name:password` per line.
    #[arg(long, env = "WEIR_USERS_FILE")]
    pub users_file: Option<PathBuf>,
    /// Accept unauthenticated clients on a non-loopback address (a trusted network only).
    #[arg(long, env = "WEIR_ALLOW_UNAUTHENTICATED_NETWORK")]
    pub allow_unauthenticated_network: bool,
    /// TLS certificate chain (PEM): clients that ask for SSL get it.
    #[arg(long, env = "WEIR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for --tls-cert.
    #[arg(long, env = "WEIR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTP on this address: `GET /metrics` for Prometheus (off unless given).
    #[arg(long, env = "WEIR_HTTP")]
    pub http: Option<SocketAddr>,
    /// Threads the server runs on, and shards each view's keyed operator (a grouped aggregate)
    /// is split into (default: one per core).
    #[arg(long, env = "WEIR_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
}

/// `--auth` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Anyone who can reach the port (loopback by default).
    None,
    /// SCRAM-SHA-256 passwords.
    Password,
}

impl ServeArgs {
    /// The security flags, for the front end to check and load.
    pub fn security_settings(&self) -> weir_pg::auth::SecuritySettings {
        weir_pg::auth::SecuritySettings {
            listen: self.listen,
            auth: match self.auth {
                AuthMode::None => weir_pg::auth::AuthMode::None,
                AuthMode::Password => weir_pg::auth::AuthMode::Password,
            },
            users_file: self.users_file.clone(),
            allow_unauthenticated_network: self.allow_unauthenticated_network,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
        }
    }
}

impl Cli {
    /// Parses the command line (exiting with clap's message on a bad one), with the matches
    /// that say which flags were given.
    pub fn parse_with_matches() -> (Cli, ArgMatches) {
        let matches = Cli::command().get_matches();
        match Cli::from_arg_matches(&matches) {
            Ok(cli) => (cli, matches),
            Err(e) => e.exit(),
        }
    }

    /// The matches of the serve flags within `matches`.
    pub fn serve_matches(matches: &ArgMatches) -> &ArgMatches {
        matches.subcommand_matches("serve").unwrap_or(matches)
    }

    /// The serve flags, from `weir serve …` or plain `weir …`; None for other commands.
    pub fn serve_options(&self) -> Option<ServeArgs> {
        match &self.command {
            Some(Command::Serve(args)) => Some(args.clone()),
            None => Some(self.serve.clone()),
            Some(Command::Produce(_)) => None,
        }
    }

    /// The `weir produce` flags, if that is the command.
    pub fn produce_options(&self) -> Option<&ProduceArgs> {
        match &self.command {
            Some(Command::Produce(args)) => Some(args),
            _ => None,
        }
    }
}
