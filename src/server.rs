//! The server's lifetime: open the database (restoring the data directory's sources and views
//! from their newest checkpoint), run the demo script if the directory is new, accept clients
//! until Ctrl-C or SIGTERM, then stop accepting and let open connections finish briefly.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{error, info, warn};
use weir_sql::DatabaseOptions;

use weir_pg::PgFrontend;
use weir_pg::auth::Security;
use weir_pg::wire::WireServer;

use crate::cli::ServeArgs;

/// The quickstart script compiled in, so the demo works from any directory.
const QUICKSTART: &str = include_str!("../examples/quickstart.sql");

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Could not bind the listen address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The database could not start.
    #[error("{0}")]
    Sql(#[from] weir_sql::SqlError),
    /// The demo script failed.
    #[error("demo script: {0}")]
    Demo(String),
    /// Authentication or TLS settings are unusable or unsafe.
    #[error("{0}")]
    Security(#[from] weir_pg::auth::AuthError),
}

/// Runs the server until a shutdown signal.
pub async fn run(args: ServeArgs) -> Result<(), ServerError> {
    // Checked before anything starts: an unsafe listen address is refused, not half-served.
    let security = Security::from_settings(&args.security_settings())?;
    // The HTTP API runs queries: the same rule as for PostgreSQL clients.
    if let Some(http) = args.http
        && security.users.is_none()
        && !http.ip().is_loopback()
        && !args.allow_unauthenticated_network
    {
        return Err(weir_pg::auth::AuthError::OpenToNetwork(http).into());
    }
    let mut options = DatabaseOptions::new(&args.data_dir);
    options.checkpoint_interval = args.checkpoint_interval;
    options.storage_url = args.checkpoint_url.clone();
    let mut database = weir::database();
    if let Some(workers) = args.workers {
        database = database.workers(usize::from(workers));
    }
    let (frontend, persisted) = PgFrontend::open(database, options).await?;
    let db = Arc::clone(frontend.database());
    if persisted == 0 && !args.no_demo {
        let script = match &args.demo_script {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| ServerError::Demo(format!("{}: {e}", path.display())))?,
            None => QUICKSTART.to_string(),
        };
        frontend
            .session()
            .execute_all(&script)
            .await
            .map_err(|e| ServerError::Demo(e.to_string()))?;
        info!(
            sources = db.catalog().sources().len(),
            views = db.catalog().views().len(),
            "demo ready"
        );
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: args.listen,
            source,
        })?;
    let local = listener.local_addr().unwrap_or(args.listen);
    info!(address = %local, "weir is ready: psql -h {} -p {}", local.ip(), local.port());
    let tls = security.tls.clone();
    info!(
        auth = if security.users.is_some() {
            "password (SCRAM-SHA-256)"
        } else {
            "none"
        },
        tls = tls.is_some(),
        "client authentication"
    );
    let api = crate::http_api::Api {
        frontend: Arc::clone(&frontend),
        users: security.users.clone(),
    };
    let server = Arc::new(WireServer::new(frontend, security));
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = match args.http {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })?;
            info!(address = %listener.local_addr().unwrap_or(addr), "HTTP: /metrics, /api");
            let serving = crate::http::serve(
                listener,
                Arc::clone(&db),
                Arc::clone(server.stats()),
                api,
                async move {
                    let _ = http_stopped.await;
                },
            );
            Some(tokio::spawn(async move {
                if let Err(e) = serving.await {
                    error!(error = %e, "HTTP listener stopped");
                }
            }))
        }
        None => None,
    };
    let mut connections = tokio::task::JoinSet::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let handlers = server.handlers();
                    let tls = tls.clone();
                    connections.spawn(async move {
                        if let Err(e) = weir_pg::wire::serve_connection(socket, tls, handlers).await {
                            warn!(peer = %peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Running out of file descriptors and the like: keep serving the others.
                    error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = &mut shutdown => break,
        }
    }
    info!(open = connections.len(), "shutting down");
    let _ = stop_http.send(());
    if let Some(http) = http {
        let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
    }
    // A last checkpoint, so the next start has nothing to replay.
    if let Some(durability) = db.durability() {
        match tokio::time::timeout(Duration::from_secs(10), durability.coordinator.checkpoint())
            .await
        {
            Ok(Ok(record)) => info!(epoch = record.epoch, "final checkpoint committed"),
            Ok(Err(e)) => {
                warn!(error = %e, "final checkpoint failed; the last complete one will be used")
            }
            Err(_) => warn!("final checkpoint took over 10 s; the last complete one will be used"),
        }
    }
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(2), drain)
        .await
        .is_err()
    {
        connections.abort_all();
    }
    info!("bye");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
