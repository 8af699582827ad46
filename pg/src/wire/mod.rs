//! The PostgreSQL wire adapter: protocol translation only. Statements go to a
//! [`PgSession`]; results come back through [`encode`]; error kinds become SQLSTATEs in
//! [`errors`] and nowhere else.
//!
//! - Simple query: several statements per message, each answered in turn; an empty or
//!   comment-only query gets EmptyQueryResponse.
//! - Extended query: Parse plans the statement (parameter types inferred by DataFusion), Describe
//!   answers from the plan, Execute binds parameters (text or binary) and runs it with the
//!   result formats the client asked for.
//! - Cancel requests are matched to connections by pgwire's connection manager.
//! - `SUBSCRIBE` and `COPY (SUBSCRIBE …) TO STDOUT` ([`subscribe`]) send their rows from inside
//!   the handler, flushed as they come, so a cancel request stops them.
//! - Start-up ([`startup`]): trust or SCRAM-SHA-256, the session's identity, ParameterStatus.
//! - Each connection ([`connection`]) reads through a guard ([`frames`]) that checks every
//!   frontend message's layout before pgwire decodes it: a malformed one is answered with
//!   ErrorResponse 08P01 and a clean close, never a dropped socket.

mod backfill;
mod connection;
mod encode;
mod errors;
mod frames;
mod params;
mod startup;
mod stats;
mod subscribe;
mod time_zone;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::logical_expr::LogicalPlan;
use futures::{Sink, SinkExt};
use pgwire::api::auth::AuthSource;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ConnectionManager, PgWireServerHandlers, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use weir_sql::dml::DmlPlan;
use weir_sql::parser::{WeirStatement, parse_statements};
use weir_sql::{SqlError, SqlErrorKind};

use crate::auth::Security;
use crate::session::{PgFrontend, PgSession};
pub use connection::serve_connection;
pub use errors::sqlstate;
use startup::{Scram, SessionParameters, WeirStartup};
pub use stats::{WireFigures, WireStats};

/// Shared server state: the database, pgwire's connection registry (for cancel requests) and
/// who may connect.
pub struct WireServer {
    frontend: Arc<PgFrontend>,
    manager: Arc<ConnectionManager>,
    cancel: Arc<DefaultCancelHandler>,
    security: Security,
    stats: Arc<WireStats>,
}

impl WireServer {
    /// A server over `frontend`'s database.
    pub fn new(frontend: Arc<PgFrontend>, security: Security) -> Self {
        let manager = Arc::new(ConnectionManager::new());
        let cancel = Arc::new(DefaultCancelHandler::new(Arc::clone(&manager)));
        Self {
            frontend,
            manager,
            cancel,
            security,
            stats: Arc::default(),
        }
    }

    /// Connection and statement counters (`/metrics`).
    pub fn stats(&self) -> &Arc<WireStats> {
        &self.stats
    }

    /// The SCRAM handshakes for one connection, when passwords are required.
    fn scram(&self, session: &PgSession) -> Option<Scram> {
        let users = self.security.users.as_ref()?;
        let handler = |scram: ScramAuth| {
            SASLAuthStartupHandler::new(Arc::new(SessionParameters(Arc::clone(session.info()))))
                .with_scram(scram)
                .with_connection_manager(Arc::clone(&self.manager))
        };
        let plain = handler(ScramAuth::new(Arc::clone(users) as Arc<dyn AuthSource>));
        let tls = self.security.certificate_pem.as_ref().and_then(|pem| {
            let mut scram = ScramAuth::new(Arc::clone(users) as Arc<dyn AuthSource>);
            match scram.configure_certificate(pem) {
                Ok(()) => Some(handler(scram)),
                Err(e) => {
                    // Plain SCRAM still works over TLS; only channel binding is lost.
                    tracing::warn!(error = %e, "TLS certificate unusable for SCRAM channel binding");
                    None
                }
            }
        });
        Some(Scram { plain, tls })
    }

