//! One HTTP/1.1 serving loop for every plain listener of both binaries (the sidecar's Unix socket,
//! the admin TCP ports), with limits that keep slow or hostile clients from holding resources.

use std::{future::Future, time::Duration};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// The longest a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// A listener whose connections can be served.
pub trait Listener: Send + 'static {
    /// One accepted connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Waits for the next connection.
    fn accept_io(&self) -> impl Future<Output = std::io::Result<Self::Io>> + Send;
}

impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept_io(&self) -> std::io::Result<Self::Io> {
        self.accept().await.map(|(io, _)| io)
    }
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept_io(&self) -> std::io::Result<Self::Io> {
        let (io, _) = self.accept().await?;
        io.set_nodelay(true)?;
        Ok(io)
    }
}

/// Serves `router` on every connection of `listener`, until `stop` fires.
pub async fn serve<L: Listener>(listener: L, router: Router, stop: CancellationToken) {
    loop {
        let io = tokio::select! {
            () = stop.cancelled() => return,
            io = listener.accept_io() => io,
        };
        let io = match io {
            Ok(io) => io,
            Err(err) => {
                debug!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(io), service);
            if let Err(err) = connection.await {
                debug!(error = %err, "connection ended with an error");
            }
        });
    }
}
