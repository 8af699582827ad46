//! A Confluent-compatible schema registry client: the two calls a reader needs.
//!
//! - `GET /subjects/{subject}/versions/latest`: the schema a source is created with (its columns,
//!   and the reader schema every later writer schema is resolved against);
//! - `GET /schemas/ids/{id}`: the writer schema of a record whose frame names an id not seen yet.
//!
//! Records in the Confluent wire format start with a magic byte `0` and the schema's id as four
//! big-endian bytes ([`confluent_frame`]). Schemas already fetched are kept, so a reader asks the
//! registry once per id. Readers run on their own threads, so their lookups block
//! ([`SchemaRegistry::by_id_blocking`], on a small runtime of its own); `CREATE SOURCE` awaits.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use weir_engine::options::Options;
use weir_engine::{EngineError, Result};

/// How long one registry request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Waits between the attempts of a lookup that failed for a reason other than "not found".
const RETRY_BACKOFF: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_secs(1),
    Duration::from_secs(3),
];

/// A schema as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSchema {
    /// Its global id (what record frames carry).
    pub id: u32,
    /// `AVRO` (the registry's default when it says nothing), `PROTOBUF` or `JSON`.
    pub schema_type: String,
    /// The schema's text (Avro JSON, `.proto` source).
    pub schema: String,
}

/// Why a lookup failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The registry answered that it has no such subject or id.
    NotFound(String),
    /// The registry could not be reached or answered something else.
    Unavailable(String),
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound(m) | Self::Unavailable(m) => f.write_str(m),
        }
    }
}

/// A registry at one base URL, with the schemas it already gave.
#[derive(Debug, Clone)]
pub struct SchemaRegistry {
    base: String,
    client: reqwest::Client,
    known: Arc<Mutex<BTreeMap<u32, RegisteredSchema>>>,
}

impl SchemaRegistry {
    /// A client for the registry at `url` (`http://host:port`, optionally with a path).
    pub fn new(url: &str) -> Result<Self> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(EngineError::User(format!(
                "schema.registry must be an http:// or https:// URL, not '{url}'"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| EngineError::External(format!("schema registry client: {e}")))?;
        Ok(Self {
            base,
            client,
            known: Arc::default(),
        })
    }

    /// The registry's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The newest schema registered under `subject`.
    pub async fn latest(
        &self,
        subject: &str,
    ) -> std::result::Result<RegisteredSchema, LookupError> {
        let url = format!("{}/subjects/{subject}/versions/latest", self.base);
        let body = self.get(&url, &format!("subject \"{subject}\"")).await?;
        let id = body
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| {
                LookupError::Unavailable(format!("{url} answered without a schema id"))
            })?;
        let schema = parse_schema(id, &body, &url)?;
        self.known.lock().insert(id, schema.clone());
        Ok(schema)
    }

    /// The schema with `id`, from what was fetched before or from the registry.
    pub async fn by_id(&self, id: u32) -> std::result::Result<RegisteredSchema, LookupError> {
        if let Some(known) = self.known.lock().get(&id) {
            return Ok(known.clone());
        }
        let url = format!("{}/schemas/ids/{id}", self.base);
        let body = self.get(&url, &format!("schema id {id}")).await?;
        let schema = parse_schema(id, &body, &url)?;
        self.known.lock().insert(id, schema.clone());
        Ok(schema)
    }

