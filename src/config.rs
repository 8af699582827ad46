//! `weir --config weir.toml`: the server's settings in a file. Every flag of `weir serve` is a key
//! of the same name (`data-dir = "…"`), plus `log-level`; a key the server does not know is an
//! error naming it, so a typo never silently leaves a default in place. A flag given on the
//! command line or through its `WEIR_…` environment variable wins over the file, and the file over
//! the built-in default. `examples/weir.toml` documents every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;

use crate::cli::{AuthMode, ServeArgs};

/// The keys of a configuration file; absent keys leave the flag's value alone.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    checkpoint_url: Option<String>,
    /// A duration as the flag takes it (`10s`, `500ms`).
    checkpoint_interval: Option<String>,
    no_demo: Option<bool>,
    demo_script: Option<PathBuf>,
    /// `none` or `password`.
    auth: Option<String>,
    users_file: Option<PathBuf>,
    allow_unauthenticated_network: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    workers: Option<u16>,
    http: Option<SocketAddr>,
    log_level: Option<String>,
}

impl FileConfig {
    /// Reads and checks the file at `path`. Relative paths in it are relative to the file's
    /// directory, so a config file works from wherever the server is started.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
        let mut config: FileConfig =
            toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.data_dir,
            &mut config.demo_script,
            &mut config.users_file,
            &mut config.tls_cert,
            &mut config.tls_key,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(w) = config.workers
            && !(1..=1024).contains(&w)
        {
            return Err(format!(
                "config file {}: workers = {w} is not in 1..=1024",
                path.display()
            ));
        }
        Ok(config)
    }

    /// The file's log level, unless the command line or environment set one.
    pub fn log_level(&self, matches: &ArgMatches, current: &str) -> String {
        match &self.log_level {
            Some(level) if !explicit(matches, "log_level") => level.clone(),
            _ => current.to_string(),
        }
    }

    /// Sets each flag of `serve` that the command line and environment left at its default
    /// to the file's value. `matches` are the `serve` flags' matches.
    pub fn apply(&self, serve: &mut ServeArgs, matches: &ArgMatches) -> Result<(), String> {
        let unset = |id: &str| !explicit(matches, id);
        if let Some(v) = self.listen
            && unset("listen")
        {
            serve.listen = v;
        }
        if let Some(v) = &self.data_dir
            && unset("data_dir")
        {
            serve.data_dir = v.clone();
        }
        if let Some(v) = &self.checkpoint_url
            && unset("checkpoint_url")
        {
            serve.checkpoint_url = Some(v.clone());
        }
        if let Some(v) = &self.checkpoint_interval
            && unset("checkpoint_interval")
        {
            serve.checkpoint_interval = humantime::parse_duration(v)
                .map_err(|e| format!("checkpoint-interval = \"{v}\": {e}"))?;
        }
        if let Some(v) = self.no_demo
            && unset("no_demo")
        {
            serve.no_demo = v;
        }
        if let Some(v) = &self.demo_script
            && unset("demo_script")
        {
            serve.demo_script = Some(v.clone());
        }
        if let Some(v) = &self.auth
            && unset("auth")
        {
            serve.auth = match v.as_str() {
                "none" => AuthMode::None,
                "password" => AuthMode::Password,
                other => {
                    return Err(format!(
                        "auth = \"{other}\": expected \"none\" or \"password\""
                    ));
                }
            };
        }
        if let Some(v) = &self.users_file
            && unset("users_file")
        {
            serve.users_file = Some(v.clone());
        }
        if let Some(v) = self.allow_unauthenticated_network
            && unset("allow_unauthenticated_network")
        {
            serve.allow_unauthenticated_network = v;
        }
        if let Some(v) = &self.tls_cert
            && unset("tls_cert")
        {
            serve.tls_cert = Some(v.clone());
        }
        if let Some(v) = &self.tls_key
            && unset("tls_key")
        {
            serve.tls_key = Some(v.clone());
        }
        if let Some(v) = self.workers
            && unset("workers")
        {
            serve.workers = Some(v);
        }
        if let Some(v) = self.http
            && unset("http")
        {
            serve.http = Some(v);
        }
        if serve.tls_cert.is_some() != serve.tls_key.is_some() {
            return Err("tls-cert and tls-key go together".into());
        }
        Ok(())
    }
}

/// True when flag `id` was given on the command line or through its environment variable.
fn explicit(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}
