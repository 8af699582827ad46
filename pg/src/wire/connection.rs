//! One client connection: TLS negotiation and the message loop of pgwire's `process_socket`,
//! with the client's bytes passed through [`GuardedStream`] and two answers pgwire does not
//! give: a malformed message gets an ErrorResponse (08P01) and a clean close instead of a
//! dropped socket, and a panic while handling a message (a bug) gets an ErrorResponse (XX000)
//! and a logged error instead of a silently dropped client. Other connections never notice.

use std::io;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::server::{
    MaybeTls, PgWireMessageServerCodec, negotiate_tls, process_error, process_message,
};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};
use tracing::{error, warn};

use super::frames::{GuardedStream, violation_of};
use crate::wire::errors::printable;

/// A client that has not finished starting up in this long is dropped (as pgwire does).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection's framed, guarded socket; `S` is the prepared-statement type.
type Socket<S> = Framed<GuardedStream<MaybeTls>, PgWireMessageServerCodec<S>>;

/// Serves one client until it leaves.
pub async fn serve_connection<H>(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: H,
) -> io::Result<()>
where
    H: PgWireServerHandlers,
{
    let startup_timeout = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_timeout);
    let negotiated = tokio::select! {
        _ = &mut startup_timeout => return Ok(()),
        socket = negotiate_tls(tcp, tls) => socket?,
    };
    let Some(negotiated) = negotiated else {
        // Direct TLS without a certificate configured.
        return Ok(());
    };
    let old = negotiated.into_parts();
    let guarded = GuardedStream::new(old.io, old.read_buf, true);
    let mut parts = FramedParts::new(guarded, old.codec);
    parts.write_buf = old.write_buf;
    let mut socket = Framed::from_parts(parts);

    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let next = if starting {
            tokio::select! {
                _ = &mut startup_timeout => None,
                m = socket.next() => m,
            }
        } else {
            socket.next().await
        };
        let message = match next {
            None => return Ok(()),
            Some(Ok(message)) => message,
            Some(Err(e)) => return refuse(&mut socket, &e).await,
        };
        // A client that sends Terminate waits for the server to close (asyncpg does).
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        let extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let handled = process_message(
            message,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        );
        match AssertUnwindSafe(handled).catch_unwind().await {
            Ok(Ok(())) => {}
            Ok(Err(mut e)) => {
                errors.on_error(&socket, &mut e);
                process_error(&mut socket, e, extended_query).await?;
            }
            Err(panic) => {
                let what = weir_engine::error::panic_message(&*panic);
                error!(peer = %socket.socket_addr(), panic = %what, "a bug while handling a client message; closing that connection");
                let info = ErrorInfo::new(
                    "FATAL".to_string(),
                    "XX000".to_string(),
                    format!(
                        "internal error while handling the message: {}",
                        printable(&what)
                    ),
                );
                return say_goodbye(&mut socket, info).await;
            }
        }
    }
}

/// Answers a message that could not be read with a FATAL ErrorResponse, then closes.
async fn refuse<S>(socket: &mut Socket<S>, e: &PgWireError) -> io::Result<()> {
    let message = match e {
        PgWireError::IoError(io) => match violation_of(io) {
            Some(violation) => violation.to_string(),
            // The socket itself failed: nobody is left to answer.
            None => return Ok(()),
        },
        other => format!("invalid frontend message: {other}"),
    };
    warn!(peer = %socket.socket_addr(), error = %message, "protocol violation; closing the connection");
    let info = ErrorInfo::new(
        "FATAL".to_string(),
        "08P01".to_string(),
        printable(&message),
    );
    say_goodbye(socket, info).await
}

async fn say_goodbye<S>(socket: &mut Socket<S>, info: ErrorInfo) -> io::Result<()> {
    let _ = socket
        .send(PgWireBackendMessage::ErrorResponse(info.into()))
        .await;
    let _ = SinkExt::<PgWireBackendMessage>::close(socket).await;
    Ok(())
}
