//! Connection start-up: authentication (none, or SCRAM-SHA-256 through pgwire's SASL handler),
//! the session's identity from the startup message, and the ParameterStatus values clients read
//! (`server_version` 15.8, `integer_datetimes`, …) from the session.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use crate::settings::SessionInfo;
use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{ServerParameterProvider, StartupHandler};
use pgwire::api::{ClientInfo, ConnectionManager};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::WeirHandler;

/// Parameters reported at start-up (in PostgreSQL's spelling) from the session's values.
const STARTUP_PARAMETERS: &[&str] = &[
    "server_version",
    "server_encoding",
    "client_encoding",
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "integer_datetimes",
    "standard_conforming_strings",
    "is_superuser",
    "session_authorization",
    "application_name",
    "default_transaction_read_only",
    "in_hot_standby",
];

/// A connection's start-up handler: trust (pgwire's no-op handshake) or SCRAM.
pub struct WeirStartup {
    pub(super) handler: Arc<WeirHandler>,
    pub(super) scram: Option<Scram>,
}

/// SCRAM handshakes for a connection: plain, and with channel binding for TLS connections
/// (offering SCRAM-SHA-256-PLUS over plain TCP makes libpq give up, as PostgreSQL never does).
pub struct Scram {
    pub(super) plain: SASLAuthStartupHandler<SessionParameters>,
    pub(super) tls: Option<SASLAuthStartupHandler<SessionParameters>>,
}

#[async_trait]
impl StartupHandler for WeirStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(scram) = &self.scram else {
            return self.handler.on_startup(client, message).await;
        };
        let scram = match &scram.tls {
            Some(tls) if client.is_secure() => tls,
            _ => &scram.plain,
        };
        let is_startup = matches!(message, PgWireFrontendMessage::Startup(_));
        scram.on_startup(client, message).await?;
        // The startup message is in the client's metadata now; the parameters go out when the
        // password exchange finishes, read from the session.
        if is_startup {
            self.handler.adopt_identity(client);
        }
        Ok(())
    }
}

/// The session's values of the reported parameters, to compare after a statement.
pub(super) fn reported_values(info: &SessionInfo) -> Vec<Option<String>> {
    STARTUP_PARAMETERS
        .iter()
        .map(|name| info.get(name).ok())
        .collect()
}

/// Sends ParameterStatus for each reported parameter whose value differs from `before`, as
/// PostgreSQL does after `SET`, `RESET`, `DISCARD ALL` or `set_config`: drivers keep these
/// (pgjdbc checks `client_encoding`, psycopg and asyncpg read `TimeZone` and `DateStyle`).
pub(super) async fn report_changes<C>(
    client: &mut C,
    info: &SessionInfo,
    before: &[Option<String>],
) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for ((name, old), new) in STARTUP_PARAMETERS
        .iter()
        .zip(before)
        .zip(reported_values(info))
    {
        if let Some(value) = new.filter(|v| old.as_ref() != Some(v)) {
            client
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    name.to_string(),
                    value,
                )))
                .await?;
        }
    }
    Ok(())
}

/// The session's values of [`STARTUP_PARAMETERS`], for pgwire's SASL handler.
pub struct SessionParameters(pub(super) Arc<SessionInfo>);

impl ServerParameterProvider for SessionParameters {
    fn server_parameters<C>(&self, _client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        Some(
            STARTUP_PARAMETERS
                .iter()
                .filter_map(|name| Some((name.to_string(), self.0.get(name).ok()?)))
                .collect(),
        )
    }
}

impl WeirHandler {
    /// The session takes the user, database and startup parameters the client sent.
    pub(super) fn adopt_identity<C: ClientInfo>(&self, client: &C) {
        let metadata = client.metadata();
        let user = metadata.get("user").cloned().unwrap_or_default();
        let database = metadata
            .get("database")
            .cloned()
            .unwrap_or_else(|| user.clone());
        let startup: Vec<(String, String)> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.session.info().set_identity(&user, &database, &startup);
    }
}

#[async_trait]
impl NoopStartupHandler for WeirHandler {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(Arc::clone(&self.manager))
    }

    /// Records who connected, and corrects the parameters pgwire's trust handler announced:
    /// it always sends its own `server_version` (`16.6-pgwire-…`), and clients keep the last
    /// value they receive, so Weir's follow.
    async fn post_startup<C>(
        &self,
        client: &mut C,
        _message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.adopt_identity(client);
        // Every parameter is new to the client.
        let unknown = vec![None; STARTUP_PARAMETERS.len()];
        report_changes(client, self.session.info(), &unknown).await
    }
}

/// Sends the NOTICEs the session's statements raised (before their results, as PostgreSQL does).
pub(super) async fn send_notices<C>(client: &mut C, notices: Vec<String>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for text in notices {
        let info = pgwire::error::ErrorInfo::new("NOTICE".to_string(), "00000".to_string(), text);
        client
            .feed(PgWireBackendMessage::NoticeResponse(info.into()))
            .await?;
    }
    Ok(())
}