    /// Handlers for one connection, with its own session (identity, settings).
    pub fn handlers(&self) -> Arc<Handlers> {
        let session = self.frontend.session();
        let parser = Arc::new(WeirQueryParser {
            session: session.clone(),
        });
        let scram = self.scram(&session);
        let handler = Arc::new(WeirHandler {
            session,
            manager: Arc::clone(&self.manager),
            parser,
            stats: Arc::clone(&self.stats),
            _open: self.stats.connection(),
        });
        Arc::new(Handlers {
            startup: Arc::new(WeirStartup {
                handler: Arc::clone(&handler),
                scram,
            }),
            handler,
            cancel: Arc::clone(&self.cancel),
        })
    }
}

/// pgwire's handler set.
pub struct Handlers {
    handler: Arc<WeirHandler>,
    startup: Arc<WeirStartup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.handler)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.handler)
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        Arc::clone(&self.handler)
    }
}

/// `COPY … FROM STDIN`: data goes to the session's copy; at CopyDone its rows are written and
/// the command completes with `COPY n`.
#[async_trait]
impl CopyHandler for WeirHandler {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.session.copy_data(&copy_data.data).await;
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let rows = self
            .session
            .copy_done()
            .await
            .map_err(|e| errors::to_pgwire(&e))?;
        let tag = pgwire::api::results::Tag::new("COPY").with_rows(rows);
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.session.copy_failed().await;
        errors::to_pgwire(&SqlError::new(
            SqlErrorKind::External,
            format!("COPY from stdin failed: {}", fail.message),
        ))
    }
}

/// Answers queries from a session.
pub struct WeirHandler {
    session: PgSession,
    manager: Arc<ConnectionManager>,
    parser: Arc<WeirQueryParser>,
    stats: Arc<WireStats>,
    /// Counts the connection open while its handler lives.
    _open: stats::ConnectionGuard,
}

#[async_trait]
impl SimpleQueryHandler for WeirHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = parse_statements(query).map_err(|e| errors::to_pgwire(&e))?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        if let Some(subscribe) = statements.iter().find(|s| {
            matches!(
                s,
                WeirStatement::Subscribe(_) | WeirStatement::CopySubscribe(_)
            )
        }) {
            if statements.len() > 1 {
                return Err(errors::to_pgwire(&SqlError::new(
                    SqlErrorKind::FeatureNotSupported,
                    "SUBSCRIBE must be sent as a query of its own (its rows do not end)",
                )));
            }
            let response = self
                .subscribe(client, subscribe, true, &Format::UnifiedText)
                .await?;
            return Ok(vec![response]);
        }
        let before = startup::reported_values(self.session.info());
        let mut responses = Vec::with_capacity(statements.len());
        for statement in &statements {
            let result = self.session.execute(statement).await;
            self.stats.statement(result.is_err());
            match result {
                Ok(result) => {
                    self.wait_for_backfill(client, statement).await?;
                    let time_zone = self.session.info().display_time_zone();
                    let response =
                        encode::response(result, &Format::UnifiedText, time_zone.as_deref())
                            .await?;
                    responses.push(tagged(statement, response))
                }
                Err(e) => {
                    // Earlier statements' results are sent, then the error, as PostgreSQL does.
                    responses.push(Response::Error(Box::new(errors::error_info(&e))));
                    break;
                }
            }
        }
        startup::send_notices(client, self.session.sql_session().take_notices()).await?;
        startup::report_changes(client, self.session.info(), &before).await?;
        Ok(responses)
    }
}

/// `response` with the command tag PostgreSQL gives `statement`'s rows where it is not
/// `SELECT n` (`FETCH n`).
fn tagged(statement: &WeirStatement, mut response: Response) -> Response {
    if let (WeirStatement::Fetch(_), Response::Query(rows)) = (statement, &mut response) {
        rows.set_command_tag("FETCH");
    }
    response
}

/// A statement prepared by Parse.
#[derive(Clone)]
pub struct Prepared {
    statement: WeirStatement,
    /// For queries: the plan, with `$n` placeholders.
    plan: Option<LogicalPlan>,
    /// For `INSERT`, `UPDATE`, `DELETE`: the planned write, with `$n` placeholders.
    dml: Option<DmlPlan>,
    /// Inferred types of `$1…$n`.
    param_types: Vec<Option<DataType>>,
    /// Result schema, if the statement returns rows.
    schema: Option<SchemaRef>,
}

/// Parses and plans statements for the extended protocol.
pub struct WeirQueryParser {
    session: PgSession,
}

