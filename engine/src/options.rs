//! `WITH (key = 'value', …)` options. Connectors take the options they understand; whatever is
//! left afterwards is an error naming the unknown option, so a typo never passes silently.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{EngineError, Result};

/// Options of one `WITH (…)` clause, consumed as they are read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Remaining options, keys lower-cased.
    values: BTreeMap<String, String>,
    /// What the options belong to, for error messages (e.g. `source "readings"`).
    context: String,
}

impl Options {
    /// Options from key/value pairs; a repeated key is an error.
    pub fn new(context: impl Into<String>, pairs: Vec<(String, String)>) -> Result<Self> {
        let context = context.into();
        let mut values = BTreeMap::new();
        for (k, v) in pairs {
            let k = k.to_ascii_lowercase();
            if values.insert(k.clone(), v).is_some() {
                return Err(EngineError::User(format!(
                    "option \"{k}\" given twice for {context}"
                )));
            }
        }
        Ok(Self { values, context })
    }

    /// Takes an optional string option.
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.values.remove(key)
    }

    /// Takes every option whose key starts with `prefix`, returning keys without the prefix.
    pub fn take_prefixed(&mut self, prefix: &str) -> Vec<(String, String)> {
        let keys: Vec<String> = self
            .values
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| {
                self.values
                    .remove(&k)
                    .map(|v| (k[prefix.len()..].to_string(), v))
            })
            .collect()
    }

    /// Takes a required string option.
    pub fn take_required(&mut self, key: &str) -> Result<String> {
        self.take(key).ok_or_else(|| {
            EngineError::User(format!(
                "missing required option \"{key}\" for {}",
                self.context
            ))
        })
    }

    /// Takes an option parsed with `FromStr`.
    pub fn take_parsed<T: std::str::FromStr>(&mut self, key: &str) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v.trim().parse::<T>().map(Some).map_err(|e| {
                EngineError::User(format!(
                    "invalid value '{v}' for option \"{key}\" of {}: {e}",
                    self.context
                ))
            }),
        }
    }

    /// Takes a duration option (`'30s'`, `'5 minutes'`, `'250ms'`).
    pub fn take_duration(&mut self, key: &str) -> Result<Option<Duration>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => parse_duration(&v).map(Some).map_err(|e| {
                EngineError::User(format!(
                    "invalid duration '{v}' for option \"{key}\" of {}: {e}",
                    self.context
                ))
            }),
        }
    }

    /// Errors if any option was not taken.
    pub fn finish(self) -> Result<()> {
        match self.values.keys().next() {
            None => Ok(()),
            Some(key) => Err(EngineError::User(format!(
                "unknown option \"{key}\" for {}",
                self.context
            ))),
        }
    }

    /// The context string.
    pub fn context(&self) -> &str {
        &self.context
    }
}

/// Parses `'30s'`, `'5 minutes'`, `'1h 30m'`, `'250ms'`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
        return Err("must be a non-negative number of seconds".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit after '{rest}'"))?;
        if digits == 0 {
            return Err(format!("expected a number at '{rest}'"));
        }
        let value: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("bad number '{}'", &rest[..digits]))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let per_unit = match unit.to_ascii_lowercase().as_str() {
            "ns" | "nanosecond" | "nanoseconds" => 1e-9,
            "us" | "microsecond" | "microseconds" => 1e-6,
            "ms" | "millisecond" | "milliseconds" => 1e-3,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            other => return Err(format!("unknown unit '{other}'")),
        };
        total += Duration::from_secs_f64(value * per_unit);
        rest = rest[unit_len..].trim_start();
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_option_is_named() {
        let mut o = Options::new(
            "source \"s\"",
            vec![("Topic".into(), "t".into()), ("tpoic".into(), "x".into())],
        )
        .unwrap();
        assert_eq!(o.take("topic").as_deref(), Some("t"));
        let err = o.finish().unwrap_err().to_string();
        assert!(err.contains("unknown option \"tpoic\""), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_duration("5 minutes").unwrap(),
            Duration::from_secs(300)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5 parsecs").is_err());
    }
}
