//! One connection's identity and run-time parameters: what `SET`, `SHOW`, `RESET`,
//! `current_setting` and `set_config` read and write, and what `pg_settings` lists.
//!
//! Weir claims a PostgreSQL 15 server (psql 15 then sends the SQL it sends to PostgreSQL 15; see
//! clients.md §2.3). Parameters clients only read (`server_version`, `integer_datetimes`, …) are
//! fixed; the ones they set (`extra_float_digits`, `application_name`, `DateStyle`, …) are kept
//! per connection; `datafusion.*` options apply to this connection's queries.

use std::collections::BTreeMap;
use std::str::FromStr;

use datafusion::arrow::array::timezone::Tz;
use parking_lot::RwLock;

use weir_sql::error::{Result, SqlError, SqlErrorKind};

/// The PostgreSQL release Weir presents itself as.
pub const SERVER_VERSION: &str = "15.8";
/// The same as `server_version_num`.
pub const SERVER_VERSION_NUM: &str = "150008";

/// `version()`: matches the pattern SQLAlchemy and others parse (`PostgreSQL <major>.<minor>`).
pub fn version_string() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} (Weir {}) on {}-unknown-linux-gnu, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    )
}

/// Whether a parameter can be changed by a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    /// Fixed for the server (`server_version`).
    Internal,
    /// Changeable per session.
    User,
}

/// A known parameter: name (lower case), default, context, description.
struct Parameter {
    name: &'static str,
    default: &'static str,
    context: Context,
    description: &'static str,
}

const fn p(
    name: &'static str,
    default: &'static str,
    context: Context,
    description: &'static str,
) -> Parameter {
    Parameter {
        name,
        default,
        context,
        description,
    }
}

const PARAMETERS: &[Parameter] = &[
    p(
        "application_name",
        "",
        Context::User,
        "Sets the application name to be reported in statistics and logs.",
    ),
    p(
        "block_size",
        "8192",
        Context::Internal,
        "Shows the size of a disk block.",
    ),
    p(
        "bytea_output",
        "hex",
        Context::User,
        "Sets the output format for bytea.",
    ),
    p(
        "client_encoding",
        "UTF8",
        Context::User,
        "Sets the client's character set encoding.",
    ),
    p(
        "client_min_messages",
        "notice",
        Context::User,
        "Sets the message levels that are sent to the client.",
    ),
    p(
        "datestyle",
        "ISO, MDY",
        Context::User,
        "Sets the display format for date and time values.",
    ),
    p(
        "default_table_access_method",
        "heap",
        Context::User,
        "Sets the default table access method for new tables.",
    ),
    p(
        "default_transaction_isolation",
        "read committed",
        Context::User,
        "Sets the transaction isolation level of each new transaction.",
    ),
    p(
        "default_transaction_read_only",
        "off",
        Context::User,
        "Sets the default read-only status of new transactions.",
    ),
    p(
        "extra_float_digits",
        "1",
        Context::User,
        "Sets the number of digits displayed for floating-point values.",
    ),
    p(
        "idle_in_transaction_session_timeout",
        "0",
        Context::User,
        "Sets the maximum allowed idle time between queries, when in a transaction.",
    ),
    p(
        "in_hot_standby",
        "off",
        Context::Internal,
        "Shows whether hot standby is currently active.",
    ),
    p(
        "integer_datetimes",
        "on",
        Context::Internal,
        "Shows whether datetimes are integer based.",
    ),
    p(
        "intervalstyle",
        "postgres",
        Context::User,
        "Sets the display format for interval values.",
    ),
    p(
        "is_superuser",
        "on",
        Context::Internal,
        "Shows whether the current user is a superuser.",
    ),
    p("jit", "off", Context::User, "Allow JIT compilation."),
    p(
        "lc_collate",
        "C.UTF-8",
        Context::Internal,
        "Shows the collation order locale.",
    ),
    p(
        "lc_ctype",
        "C.UTF-8",
        Context::Internal,
        "Shows the character classification and case conversion locale.",
    ),
    p(
        "lc_messages",
        "C.UTF-8",
        Context::User,
        "Sets the language in which messages are displayed.",
    ),
    p(
        "lc_monetary",
        "C.UTF-8",
        Context::User,
        "Sets the locale for formatting monetary amounts.",
    ),
    p(
        "lc_numeric",
        "C.UTF-8",
        Context::User,
        "Sets the locale for formatting numbers.",
    ),
    p(
        "lc_time",
        "C.UTF-8",
        Context::User,
        "Sets the locale for formatting date and time values.",
    ),
    p(
        "lock_timeout",
        "0",
        Context::User,
        "Sets the maximum allowed duration of any wait for a lock.",
    ),
    p(
        "max_identifier_length",
        "63",
        Context::Internal,
        "Shows the maximum identifier length.",
    ),
    p(
        "max_index_keys",
        "32",
        Context::Internal,
        "Shows the maximum number of index keys.",
    ),
    p(
        "search_path",
        "\"$user\", public",
        Context::User,
        "Sets the schema search order for names that are not schema-qualified.",
    ),
    p(
        "server_encoding",
        "UTF8",
        Context::Internal,
        "Shows the server (database) character set encoding.",
    ),
    p(
        "server_version",
        SERVER_VERSION,
        Context::Internal,
        "Shows the server version.",
    ),
    p(
        "server_version_num",
        SERVER_VERSION_NUM,
        Context::Internal,
        "Shows the server version as an integer.",
    ),
    p(
        "session_authorization",
        "",
        Context::Internal,
        "Sets the session user name.",
    ),
    p(
        "standard_conforming_strings",
        "on",
        Context::User,
        "Causes '...' strings to treat backslashes literally.",
    ),
    p(
        "statement_timeout",
        "0",
        Context::User,
        "Sets the maximum allowed duration of any statement.",
    ),
    p(
        "synchronous_commit",
        "on",
        Context::User,
        "Sets the current transaction's synchronization level.",
    ),
    p(
        "timezone",
        "UTC",
        Context::User,
        "Sets the time zone for displaying and interpreting time stamps.",
    ),
    p(
        "transaction_isolation",
        "read committed",
        Context::User,
        "Sets the current transaction's isolation level.",
    ),
    p(
        "transaction_read_only",
        "off",
        Context::User,
        "Sets the current transaction's read-only status.",
    ),
    p(
        "work_mem",
        "4MB",
        Context::User,
        "Sets the maximum memory to be used for query workspaces.",
    ),
];

