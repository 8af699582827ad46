//! `CREATE SINK … FROM view`: a view's changes delivered by a sink connector, resumed from the
//! newest checkpoint on start-up. (`weir_sinks`, what each sink has delivered, is in
//! `system_tables.rs`.)

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::{info, warn};
use weir_engine::checkpoint::catalog_file::{CatalogObject, ObjectKind as PersistedKind};
use weir_engine::options::Options;
use weir_engine::sink::{SinkCheckpointing, SinkDefinition, SinkFormat, SinkRuntime, SinkSpec};

use crate::database::{QueryResult, Session, command};
use crate::ddl::{Publication, lookup_connector};
use crate::error::{Result, SqlError, SqlErrorKind};
use crate::parser::{CreateSink, ObjectKind};

impl Session {
    /// `CREATE SINK … AS <query>`: the query becomes the sink's own materialized view
    /// (`<sink>_query`: queryable, so one can see what the sink delivers, and dropped with the
    /// sink), then the sink reads it. Both are persisted, the view first, so recovery restores
    /// them as it restores any view and sink.
    pub(crate) async fn create_sink_as_select(&self, s: &CreateSink) -> Result<QueryResult> {
        let Some(view) = s.own_view() else {
            return self.create_sink(s, None).await;
        };
        if s.if_not_exists && self.db.catalog.sink(&s.name).is_some() {
            return Ok(command("CREATE SINK"));
        }
        self.db.catalog.ensure_name_free(&s.name)?;
        self.create_view(&view, None).await?;
        let created = self.create_sink(s, None).await;
        if created.is_err()
            && let Err(e) = self
                .drop_object(ObjectKind::MaterializedView, &view.name, true, false)
                .await
        {
            warn!(sink = %s.name, view = %view.name, error = %e, "could not drop the query view of a sink that failed to start");
        }
        created
    }

    pub(crate) async fn create_sink(
        &self,
        s: &CreateSink,
        replay: Option<&CatalogObject>,
    ) -> Result<QueryResult> {
        let Some(_guard) = self
            .begin_create(&s.name, s.if_not_exists, |c| c.sink(&s.name).is_some())
            .await?
        else {
            return Ok(command("CREATE SINK"));
        };
        let view = self.db.catalog.view(&s.from).ok_or_else(|| {
            let hint = if self.db.catalog.source(&s.from).is_some() {
                format!(
                    "\"{}\" is a source; sinks deliver materialized views (CREATE MATERIALIZED VIEW v AS SELECT * FROM {} first)",
                    s.from, s.from
                )
            } else {
                format!("materialized view \"{}\" does not exist", s.from)
            };
            SqlError::new(SqlErrorKind::UndefinedTable, hint)
        })?;
        let mut options = Options::new(format!("sink \"{}\"", s.name), s.options.clone())?;
        let connector = options.take_required("connector")?.to_ascii_lowercase();
        let factory = lookup_connector(&self.db.sinks, "sink connector", &connector)?;
        let (format_name, encode) = s
            .format
            .clone()
            .unwrap_or_else(|| ("PLAIN".into(), String::new()));
        let format = sink_format(&format_name, &mut options, &view)?;
        let id = self.object_id(replay);
        let mut spec = SinkSpec {
            name: s.name.clone(),
            id: id.clone(),
            schema: view.table.schema_ref(),
            options,
            format: format.clone(),
            encode: encode.to_ascii_lowercase(),
            check: replay.is_none(),
        };
        let writer = factory.open_sink(&mut spec).await?;
        std::mem::take(&mut spec.options).finish()?;

        let durability = self.db.durability.clone();
        let checkpointing = durability.as_ref().map(|d| SinkCheckpointing {
            id: id.clone(),
            coordinator: Arc::clone(&d.coordinator),
            recovered: d.take_recovered(&s.name, &id),
        });
        let definition = SinkDefinition {
            name: s.name.clone(),
            sql: s.sql.clone(),
            view: Arc::clone(&view),
            owns_view: s.query.is_some(),
            connector,
            format_name,
            format,
        };
        let runtime = SinkRuntime::build(definition, writer, checkpointing).await?;
        let entry = Arc::clone(runtime.entry());
        let mut publication = Publication::new(&self.db, &s.name);
        publication.add_to_catalog(|c| c.add_sink(entry))?;
        publication
            .persist(PersistedKind::Sink, &id, &s.sql, BTreeMap::new(), replay)
            .await?;
        publication.commit();
        let start = runtime.into_start();
        match &durability {
            Some(d) => d.start_or_hold(start),
            None => start(),
        }
        info!(sink = %s.name, view = %s.from, "sink created");
        Ok(command("CREATE SINK"))
    }
}

/// `FORMAT PLAIN | UPSERT | DEBEZIUM` (UPSERT takes its key from the `primary_key` option;
/// DEBEZIUM too, or else from the view's key).
fn sink_format(
    name: &str,
    options: &mut Options,
    view: &weir_engine::catalog::ViewEntry,
) -> Result<SinkFormat> {
    match name {
        "PLAIN" => Ok(SinkFormat::Plain),
        "DEBEZIUM" => {
            let key = match options.take("primary_key") {
                Some(key) => key,
                None => view
                    .props
                    .key_names(&view.table.schema_ref())
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| {
                        SqlError::new(
                            SqlErrorKind::InvalidParameter,
                            format!(
                                "FORMAT DEBEZIUM needs primary_key = 'column[, …]': view \"{}\" has no key of its own",
                                view.name
                            ),
                        )
                    })?,
            };
            Ok(SinkFormat::Debezium {
                key: key
                    .split(',')
                    .map(|k| k.trim().to_ascii_lowercase())
                    .collect(),
            })
        }
        "UPSERT" => {
            let key = options.take("primary_key").ok_or_else(|| {
                SqlError::new(
                    SqlErrorKind::InvalidParameter,
                    "FORMAT UPSERT needs primary_key = 'column[, …]' (the view's key)",
                )
            })?;
            Ok(SinkFormat::Upsert {
                key: key
                    .split(',')
                    .map(|k| k.trim().to_ascii_lowercase())
                    .collect(),
            })
        }
        other => Err(SqlError::new(
            SqlErrorKind::InvalidParameter,
            format!("sink format must be PLAIN, UPSERT or DEBEZIUM, not {other}"),
        )),
    }
}
