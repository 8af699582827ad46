//! `weir`: the Weir server binary. Flags, logging, and the server's lifetime; the database is
//! assembled in the package's library (`weir::database()`), the PostgreSQL front end lives in
//! `weir-pg`, and everything else in the workspace crates (see the README's architecture section).

mod cli;
mod produce;
mod server;

use clap::Parser;

/// Stack of each runtime thread. Planning and evaluating an expression recurse over its tree,
/// which may be `weir_sql::parser::MAX_EXPRESSION_DEPTH` deep: tokio's default 2 MiB holds a
/// few hundred levels in a debug build. Only the pages a thread touches are ever committed.
const THREAD_STACK_BYTES: usize = 64 << 20;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Some(args) = cli.produce_options() {
        return match produce::run(args) {
            Ok(_) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let Some(serve) = cli.serve_options() else {
        return std::process::ExitCode::FAILURE;
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = serve.workers {
        builder.worker_threads(usize::from(workers));
    }
    let runtime = match builder
        .enable_all()
        .thread_stack_size(THREAD_STACK_BYTES)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(serve)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "weir stopped");
            std::process::ExitCode::FAILURE
        }
    }
}
