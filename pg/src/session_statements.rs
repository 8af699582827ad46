//! Session and transaction statements clients send around their queries: `SET`, `SHOW`,
//! `RESET`, `DISCARD ALL`, `BEGIN`/`COMMIT`/`ROLLBACK`, `SAVEPOINT`/`RELEASE`,
//! `UNLISTEN *`, `DEALLOCATE`.
//!
//! Weir's tables are views maintained by pipelines, so transactions are read-only and need no
//! isolation machinery: they are accepted so that drivers which wrap every statement in one
//! (psycopg, SQLAlchemy, pgjdbc) work unchanged.

use std::sync::Arc;

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::{Expr, ObjectName, Reset, Set, Statement, Value};

use weir_sql::QueryResult;
use weir_sql::database::{command, rows};

use weir_sql::Session;
use weir_sql::error::{Result, SqlError, SqlErrorKind};

use crate::settings::SessionInfo;

/// Runs `statement` if it is a session statement (None: plan it as a query). `info` holds the
/// session's run-time parameters; `session` checks `datafusion.*` options before they are kept.
pub fn execute(
    info: &SessionInfo,
    session: &Session,
    statement: &Statement,
) -> Result<Option<QueryResult>> {
    Ok(Some(match statement {
        Statement::StartTransaction { .. } => command("BEGIN"),
        Statement::Commit { .. } => command("COMMIT"),
        Statement::Rollback {
            savepoint: None, ..
        } => command("ROLLBACK"),
        Statement::Rollback {
            savepoint: Some(_), ..
        } => command("ROLLBACK TO SAVEPOINT"),
        Statement::Savepoint { .. } => command("SAVEPOINT"),
        Statement::ReleaseSavepoint { .. } => command("RELEASE"),
        Statement::Set(set) => {
            set_statement(info, session, set)?;
            command("SET")
        }
        Statement::ShowVariable { variable } => {
            let name = variable
                .iter()
                .map(|i| i.value.clone())
                .collect::<Vec<_>>()
                .join(" ");
            if name.eq_ignore_ascii_case("all") {
                let all = info.all();
                let batch = RecordBatch::try_new(
                    show_all_schema(),
                    vec![
                        Arc::new(StringArray::from_iter_values(
                            all.iter().map(|a| a.0.clone()),
                        )),
                        Arc::new(StringArray::from_iter_values(
                            all.iter().map(|a| a.1.clone()),
                        )),
                        Arc::new(StringArray::from_iter_values(all.iter().map(|a| a.2))),
                    ],
                )?;
                return Ok(Some(rows(batch)?));
            }
            let value = info.get(&name)?;
            let schema = show_schema(&name);
            rows(RecordBatch::try_new(
                schema,
                vec![Arc::new(StringArray::from(vec![value]))],
            )?)?
        }
        Statement::Reset(reset) => {
            match &reset.reset {
                Reset::ALL => info.reset_all(),
                Reset::ConfigurationParameter(name) => info.reset(&object_name(name))?,
            }
            command("RESET")
        }
        Statement::Discard { .. } => {
            info.reset_all();
            command("DISCARD ALL")
        }
        Statement::UNLISTEN { .. } => command("UNLISTEN"),
        Statement::Deallocate { .. } => command("DEALLOCATE"),
        Statement::LISTEN { .. } | Statement::NOTIFY { .. } => {
            return Err(SqlError::new(
                SqlErrorKind::FeatureNotSupported,
                "LISTEN/NOTIFY are not supported by Weir",
            ));
        }
        _ => return Ok(None),
    }))
}

/// The rows a session statement returns (for Describe), or None.
pub fn result_schema(statement: &Statement) -> Option<SchemaRef> {
    match statement {
        Statement::ShowVariable { variable } => {
            let name = variable
                .iter()
                .map(|i| i.value.clone())
                .collect::<Vec<_>>()
                .join(" ");
            Some(if name.eq_ignore_ascii_case("all") {
                show_all_schema()
            } else {
                show_schema(&name)
            })
        }
        _ => None,
    }
}

fn show_schema(name: &str) -> SchemaRef {
    let column = match name.to_ascii_lowercase().as_str() {
        "transaction isolation level" => "transaction_isolation".to_string(),
        "time zone" => "TimeZone".to_string(),
        _ => name.to_string(),
    };
    Arc::new(Schema::new(vec![Field::new(column, DataType::Utf8, false)]))
}

fn show_all_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("setting", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
    ]))
}

fn object_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|p| p.to_string().trim_matches('"').to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// A `SET` value as PostgreSQL stores it: literals unquoted, lists joined with `, `.
fn value_text(values: &[Expr]) -> String {
    values
        .iter()
        .map(|v| match v {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            Expr::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn set_statement(info: &SessionInfo, session: &Session, set: &Set) -> Result<()> {
    match set {
        Set::SingleAssignment {
            variable, values, ..
        } => {
            let name = object_name(variable);
            let is_default = values.len() == 1
                && matches!(&values[0], Expr::Identifier(i) if i.value.eq_ignore_ascii_case("default"));
            if is_default {
                return info.reset(&name);
            }
            let value = value_text(values);
            if name.to_ascii_lowercase().starts_with("datafusion.") {
                session.check_datafusion_option(&name.to_ascii_lowercase(), &value)?;
            }
            info.set(&name, &value)
        }
        Set::SetTimeZone { value, .. } => {
            info.set("timezone", &value_text(std::slice::from_ref(value)))
        }
        Set::SetNames { charset_name, .. } => info.set("client_encoding", &charset_name.value),
        // Roles and session authorization: Weir has one role.
        Set::SetRole { .. } | Set::SetSessionAuthorization(_) | Set::SetTransaction { .. } => {
            Ok(())
        }
        Set::MultipleAssignments { assignments } => {
            for a in assignments {
                info.set(
                    &object_name(&a.name),
                    &value_text(std::slice::from_ref(&a.value)),
                )?;
            }
            Ok(())
        }
        other => Err(SqlError::new(
            SqlErrorKind::FeatureNotSupported,
            format!("unsupported SET form: {other}"),
        )),
    }
}