    /// [`Self::by_id`] for a reader thread (outside any async runtime), retried a few times when
    /// the registry is unreachable.
    pub fn by_id_blocking(&self, id: u32) -> std::result::Result<RegisteredSchema, LookupError> {
        if let Some(known) = self.known.lock().get(&id) {
            return Ok(known.clone());
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LookupError::Unavailable(format!("schema registry client: {e}")))?;
        let mut attempt = 0;
        loop {
            match runtime.block_on(self.by_id(id)) {
                Err(LookupError::Unavailable(message)) if attempt < RETRY_BACKOFF.len() => {
                    tracing::warn!(registry = %self.base, id, %message, "schema registry lookup failed; retrying");
                    std::thread::sleep(RETRY_BACKOFF[attempt]);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn get(&self, url: &str, what: &str) -> std::result::Result<Value, LookupError> {
        let unavailable = |e: &dyn std::fmt::Display| {
            LookupError::Unavailable(format!("schema registry {url}: {e}"))
        };
        let response = self
            .client
            .get(url)
            .header(
                "Accept",
                "application/vnd.schemaregistry.v1+json, application/json",
            )
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| unavailable(&e))?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(LookupError::NotFound(format!(
                "the schema registry at {} has no {what}",
                self.base
            )));
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(unavailable(&format!("HTTP {status}: {}", text.trim())));
        }
        serde_json::from_slice(&bytes).map_err(|e| unavailable(&format!("not JSON: {e}")))
    }
}

fn parse_schema(
    id: u32,
    body: &Value,
    url: &str,
) -> std::result::Result<RegisteredSchema, LookupError> {
    let schema = body
        .get("schema")
        .and_then(Value::as_str)
        .ok_or_else(|| LookupError::Unavailable(format!("{url} answered without a schema")))?;
    let schema_type = body
        .get("schemaType")
        .and_then(Value::as_str)
        .unwrap_or("AVRO")
        .to_ascii_uppercase();
    Ok(RegisteredSchema {
        id,
        schema_type,
        schema: schema.to_string(),
    })
}

/// The option that pins a registry source to one schema id instead of the subject's newest: a
/// user may give it, and the catalog keeps the id a source was created with under it, so a
/// restart reads with the same columns however the subject moved on.
pub const SCHEMA_ID_OPTION: &str = "schema.registry.schema_id";

/// Where a binary format's schema comes from.
#[derive(Debug, Clone)]
enum Origin {
    /// `schema = '…'`: the schema's text; records carry no frame.
    Inline(String),
    /// `schema.registry = '…'` (with `schema.registry.subject`, default `<topic>-value`, and
    /// [`SCHEMA_ID_OPTION`]): records carry the Confluent frame.
    Registry {
        registry: SchemaRegistry,
        subject: Option<String>,
        pinned: Option<u32>,
    },
}

/// A source's schema origin (`ENCODE AVRO (…)`, `ENCODE PROTOBUF (…)`), and the registry id it
/// was resolved to.
#[derive(Debug)]
pub struct SchemaOrigin {
    origin: Origin,
    registry_id: OnceLock<u32>,
}

impl SchemaOrigin {
    /// Takes `schema`, or `schema.registry` with its subject and schema id, from `options`;
    /// `encode` and `example` name the format in errors.
    pub fn from_options(options: &mut Options, encode: &str, example: &str) -> Result<Self> {
        let inline = options.take("schema");
        let registry = options.take("schema.registry");
        let subject = options.take("schema.registry.subject");
        let pinned = options.take_parsed::<u32>(SCHEMA_ID_OPTION)?;
        let origin = match (inline, registry) {
            (Some(text), None) if subject.is_none() && pinned.is_none() => Origin::Inline(text),
            (None, Some(url)) => Origin::Registry {
                registry: SchemaRegistry::new(&url)?,
                subject,
                pinned,
            },
            (Some(_), Some(_)) => {
                return Err(EngineError::User(format!(
                    "ENCODE {encode} takes schema (inline) or schema.registry, not both"
                )));
            }
            (Some(_), None) => {
                return Err(EngineError::User(
                    "schema.registry.subject and schema.registry.schema_id go with schema.registry"
                        .into(),
                ));
            }
            (None, None) => {
                return Err(EngineError::User(format!(
                    "ENCODE {encode} needs its schema: ENCODE {encode} ({example}) or ENCODE \
                     {encode} (schema.registry = 'http://host:8081')"
                )));
            }
        };
        Ok(Self {
            origin,
            registry_id: OnceLock::new(),
        })
    }

    /// The registry, when records come framed with schema ids.
    pub fn registry(&self) -> Option<&SchemaRegistry> {
        match &self.origin {
            Origin::Registry { registry, .. } => Some(registry),
            Origin::Inline(_) => None,
        }
    }

    /// The schema's text and its registry id (None inline): for a registry, the pinned
    /// version or the newest of `topic`'s subject, which must be of `schema_type`.
    pub async fn schema_text(
        &self,
        topic: &str,
        schema_type: &str,
    ) -> Result<(String, Option<u32>)> {
        let (registry, subject, pinned) = match &self.origin {
            Origin::Inline(text) => return Ok((text.clone(), None)),
            Origin::Registry {
                registry,
                subject,
                pinned,
            } => (registry, subject, pinned),
        };
        let subject = subject.clone().unwrap_or_else(|| format!("{topic}-value"));
        let found = match pinned {
            Some(id) => registry.by_id(*id).await,
            None => registry.latest(&subject).await,
        }
        .map_err(|e| EngineError::User(e.to_string()))?;
        if found.schema_type != schema_type {
            return Err(EngineError::User(format!(
                "schema {} of subject \"{subject}\" is a {} schema, not {schema_type}",
                found.id, found.schema_type
            )));
        }
        let _ = self.registry_id.set(found.id);
        Ok((found.schema, Some(found.id)))
    }

    /// The registry schema id the source was created with, for the catalog to keep.
    pub fn pinned_options(&self) -> Vec<(String, String)> {
        self.registry_id
            .get()
            .map(|id| vec![(SCHEMA_ID_OPTION.to_string(), id.to_string())])
            .unwrap_or_default()
    }
}

/// The schema id of a record in the Confluent wire format, and the bytes after the frame
/// header; an error saying what is wrong otherwise.
pub fn confluent_frame(record: &[u8]) -> std::result::Result<(u32, &[u8]), String> {
    match record {
        [0, a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        [0, ..] => Err(format!(
            "record of {} bytes is too short for the Confluent wire format (magic byte 0 and a \
             4-byte schema id)",
            record.len()
        )),
        [] => Err("empty record".to_string()),
        [magic, ..] => Err(format!(
            "record does not start with the Confluent wire format's magic byte 0 (found {magic})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_or_refused_with_the_reason() {
        assert_eq!(
            confluent_frame(&[0, 0, 0, 1, 2, 9, 9]),
            Ok((258, &[9u8, 9][..]))
        );
        assert_eq!(confluent_frame(&[0, 0, 0, 0, 7]), Ok((7, &[][..])));
        assert!(
            confluent_frame(&[0, 0, 1])
                .unwrap_err()
                .contains("too short")
        );
        assert!(
            confluent_frame(b"{\"a\":1}")
                .unwrap_err()
                .contains("magic byte")
        );
        assert!(confluent_frame(&[]).unwrap_err().contains("empty"));
    }

    #[test]
    fn only_http_urls() {
        assert!(SchemaRegistry::new("localhost:8081").is_err());
        assert!(SchemaRegistry::new("http://127.0.0.1:8081/").is_ok());
    }
}
