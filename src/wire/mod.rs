//! The PostgreSQL wire adapter: protocol translation only. Statements go to a
//! [`weir_sql::Session`]; results come back through [`encode`]; error kinds become SQLSTATEs in
//! [`errors`] and nowhere else.
//!
//! - Simple query: several statements per message, each answered in turn; an empty or
//!   comment-only query gets EmptyQueryResponse.
//! - Extended query: Parse plans the statement (parameter types inferred by DataFusion), Describe
//!   answers from the plan, Execute binds parameters (text or binary) and runs it with the
//!   result formats the client asked for.
//! - Cancel requests are matched to connections by pgwire's connection manager.

mod encode;
mod errors;
mod params;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::logical_expr::LogicalPlan;
use futures::Sink;
use futures::SinkExt;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ConnectionManager, PgWireServerHandlers, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use weir_sql::parser::{WeirStatement, parse_statements};
use weir_sql::{Database, Session, SqlError, SqlErrorKind};

/// Shared server state: the database and pgwire's connection registry (for cancel requests).
pub struct WireServer {
    db: Arc<Database>,
    manager: Arc<ConnectionManager>,
    cancel: Arc<DefaultCancelHandler>,
}

impl WireServer {
    /// A server over `db`.
    pub fn new(db: Arc<Database>) -> Self {
        let manager = Arc::new(ConnectionManager::new());
        let cancel = Arc::new(DefaultCancelHandler::new(Arc::clone(&manager)));
        Self {
            db,
            manager,
            cancel,
        }
    }

    /// Handlers for one connection, with its own session (identity, settings).
    pub fn handlers(&self) -> Arc<Handlers> {
        let session = self.db.session();
        let parser = Arc::new(WeirQueryParser {
            session: session.clone(),
        });
        let handler = Arc::new(WeirHandler {
            session,
            manager: Arc::clone(&self.manager),
            parser,
        });
        Arc::new(Handlers {
            handler,
            cancel: Arc::clone(&self.cancel),
        })
    }
}

/// pgwire's handler set.
pub struct Handlers {
    handler: Arc<WeirHandler>,
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
        Arc::clone(&self.handler)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

/// Answers queries from a session.
pub struct WeirHandler {
    session: Session,
    manager: Arc<ConnectionManager>,
    parser: Arc<WeirQueryParser>,
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
        let info = self.session.info();
        info.set_identity(&user, &database, &startup);
        for name in STARTUP_PARAMETERS {
            if let Ok(value) = info.get(name) {
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
}

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

#[async_trait]
impl SimpleQueryHandler for WeirHandler {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
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
        let mut responses = Vec::with_capacity(statements.len());
        for statement in &statements {
            match self.session.execute(statement).await {
                Ok(result) => responses.push(encode::response(result, &Format::UnifiedText).await?),
                Err(e) => {
                    // Earlier statements' results are sent, then the error, as PostgreSQL does.
                    responses.push(Response::Error(Box::new(errors::error_info(&e))));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

/// A statement prepared by Parse.
#[derive(Clone)]
pub struct Prepared {
    statement: WeirStatement,
    /// For queries: the plan, with `$n` placeholders.
    plan: Option<LogicalPlan>,
    /// Inferred types of `$1…$n`.
    param_types: Vec<Option<DataType>>,
    /// Result schema, if the statement returns rows.
    schema: Option<SchemaRef>,
}

/// Parses and plans statements for the extended protocol.
pub struct WeirQueryParser {
    session: Session,
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
        let (plan, param_types, schema) = match &statement {
            WeirStatement::Sql(s)
                if matches!(
                    s.as_ref(),
                    datafusion::sql::sqlparser::ast::Statement::Query(_)
                ) =>
            {
                let plan = self
                    .session
                    .plan_statement(s)
                    .await
                    .map_err(|e| errors::to_pgwire(&e))?;
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
                let schema = Arc::new(plan.schema().as_arrow().clone());
                (Some(plan), param_types, Some(schema))
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
        _client: &mut C,
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
        let result = match &prepared.plan {
            Some(plan) => {
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
            None => self.session.execute(&prepared.statement).await,
        };
        let result = result.map_err(|e| errors::to_pgwire(&e))?;
        encode::response(result, &portal.result_column_format).await
    }
}