/// Spellings `SHOW` accepts for parameters with another canonical name.
fn canonical(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    match lower.as_str() {
        "time zone" | "time_zone" => "timezone".into(),
        "transaction isolation level" => "transaction_isolation".into(),
        "session authorization" => "session_authorization".into(),
        _ => lower,
    }
}

fn known(name: &str) -> Option<&'static Parameter> {
    PARAMETERS.iter().find(|p| p.name == name)
}

/// Who is connected, and their parameters.
#[derive(Debug)]
pub struct SessionInfo {
    user: RwLock<String>,
    database: RwLock<String>,
    pid: i32,
    overrides: RwLock<BTreeMap<String, String>>,
}

impl SessionInfo {
    /// A session of `user` on `database`, numbered `pid` (`pg_backend_pid()`).
    pub fn new(user: &str, database: &str, pid: i32) -> Self {
        Self {
            user: RwLock::new(user.to_string()),
            database: RwLock::new(database.to_string()),
            pid,
            overrides: RwLock::new(BTreeMap::new()),
        }
    }

    /// Records who connected and the parameters their start-up message carried.
    pub fn set_identity(&self, user: &str, database: &str, startup: &[(String, String)]) {
        *self.user.write() = user.to_string();
        *self.database.write() = database.to_string();
        for (name, value) in startup {
            let name = canonical(name);
            if known(&name).is_some_and(|p| p.context == Context::User) {
                // A start-up value Weir cannot apply keeps the default, as the client may not
                // be able to handle an error this early.
                let value = normalize_value(&name, value);
                if check_value(&name, &value).is_ok() {
                    self.overrides.write().insert(name, value);
                }
            }
        }
    }

    /// The connected user.
    pub fn user(&self) -> String {
        self.user.read().clone()
    }

    /// The database named at connect.
    pub fn database(&self) -> String {
        self.database.read().clone()
    }

    /// `pg_backend_pid()`.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// A parameter's current value (`SHOW name`, `current_setting(name)`).
    pub fn get(&self, name: &str) -> Result<String> {
        let name = canonical(name);
        if let Some(v) = self.overrides.read().get(&name) {
            return Ok(v.clone());
        }
        match known(&name) {
            Some(p) if p.name == "session_authorization" => Ok(self.user()),
            Some(p) => Ok(p.default.to_string()),
            None => Err(unrecognized(&name)),
        }
    }

    /// `SET name = value` (`set_config`). Unknown names are refused as PostgreSQL does, except
    /// dotted ones (extension and DataFusion options).
    pub fn set(&self, name: &str, value: &str) -> Result<()> {
        let name = canonical(name);
        match known(&name) {
            Some(p) if p.context == Context::Internal => Err(SqlError::new(
                SqlErrorKind::CantChangeParameter,
                format!("parameter \"{name}\" cannot be changed"),
            )),
            Some(_) => {
                let value = normalize_value(&name, value);
                check_value(&name, &value)?;
                self.overrides.write().insert(name, value);
                Ok(())
            }
            None if name.contains('.') => {
                self.overrides.write().insert(name, value.to_string());
                Ok(())
            }
            None => Err(unrecognized(&name)),
        }
    }

    /// The zone `timestamptz` values are shown in, when it is not UTC (which Weir's own
    /// timestamps already carry).
    pub fn display_time_zone(&self) -> Option<String> {
        self.overrides
            .read()
            .get("timezone")
            .filter(|tz| tz.as_str() != "UTC")
            .cloned()
    }

    /// `RESET name`.
    pub fn reset(&self, name: &str) -> Result<()> {
        let name = canonical(name);
        if known(&name).is_none() && !name.contains('.') {
            return Err(unrecognized(&name));
        }
        self.overrides.write().remove(&name);
        Ok(())
    }

