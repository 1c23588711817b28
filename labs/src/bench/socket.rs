//! The socket's latency against its floor: one of our sidecars (leading its own application) and
//! a minimal keep-alive HTTP/1.1 responder on a Unix socket that answers every request with the
//! same bytes the sidecar's `GET /v1/status` answered, both asked by the same lean client
//! (blocking, one thread and one connection per client) in alternating rounds, with 1 and with
//! 16 clients. What the ratio shows is what our server adds to the floor of the machine.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    os::unix::net::{UnixListener, UnixStream},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use std::os::unix::ffi::OsStrExt;

use anyhow::Context;
use tokio::{process::Command, sync::mpsc};

use super::{
    Bench,
    candidates::{self, Group, Kind},
    election::{next_leader, stop},
    report::{SocketReport, SocketRun},
};

/// The request every client sends, over and over on one connection.
const REQUEST: &[u8] = b"GET /v1/status HTTP/1.1\r\nhost: localhost\r\n\r\n";

/// The largest response the lean client reads (our status is a few hundred bytes).
const MAX_RESPONSE: usize = 64 * 1024;

/// Rounds of each server per client count: the two alternate, so that a noisy moment of the
/// machine falls on both.
const ROUNDS: usize = 4;

impl Bench {
    /// Our sidecar's `GET /v1/status` and the floor, with 1 and with 16 clients.
    pub(super) async fn socket(&self) -> anyhow::Result<SocketReport> {
        let candidate = candidates::candidates(Group::Defaults)
            .into_iter()
            .find(|c| matches!(c.kind, Kind::Ours { .. }))
            .context("our candidate")?;
        let namespace = "bench-socket";
        self.namespace(namespace).await?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut sidecar = self.spawn(&candidate, namespace, "app", 0, &tx)?;
        next_leader(&mut rx, None, Duration::from_secs(60))
            .await
            .context("our sidecar did not lead its application")?;
        let ours = candidates::socket(&self.logs, namespace, "app-0");
        let body = tokio::task::spawn_blocking({
            let ours = ours.clone();
            move || ask_once(&ours)
        })
        .await??;
        let floor = floor_socket(&self.logs);
        let mut responder = Command::new(&self.bins.socket_floor)
            .arg("--socket")
            .arg(&floor)
            .arg("--body")
            .arg(std::ffi::OsStr::from_bytes(&body))
            .kill_on_drop(true)
            .spawn()
            .context("start the socket floor")?;
        wait_for_socket(&floor).await?;
        let run = self.plan.socket_run.div_f64(ROUNDS as f64);
        let mut report = SocketReport {
            response_bytes: body.len(),
            ..SocketReport::default()
        };
        for clients in [1, 16] {
            let (mut floor_samples, mut our_samples) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                floor_samples.extend(load(&floor, clients, run).await?);
                our_samples.extend(load(&ours, clients, run).await?);
            }
            let seconds = run.as_secs_f64() * ROUNDS as f64;
            let measured = SocketRun::of(clients, &floor_samples, &our_samples, seconds)?;
            self.say(format!(
                "socket, {clients} client(s): floor p50 {:.1} µs p99 {:.1} µs {:.0}/s; ours p50 {:.1} µs p99 {:.1} µs {:.0}/s; p99 ratio {:.2}",
                measured.floor_us.p50,
                measured.floor_us.p99,
                measured.floor_rps,
                measured.ours_us.p50,
                measured.ours_us.p99,
                measured.ours_rps,
                measured.p99_ratio
            ));
            report.runs.push(measured);
        }
        let _ = responder.start_kill();
        stop(&mut sidecar).await;
        self.delete_namespace(namespace).await;
        Ok(report)
    }
}

/// Waits until something listens on `path`.
async fn wait_for_socket(path: &Path) -> anyhow::Result<()> {
    for _ in 0..100 {
        if UnixStream::connect(path).is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("nothing listens on {} after 5 s", path.display())
}

/// `clients` lean clients on `socket` for `run`: every request's latency, in µs.
async fn load(socket: &Path, clients: usize, run: Duration) -> anyhow::Result<Vec<f64>> {
    let deadline = Instant::now() + run;
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let socket = socket.to_owned();
            tokio::task::spawn_blocking(move || client(&socket, deadline))
        })
        .collect();
    let mut all = Vec::new();
    for thread in threads {
        all.extend(thread.await??);
    }
    Ok(all)
}

/// One client: one connection, one request at a time until `deadline`.
fn client(socket: &Path, deadline: Instant) -> anyhow::Result<Vec<f64>> {
    let mut stream =
        UnixStream::connect(socket).with_context(|| format!("connect to {}", socket.display()))?;
    let mut buffer = vec![0; MAX_RESPONSE];
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let sent = Instant::now();
        stream.write_all(REQUEST)?;
        read_response(&mut stream, &mut buffer)?;
        latencies.push(sent.elapsed().as_secs_f64() * 1e6);
    }
    Ok(latencies)
}

/// One request, its body returned.
fn ask_once(socket: &Path) -> anyhow::Result<Vec<u8>> {
    let mut stream =
        UnixStream::connect(socket).with_context(|| format!("connect to {}", socket.display()))?;
    let mut buffer = vec![0; MAX_RESPONSE];
    stream.write_all(REQUEST)?;
    let (start, end) = read_response(&mut stream, &mut buffer)?;
    Ok(buffer[start..end].to_vec())
}

/// Reads one `200` response with a `content-length` into `buffer`: where its body starts and
/// ends. Anything else is an error.
fn read_response(stream: &mut UnixStream, buffer: &mut [u8]) -> anyhow::Result<(usize, usize)> {
    let mut filled = 0;
    loop {
        anyhow::ensure!(filled < buffer.len(), "a response over {MAX_RESPONSE} bytes");
        let n = stream.read(&mut buffer[filled..])?;
        anyhow::ensure!(n > 0, "the server closed the connection");
        filled += n;
        let Some(head_end) = buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buffer[..head_end]).context("a response head that is not text")?;
        anyhow::ensure!(
            head.starts_with("HTTP/1.1 200"),
            "not a 200: {}",
            head.lines().next().unwrap_or_default()
        );
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .context("a response without content-length")?;
        let body = head_end + 4;
        if filled >= body + length {
            anyhow::ensure!(filled == body + length, "more bytes than one response");
            return Ok((body, body + length));
        }
    }
}

/// The floor: answers every request on every connection to `listener` with `body` (as JSON),
/// one thread per connection, until the process ends.
pub fn serve_floor(listener: UnixListener, body: Vec<u8>) -> io::Result<()> {
    let mut response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    let response: &'static [u8] = response.leak();
    for stream in listener.incoming() {
        let stream = stream?;
        std::thread::spawn(move || answer(stream, response));
    }
    Ok(())
}

/// Answers each request on `stream` (a request line, headers, no body) with `response`.
fn answer(stream: UnixStream, response: &[u8]) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            writer.write_all(response)?;
        }
    }
}

/// Where the floor listens when run as its own process.
pub fn floor_socket(logs: &Path) -> PathBuf {
    logs.join("socket-floor.sock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lean_client_reads_whole_responses_from_the_floor() {
        let dir = std::env::temp_dir().join(format!("socket-floor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = floor_socket(&dir);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let body = br#"{"leader":true}"#.to_vec();
        std::thread::spawn({
            let body = body.clone();
            move || serve_floor(listener, body)
        });
        assert_eq!(ask_once(&path).unwrap(), body);
        let latencies = client(&path, Instant::now() + Duration::from_millis(50)).unwrap();
        assert!(latencies.len() > 10, "{} requests", latencies.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
