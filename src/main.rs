//! `weir`: the Weir server binary. Flags, logging, and the server's lifetime; the database is
//! assembled in the package's library (`weir::database()`), the PostgreSQL front end lives in
//! `weir-pg`, and everything else in the workspace crates (see the README's architecture section).

mod cli;
mod config;
mod http;
mod http_api;
mod http_graph;
mod metrics;
mod produce;
mod server;

/// Stack of each runtime thread. Planning and evaluating an expression recurse over its tree,
/// which may be `weir_sql::parser::MAX_EXPRESSION_DEPTH` deep: tokio's default 2 MiB holds a
/// few hundred levels in a debug build. Only the pages a thread touches are ever committed.
const THREAD_STACK_BYTES: usize = 64 << 20;

fn main() -> std::process::ExitCode {
    let (cli, matches) = cli::Cli::parse_with_matches();
    let serve_matches = cli::Cli::serve_matches(&matches);
    // The file is read before logging starts: it may set the log level.
    let file = cli.config.as_deref().map(config::FileConfig::load);
    let log_level = match &file {
        Some(Ok(file)) => file.log_level(serve_matches, &cli.log_level),
        _ => cli.log_level.clone(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let file = match file.transpose() {
        Ok(file) => file,
        Err(e) => {
            tracing::error!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Some(args) = cli.produce_options() {
        return match produce::run(args) {
            Ok(_) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let Some(mut serve) = cli.serve_options() else {
        return std::process::ExitCode::FAILURE;
    };
    if let Some(file) = &file
        && let Err(e) = file.apply(&mut serve, serve_matches)
    {
        tracing::error!("{e}");
        return std::process::ExitCode::FAILURE;
    }
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
