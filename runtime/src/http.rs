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
use tracing::{debug, warn};

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

/// Serves `router` on the Unix socket `listener` as [`serve`] does, on a thread and a
/// single-threaded runtime of its own, until `stop` fires. A request is answered on the thread
/// that its socket woke, without waking the process's other threads, and however many arrive,
/// they cannot hold up the work of the process's main runtime. The future this returns ends when
/// serving has ended.
pub fn serve_on_own_thread(
    name: &str,
    listener: std::os::unix::net::UnixListener,
    router: Router,
    stop: CancellationToken,
) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (ended, on_end) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        runtime.block_on(async move {
            match tokio::net::UnixListener::from_std(listener) {
                Ok(listener) => serve(listener, router, stop).await,
                Err(err) => warn!(error = %err, "cannot serve the socket"),
            }
        });
        drop(ended);
    })?;
    Ok(async move {
        let _ = on_end.await;
    })
}
