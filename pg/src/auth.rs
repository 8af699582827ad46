//! Who may connect: `--auth none` (the demo's default, loopback only unless
//! `--allow-unauthenticated-network`) or `--auth password`, SCRAM-SHA-256 against the users of
//! `--users-file`; and TLS for every connection when `--tls-cert`/`--tls-key` are given (clients
//! asking for SSL otherwise get PostgreSQL's 'N' and go on in plain text).
//!
//! The users file has one `name:password` per line (`#` starts a comment). Passwords are salted
//! and hashed (PBKDF2, 4096 rounds, a random salt per start) when the file is read, and only the
//! salted form is kept in memory; the file itself holds them in clear, so keep it `chmod 600`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use pgwire::api::auth::sasl::scram::{SCRAM_ITERATIONS, gen_salted_password};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::{PgWireError, PgWireResult};
use rand::RngCore;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use std::path::PathBuf;

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Anyone who can reach the port (loopback only, unless the network is trusted).
    #[default]
    None,
    /// SCRAM-SHA-256 passwords from a users file.
    Password,
}

/// The security flags as the server was given them, before they are checked.
#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// Where the server listens.
    pub listen: SocketAddr,
    /// How clients authenticate.
    pub auth: AuthMode,
    /// Users for [`AuthMode::Password`]: one `name:password` per line.
    pub users_file: Option<PathBuf>,
    /// Accept unauthenticated clients on a non-loopback address.
    pub allow_unauthenticated_network: bool,
    /// TLS certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
}

/// Why the server refuses to start with the given security flags.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "refusing to accept unauthenticated clients on {0}, which is not a loopback address: \
         use --auth password --users-file FILE, or --allow-unauthenticated-network if the network is trusted"
    )]
    OpenToNetwork(SocketAddr),
    #[error("--auth password needs --users-file FILE (lines of name:password)")]
    NoUsersFile,
    #[error("users file {path}: {reason}")]
    UsersFile { path: String, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
}

/// The server's security settings, checked and loaded once at start.
#[derive(Clone, Default)]
pub struct Security {
    /// Users for SCRAM (None: no authentication).
    pub users: Option<Arc<Users>>,
    /// TLS for clients that ask for it.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The certificate, for SCRAM-SHA-256-PLUS channel binding.
    pub certificate_pem: Option<Vec<u8>>,
}

impl Security {
    /// Checks the settings against the listen address and loads users and certificates.
    pub fn from_settings(args: &SecuritySettings) -> Result<Self, AuthError> {
        let users = match args.auth {
            AuthMode::None => {
                if !args.listen.ip().is_loopback() && !args.allow_unauthenticated_network {
                    return Err(AuthError::OpenToNetwork(args.listen));
                }
                None
            }
            AuthMode::Password => {
                let path = args.users_file.as_deref().ok_or(AuthError::NoUsersFile)?;
                Some(Arc::new(Users::load(path)?))
            }
        };
        let (tls, certificate_pem) = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                let (acceptor, pem) = tls_acceptor(cert, key)?;
                (Some(acceptor), Some(pem))
            }
            (None, None) => (None, None),
            _ => {
                return Err(AuthError::Tls(
                    "--tls-cert and --tls-key go together".into(),
                ));
            }
        };
        Ok(Self {
            users,
            tls,
            certificate_pem,
        })
    }
}

/// Users and their salted passwords.
#[derive(Debug, Default)]
pub struct Users {
    salted: HashMap<String, Password>,
}

impl Users {
    /// Reads a users file.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let error = |reason: String| AuthError::UsersFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        Self::parse(&text).map_err(error)
    }

    /// Parses `name:password` lines.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut salted = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, password)) = line.split_once(':') else {
                return Err(format!("line {}: expected name:password", number + 1));
            };
            let name = name.trim();
            if name.is_empty() || password.is_empty() {
                return Err(format!("line {}: empty name or password", number + 1));
            }
            let mut salt = vec![0u8; 16];
            rand::rng().fill_bytes(&mut salt);
            let hashed = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
            salted.insert(name.to_string(), Password::new(Some(salt), hashed));
        }
        if salted.is_empty() {
            return Err("no users".into());
        }
        Ok(Self { salted })
    }

    /// Whether `password` is `user`'s (HTTP Basic credentials of the JSON API): salted and
    /// hashed as the stored one was, compared without stopping at the first difference.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let Some(stored) = self.salted.get(user) else {
            return false;
        };
        let Some(salt) = stored.salt() else {
            return false;
        };
        let hashed = gen_salted_password(password, salt, SCRAM_ITERATIONS);
        let expected = stored.password();
        hashed.len() == expected.len()
            && hashed
                .iter()
                .zip(expected)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

#[async_trait]
impl AuthSource for Users {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        // An unknown user fails exactly as a wrong password does, naming nothing more.
        self.salted
            .get(user)
            .cloned()
            .ok_or_else(|| PgWireError::InvalidPassword(user.to_string()))
    }
}

fn tls_acceptor(
    cert: &Path,
    key: &Path,
) -> Result<(tokio_rustls::TlsAcceptor, Vec<u8>), AuthError> {
    let pem =
        std::fs::read(cert).map_err(|e| AuthError::Tls(format!("{}: {e}", cert.display())))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AuthError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(AuthError::Tls(format!(
            "{}: no certificate",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| AuthError::Tls(format!("{}: {e}", key.display())))?;
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| AuthError::Tls(e.to_string()))?;
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), pem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_password_verifies_and_no_other_does() {
        let users = Users::parse("alice:s3cret\nbob:hunter2\n").unwrap();
        assert!(users.verify("alice", "s3cret"));
        assert!(!users.verify("alice", "hunter2"));
        assert!(!users.verify("carol", "s3cret"));
        assert!(!users.verify("alice", ""));
    }

    #[test]
    fn users_file_lines() {
        let users = Users::parse("# who\nalice:s3cret:with:colons\n\n bob : pw\n").unwrap();
        assert_eq!(users.salted.len(), 2);
        assert!(users.salted.contains_key("alice") && users.salted.contains_key("bob"));
        assert!(Users::parse("alice").unwrap_err().contains("line 1"));
        assert!(Users::parse("# nobody\n").is_err());
    }
}