#[async_trait]
impl QueryParser for WeirQueryParser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = parse_statements(sql).map_err(|e| errors::to_pgwire(&e))?;
        if statements.len() > 1 {
            return Err(errors::to_pgwire(&SqlError::new(
                SqlErrorKind::Syntax,
                "cannot insert multiple commands into a prepared statement",
            )));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        let mut dml = None;
        let (plan, param_types, schema) = match &statement {
            WeirStatement::Sql(s)
                if matches!(
                    s.as_ref(),
                    datafusion::sql::sqlparser::ast::Statement::Query(_)
                ) || weir_sql::dml::is_dml(s) =>
            {
                let is_dml = weir_sql::dml::is_dml(s);
                let plan = if is_dml {
                    let planned = self
                        .session
                        .plan_dml(s)
                        .await
                        .map_err(|e| errors::to_pgwire(&e))?;
                    let input = planned.input().clone();
                    dml = Some(planned);
                    input
                } else {
                    self.session
                        .plan_statement(s)
                        .await
                        .map_err(|e| errors::to_pgwire(&e))?
                };
                let mut types = plan
                    .get_parameter_types()
                    .map_err(|e| errors::to_pgwire(&SqlError::from(e)))?;
                params::infer_from_casts(&plan, &mut types);
                let mut ordered: Vec<(usize, Option<DataType>)> = types
                    .into_iter()
                    .filter_map(|(k, v)| {
                        k.trim_start_matches('$')
                            .parse::<usize>()
                            .ok()
                            .map(|i| (i, v))
                    })
                    .collect();
                ordered.sort_by_key(|(i, _)| *i);
                let count = ordered.last().map_or(0, |(i, _)| *i);
                let mut param_types = vec![None; count];
                for (i, t) in ordered {
                    if i >= 1 {
                        param_types[i - 1] = t;
                    }
                }
                if is_dml {
                    (None, param_types, None)
                } else {
                    let schema = Arc::new(plan.schema().as_arrow().clone());
                    (Some(plan), param_types, Some(schema))
                }
            }
            other => {
                let schema = self
                    .session
                    .result_schema(other)
                    .await
                    .map_err(|e| errors::to_pgwire(&e))?;
                (None, Vec::new(), schema)
            }
        };
        Ok(Some(Prepared {
            statement,
            plan,
            dml,
            param_types,
            schema,
        }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt
            .param_types
            .iter()
            .map(|t| params::pg_type(t.as_ref()))
            .collect())
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.schema {
            Some(schema) => encode::fields(schema, column_format.unwrap_or(&Format::UnifiedText)),
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for WeirHandler {
    type Statement = Prepared;
    type QueryParser = WeirQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        if let WeirStatement::Subscribe(_) | WeirStatement::CopySubscribe(_) = &prepared.statement {
            return self
                .subscribe(
                    client,
                    &prepared.statement,
                    false,
                    &portal.result_column_format,
                )
                .await;
        }
        let before = startup::reported_values(self.session.info());
        let result = match (&prepared.plan, &prepared.dml) {
            (_, Some(dml)) => {
                let values = params::decode(portal, &prepared.param_types)?;
                let dml = if values.is_empty() {
                    Ok(dml.clone())
                } else {
                    dml.clone().with_params(values)
                };
                match dml {
                    Ok(dml) => self.session.execute_dml(dml).await,
                    Err(e) => Err(e),
                }
            }
            (Some(plan), None) => {
                let values = params::decode(portal, &prepared.param_types)?;
                let plan = if values.is_empty() {
                    plan.clone()
                } else {
                    plan.clone()
                        .with_param_values(values)
                        .map_err(|e| errors::to_pgwire(&SqlError::from(e)))?
                };
                self.session.execute_plan(plan).await
            }
            (None, None) => self.session.execute(&prepared.statement).await,
        };
        self.stats.statement(result.is_err());
        if result.is_ok() {
            self.wait_for_backfill(client, &prepared.statement).await?;
        }
        startup::send_notices(client, self.session.sql_session().take_notices()).await?;
        let result = result.map_err(|e| errors::to_pgwire(&e))?;
        let time_zone = self.session.info().display_time_zone();
        let response =
            encode::response(result, &portal.result_column_format, time_zone.as_deref()).await?;
        startup::report_changes(client, self.session.info(), &before).await?;
        Ok(tagged(&prepared.statement, response))
    }
}
