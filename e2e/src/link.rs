//! A TCP link between one process and the API server that a test controls: up, cut (a black
//! hole: bytes stop moving both ways, as when a network partitions, and move again when it heals),
//! or slow (every chunk delayed).

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

use crate::Error;

/// What the link does to the bytes crossing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Bytes pass at once.
    Up,
    /// Nothing passes; connections stay open and resume when the link is up again.
    Cut,
    /// Every chunk waits this long before it is passed on.
    Slow(Duration),
}

/// A running link: a listener on 127.0.0.1 that forwards to a target.
#[derive(Debug)]
pub struct Link {
    address: SocketAddr,
    state: watch::Sender<LinkState>,
    task: JoinHandle<()>,
}

impl Link {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> Result<Link, Error> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| Error::io("listen for a link", e))?;
        let address = listener
            .local_addr()
            .map_err(|e| Error::io("read a link's address", e))?;
        let (state, _) = watch::channel(LinkState::Up);
        let states = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(forward(inbound, target, states.subscribe()));
            }
        });
        Ok(Link { address, state, task })
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Changes what the link does, for every connection at once.
    pub fn set(&self, state: LinkState) {
        self.state.send_replace(state);
    }

    /// Writes a copy of `kubeconfig` whose server is reached through this link.
    pub fn kubeconfig(&self, kubeconfig: &Path, out: &Path) -> Result<(), Error> {
        kubeconfig_for_server(kubeconfig, &format!("https://{}", self.address), out)
    }
}

/// Writes a copy of `kubeconfig` with every cluster's server set to `server`.
pub fn kubeconfig_for_server(kubeconfig: &Path, server: &str, out: &Path) -> Result<(), Error> {
    let text = std::fs::read_to_string(kubeconfig)
        .map_err(|e| Error::io(format!("read {}", kubeconfig.display()), e))?;
    let rewritten: Vec<String> = text
        .lines()
        .map(|line| match line.split_once("server: ") {
            Some((indent, _)) if indent.trim().is_empty() => format!("{indent}server: {server}"),
            _ => line.to_owned(),
        })
        .collect();
    std::fs::write(out, rewritten.join("\n") + "\n")
        .map_err(|e| Error::io(format!("write {}", out.display()), e))
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until the link is not cut; the delay to apply to the next chunk.
async fn passable(state: &mut watch::Receiver<LinkState>) -> Option<Duration> {
    loop {
        match *state.borrow_and_update() {
            LinkState::Up => return Some(Duration::ZERO),
            LinkState::Slow(delay) => return Some(delay),
            LinkState::Cut => {}
        }
        state.changed().await.ok()?;
    }
}

async fn forward(inbound: TcpStream, target: SocketAddr, mut state: watch::Receiver<LinkState>) {
    // A connection made during a cut hangs, as a SYN into a partition would, until it heals.
    if passable(&mut state).await.is_none() {
        return;
    }
    let Ok(outbound) = TcpStream::connect(target).await else {
        return;
    };
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    tokio::select! {
        () = pump(in_read, out_write, state.clone()) => {}
        () = pump(out_read, in_write, state) => {}
    }
}

async fn pump(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    mut state: watch::Receiver<LinkState>,
) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let Some(delay) = passable(&mut state).await else {
            return;
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
            // A cut that began during the delay holds the chunk too.
            if passable(&mut state).await.is_none() {
                return;
            }
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
