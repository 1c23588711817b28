//! Pod churn beside the operator at scale: Pod objects of the leases' applications created and
//! deleted at a steady pace (as Jobs and rollouts do), and what the operator's pod index holds
//! once they are gone (its `pods_indexed` gauge, read from its admin port).

use std::{collections::VecDeque, net::SocketAddr, time::Duration};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use leadership_e2e::units::unit_pod_as;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{Instant, MissedTickBehavior, interval, sleep},
};
use tokio_util::sync::CancellationToken;

/// Pod objects created (and as many deleted) a second.
pub const CHURN_PER_S: f64 = 50.0;
/// Churned pods alive at once: each lives about this many churn ticks.
const ALIVE: usize = 100;

/// Creates a pod a tick (its application one of `applications`, in turn) and deletes the oldest
/// beyond [`ALIVE`], until `stop`; then deletes the rest. The pods created.
pub async fn churn_pods(
    api: Api<Pod>,
    applications: Vec<String>,
    stop: CancellationToken,
) -> anyhow::Result<usize> {
    let mut alive = VecDeque::new();
    let mut created = 0usize;
    let mut ticks = interval(Duration::from_secs_f64(1.0 / CHURN_PER_S));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while !stop.is_cancelled() {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let name = format!("churn-{created}");
        let application = &applications[created % applications.len()];
        api.create(
            &PostParams::default(),
            &unit_pod_as(&name, None, Some(application)),
        )
        .await?;
        alive.push_back(name);
        created += 1;
        if alive.len() > ALIVE
            && let Some(oldest) = alive.pop_front()
        {
            api.delete(&oldest, &DeleteParams::default()).await?;
        }
    }
    for name in alive {
        api.delete(&name, &DeleteParams::default()).await?;
    }
    Ok(created)
}

/// The value of the operator's gauge `name` (without its prefix), read from its admin port.
pub async fn operator_gauge(admin: SocketAddr, name: &str) -> anyhow::Result<f64> {
    let mut stream = TcpStream::connect(admin).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: operator\r\nConnection: close\r\n\r\n")
        .await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    let wanted = format!("leadership_operator_{name} ");
    reply
        .lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no gauge {wanted:?} on the operator's /metrics"))
}

/// Waits (up to `within`) until the operator's pod index holds no more than `size` pods; what it
/// holds then.
pub async fn index_settles(admin: SocketAddr, size: f64, within: Duration) -> anyhow::Result<f64> {
    let deadline = Instant::now() + within;
    loop {
        let indexed = operator_gauge(admin, "pods_indexed").await?;
        if indexed <= size || Instant::now() >= deadline {
            return Ok(indexed);
        }
        sleep(Duration::from_millis(200)).await;
    }
}