    /// `RESET ALL` / `DISCARD ALL`.
    pub fn reset_all(&self) {
        self.overrides.write().clear();
    }

    /// `datafusion.*` options this session set, to apply to its queries.
    pub fn datafusion_options(&self) -> Vec<(String, String)> {
        self.overrides
            .read()
            .iter()
            .filter(|(k, _)| k.starts_with("datafusion."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Every known parameter: (name, value, description, changeable by the session).
    pub fn all(&self) -> Vec<(String, String, &'static str, bool)> {
        let mut out: Vec<(String, String, &'static str, bool)> = PARAMETERS
            .iter()
            .map(|p| {
                (
                    p.name.to_string(),
                    self.get(p.name).unwrap_or_default(),
                    p.description,
                    p.context == Context::User,
                )
            })
            .collect();
        for (k, v) in self
            .overrides
            .read()
            .iter()
            .filter(|(k, _)| known(k).is_none())
        {
            out.push((k.clone(), v.clone(), "", true));
        }
        out
    }
}

/// PostgreSQL reports some values in a canonical spelling (`client_encoding 'utf-8'` is `UTF8`).
fn normalize_value(name: &str, value: &str) -> String {
    let value = value.trim().trim_matches('\'');
    match name {
        "client_encoding"
            if value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8") =>
        {
            "UTF8".to_string()
        }
        "timezone"
            if ["utc", "gmt", "z", "zulu", "etc/utc", "universal"]
                .iter()
                .any(|u| value.eq_ignore_ascii_case(u)) =>
        {
            "UTC".to_string()
        }
        _ => value.to_string(),
    }
}

/// Refuses values Weir cannot apply: a `TimeZone` must be an IANA name or a `±hh:mm` offset,
/// as timestamps are rendered in it.
fn check_value(name: &str, value: &str) -> Result<()> {
    if name == "timezone" && Tz::from_str(value).is_err() {
        return Err(SqlError::new(
            SqlErrorKind::InvalidParameter,
            format!("invalid value for parameter \"TimeZone\": \"{value}\""),
        ));
    }
    Ok(())
}

fn unrecognized(name: &str) -> SqlError {
    SqlError::new(
        SqlErrorKind::UndefinedObject,
        format!("unrecognized configuration parameter \"{name}\""),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_show_reset() {
        let s = SessionInfo::new("weir", "weir", 1);
        assert_eq!(
            s.get("server_version_num").ok().as_deref(),
            Some(SERVER_VERSION_NUM)
        );
        assert_eq!(
            s.get("TRANSACTION ISOLATION LEVEL").ok().as_deref(),
            Some("read committed")
        );
        assert!(s.set("extra_float_digits", "3").is_ok());
        assert_eq!(s.get("extra_float_digits").ok().as_deref(), Some("3"));
        assert!(
            matches!(s.set("server_version", "9"), Err(e) if e.kind() == SqlErrorKind::CantChangeParameter)
        );
        assert!(matches!(s.get("no_such"), Err(e) if e.kind() == SqlErrorKind::UndefinedObject));
        assert!(s.set("myapp.flag", "x").is_ok());
        s.reset_all();
        assert_eq!(s.get("extra_float_digits").ok().as_deref(), Some("1"));
        assert_eq!(s.get("session_authorization").ok().as_deref(), Some("weir"));
    }

    #[test]
    fn time_zones_are_checked_and_normalised() {
        let s = SessionInfo::new("weir", "weir", 1);
        assert_eq!(s.display_time_zone(), None);
        assert!(s.set("TimeZone", "'Europe/Berlin'").is_ok());
        assert_eq!(s.display_time_zone().as_deref(), Some("Europe/Berlin"));
        assert!(s.set("timezone", "+05:30").is_ok());
        assert!(
            matches!(s.set("timezone", "Mars/Olympus"), Err(e) if e.kind() == SqlErrorKind::InvalidParameter)
        );
        assert_eq!(s.get("TimeZone").ok().as_deref(), Some("+05:30"));
        assert!(s.set("time zone", "utc").is_ok());
        assert_eq!(s.get("timezone").ok().as_deref(), Some("UTC"));
        assert_eq!(s.display_time_zone(), None);
        // A start-up value that cannot be applied keeps the default.
        s.set_identity("weir", "weir", &[("TimeZone".into(), "Nowhere".into())]);
        assert_eq!(s.get("timezone").ok().as_deref(), Some("UTC"));
    }

    #[test]
    fn startup_parameters_are_normalised() {
        let s = SessionInfo::new("", "", 1);
        s.set_identity(
            "alice",
            "db",
            &[
                ("client_encoding".into(), "'utf-8'".into()),
                ("user".into(), "alice".into()),
            ],
        );
        assert_eq!(s.get("client_encoding").ok().as_deref(), Some("UTF8"));
        assert_eq!(s.user(), "alice");
        assert!(version_string().starts_with("PostgreSQL 15.8 "));
    }
}
