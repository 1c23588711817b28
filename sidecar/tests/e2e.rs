//! Three sidecars for one application on the real control plane: one leader, and handovers on
//! release, SIGTERM, SIGKILL (the operator clears the dead leader's claim) and SIGSTOP (units that
//! judge expiry themselves, `--expiry-authority units`); the term rises at every change; the wait
//! and watch routes fire on the changes; the CLI answers as an exec probe.

mod common;

use std::{process::Command, time::Duration};

use common::{PROMPTLY, Sidecar, leader, next_leader, three, three_with};
use futures::StreamExt;
use http::Method;
use nix::sys::signal::Signal;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::UnixStream,
    time::{Instant, sleep, timeout},
};

#[tokio::test]
async fn exactly_one_leader_and_release_hands_over_at_once() {
    let ns = common::namespace().await;
    let sidecars = three(&ns, "web").await;
    let (first, status) = leader(&sidecars, PROMPTLY).await;
    assert!(status.term >= 1);
    assert!(status.guaranteed_for_ms >= 2000, "{status:?}");
    // Every sidecar's view converges on the holder (each learns of it from its watch).
    for sidecar in &sidecars {
        let deadline = Instant::now() + PROMPTLY;
        loop {
            let seen = sidecar.status().await.unwrap();
            if seen.holder.as_deref() == Some(sidecars[first].unit.as_str()) {
                assert_eq!(seen.term, status.term);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never saw the holder: {seen:?}",
                sidecar.unit
            );
            sleep(Duration::from_millis(20)).await;
        }
    }
    let released_at = Instant::now();
    assert!(sidecars[first].client().release().await.unwrap());
    let (second, after) = leader(&sidecars, PROMPTLY).await;
    let handover = released_at.elapsed();
    assert_ne!(first, second, "the releasing unit holds off");
    assert!(
        after.term > status.term,
        "the term rises: {} -> {}",
        status.term,
        after.term
    );
    assert!(
        handover < Duration::from_secs(4),
        "a release hands over without waiting for expiry: {handover:?}"
    );
    let token = sidecars[second].client().token().await.unwrap();
    assert_eq!(token.term, after.term);
    let refused = sidecars[first].client().token().await.unwrap_err();
    assert!(refused.is_not_leader(), "{refused}");
}

#[tokio::test]
async fn a_claim_asked_for_before_the_first_claim_waits_for_its_outcome() {
    use leadership_e2e::link::{Link, LinkState};
    let ns = common::namespace().await;
    leadership_e2e::units::pod(&ns, "early-0").await;
    // A slow link to the API server (every chunk held 100 ms) makes the first read and claim take
    // seconds; a claim ticket waits for them for up to the claim duration (10 s here).
    let env = leadership_e2e::testenv::shared();
    let link = Link::start(env.api_address()).await.unwrap();
    link.set(LinkState::Slow(Duration::from_millis(100)));
    let kubeconfig = std::env::temp_dir().join(format!("{}-early.kubeconfig", ns.name));
    link.kubeconfig(env.kubeconfig(), &kubeconfig).unwrap();
    let sidecar = Sidecar::spawn_with(&ns, "early", "early-0", &kubeconfig, Duration::from_secs(10), &[]);
    // Ask as soon as the socket answers: the first read and claim are still under way.
    let deadline = Instant::now() + PROMPTLY;
    let (asked, reply) = loop {
        let asked = Instant::now();
        match sidecar.client().claim().await {
            Ok(reply) => break (asked, reply),
            Err(err) => assert!(Instant::now() < deadline, "no socket: {err}"),
        }
        sleep(Duration::from_millis(2)).await;
    };
    assert!(
        reply.leader,
        "the lease is free: the first claim wins, {reply:?}; log:\n{}",
        sidecar.process.log_text()
    );
    assert!(reply.term >= 1);
    assert!(
        asked.elapsed() > Duration::from_millis(500),
        "the first claim was slow indeed"
    );
}

#[tokio::test]
async fn a_revoked_or_handed_over_leader_refuses_its_token() {
    let ns = common::namespace().await;
    let sidecars = three(&ns, "fenced").await;
    let store = leadership_kube::KubeStore::new(
        ns.client.clone(),
        leadership_kube::Scope::Namespace(ns.name.clone()),
    );
    for round in 0..2 {
        let (first, status) = leader(&sidecars, PROMPTLY).await;
        let token = sidecars[first].client().token().await.unwrap();
        assert_eq!(token.term, status.term);
        if round == 0 {
            use leadership::Revoker;
            store
                .revoke_leadership("fenced", &sidecars[first].unit)
                .await
                .unwrap();
        } else {
            store.hand_over("fenced", None).await.unwrap();
        }
        let deadline = Instant::now() + PROMPTLY;
        loop {
            match sidecars[first].client().token().await {
                Err(err) if err.is_not_leader() => break,
                Ok(token) => {
                    assert_eq!(token.term, status.term);
                    assert!(Instant::now() < deadline, "round {round}: the token still checks");
                }
                Err(err) => panic!("round {round}: {err}"),
            }
            sleep(Duration::from_millis(10)).await;
        }
        let (next, after) = leader(&sidecars, PROMPTLY).await;
        assert_ne!(next, first, "round {round}");
        assert!(after.term > status.term);
    }
}

#[tokio::test]
async fn sigterm_releases_and_hands_over() {
    let ns = common::namespace().await;
    let mut sidecars = three(&ns, "api").await;
    let (first, status) = leader(&sidecars, PROMPTLY).await;
    let stopped_at = Instant::now();
    sidecars[first].signal(Signal::SIGTERM);
    assert_eq!(sidecars[first].process.exit_code().await, Some(0));
    assert!(!sidecars[first].socket.exists(), "the socket is removed at exit");
    assert!(
        sidecars[first]
            .process
            .log_text()
            .contains("released leadership on shutdown")
    );
    let exited = sidecars.remove(first);
    let (_, after) = leader(&sidecars, PROMPTLY).await;
    assert!(
        stopped_at.elapsed() < Duration::from_secs(4),
        "handed over at once: {:?}",
        stopped_at.elapsed()
    );
    assert!(after.term > status.term);
    drop(exited);
}

#[tokio::test]
async fn sigkill_hands_over_when_the_operator_clears_the_run_out_claim() {
    let ns = common::namespace().await;
    let _operator =
        leadership_e2e::units::operator(&ns, "operator-0", leadership_e2e::testenv::shared().kubeconfig());
    let mut sidecars = three(&ns, "db").await;
    let (first, status) = leader(&sidecars, PROMPTLY).await;
    let killed_at = Instant::now();
    sidecars[first].signal(Signal::SIGKILL);
    let _ = sidecars[first].process.exit_code().await;
    let dead = sidecars.remove(first);
    let (_, after) = leader(&sidecars, Duration::from_secs(30)).await;
    let failover = killed_at.elapsed();
    assert!(after.term > status.term);
    // The standby waits for the 4 s lease (from the last renewal) plus the margin, until the
    // operator clears the claim, not longer.
    assert!(failover < Duration::from_secs(4) + PROMPTLY, "{failover:?}");
    drop(dead);
    // Without the operator, nobody takes a claim that ran out: units take only a free lease.
    drop(_operator);
    let (first, status) = leader(&sidecars, PROMPTLY).await;
    sidecars[first].signal(Signal::SIGKILL);
    sleep(Duration::from_secs(8)).await;
    for sidecar in &sidecars {
        if let Some(other) = sidecar.status().await {
            assert!(!other.leader, "a unit took a claim it judged run out: {other:?}");
        }
    }
    let lease = ns
        .api::<leadership_kube::crd::LeadershipLease>()
        .get("db")
        .await
        .unwrap()
        .status
        .unwrap_or_default();
    assert_eq!(
        (lease.holder.as_deref(), lease.term),
        (
            Some(sidecars[first].unit.as_str()),
            i64::try_from(status.term).unwrap()
        ),
        "the dead leader's claim stands until an operator clears it"
    );
}

#[tokio::test]
async fn a_leader_paused_past_its_lease_reports_not_leader_when_resumed() {
    // Units that judge expiry themselves (a trusted namespace): no operator takes part.
    let ns = common::namespace().await;
    let sidecars = three_with(&ns, "queue", &["--expiry-authority", "units"]).await;
    let (first, status) = leader(&sidecars, PROMPTLY).await;
    sidecars[first].signal(Signal::SIGSTOP);
    let others: Vec<&Sidecar> = sidecars
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != first)
        .map(|(_, s)| s)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_leader = loop {
        let mut found = None;
        for sidecar in &others {
            if let Some(s) = sidecar.status().await
                && s.leader
            {
                found = Some(s);
            }
        }
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "nobody took over from the paused leader"
        );
        sleep(Duration::from_millis(50)).await;
    };
    assert!(new_leader.term > status.term);
    sidecars[first].signal(Signal::SIGCONT);
    let resumed = sidecars[first].status().await.expect("answers after SIGCONT");
    assert!(
        !resumed.leader,
        "the paused leader's guarantee ran out while it was stopped: {resumed:?}"
    );
    sleep(Duration::from_secs(1)).await;
    let (_, settled) = leader(&sidecars, PROMPTLY).await;
    assert_eq!(
        settled.unit, new_leader.unit,
        "the resumed unit does not take the lease back"
    );
}

#[tokio::test]
async fn wait_and_watch_fire_on_changes() {
    let ns = common::namespace().await;
    let sidecars = three(&ns, "cache").await;
    let (first, _) = leader(&sidecars, PROMPTLY).await;
    let minion = (first + 1) % 3;
    // A watch on a minion: first line now, then a line at every change.
    let (status, body) = {
        let stream = UnixStream::connect(&sidecars[minion].socket).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = http::Request::get("/v1/watch")
            .header("host", "localhost")
            .body(String::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        (response.status(), response.into_body())
    };
    assert_eq!(status, 200);
    let mut lines = http_body_util::BodyStream::new(body);
    let first_line = lines.next().await.unwrap().unwrap().into_data().unwrap();
    let first_status: serde_json::Value = serde_json::from_slice(&first_line).unwrap();
    assert_eq!(first_status["leader"], false);

    let leader_client = sidecars[first].client();
    let deposed = tokio::spawn(async move { leader_client.wait_minion(None).await });
    let waiters: Vec<_> = sidecars
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != first)
        .map(|(_, s)| {
            let client = s.client();
            tokio::spawn(async move { client.wait_leader(Some(Duration::from_secs(20))).await })
        })
        .collect();
    sleep(Duration::from_millis(300)).await;
    assert!(!deposed.is_finished(), "wait/minion waits while leader");
    assert!(sidecars[first].client().release().await.unwrap());
    let deposed = timeout(PROMPTLY, deposed)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .expect("no timeout");
    assert!(!deposed.leader);
    let (new_leader, _) = leader(&sidecars, PROMPTLY).await;
    let mut woken = 0;
    for waiter in waiters {
        if let Some(status) = timeout(Duration::from_secs(25), waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            assert!(status.leader);
            woken += 1;
        }
    }
    assert_eq!(woken, 1, "exactly one waiter became leader; the other timed out");
    if new_leader == minion {
        let line = timeout(PROMPTLY, async {
            loop {
                let frame = lines.next().await.unwrap().unwrap().into_data().unwrap();
                let value: serde_json::Value = serde_json::from_slice(&frame).unwrap();
                if value["leader"] == true {
                    return value;
                }
            }
        })
        .await
        .expect("the watch reports the change");
        assert_eq!(line["unit"], sidecars[minion].unit);
    }
}

#[tokio::test]
async fn socket_errors_are_clear_json_and_change_nothing() {
    let ns = common::namespace().await;
    let sidecars = three(&ns, "errs").await;
    let (first, status) = leader(&sidecars, PROMPTLY).await;
    let minion = &sidecars[(first + 1) % 3];
    let client = minion.client();
    let expect = |result: (http::StatusCode, bytes::Bytes), code: u16, error: &str| {
        assert_eq!(
            result.0.as_u16(),
            code,
            "{:?}",
            String::from_utf8_lossy(&result.1)
        );
        let body: serde_json::Value = serde_json::from_slice(&result.1).expect("a JSON error body");
        assert_eq!(body["error"]["code"], error, "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    };
    /// A request (method, URI, body) and the refusal expected (status, code).
    type Refusal = (Method, &'static str, Option<Vec<u8>>, u16, &'static str);
    let refusals: [Refusal; 16] = [
        (Method::GET, "/v1/nope", None, 404, "NotFound"),
        (Method::GET, "/v1/claim", None, 405, "BadRequest"),
        (Method::DELETE, "/v1/status", None, 405, "BadRequest"),
        (
            Method::GET,
            "/v1/wait/leader?timeoutMs=abc",
            None,
            400,
            "BadRequest",
        ),
        (Method::GET, "/v1/wait/leader?timeout=5", None, 400, "BadRequest"),
        (
            Method::GET,
            "/v1/wait/leader?timeoutMs=99999999999999",
            None,
            400,
            "BadRequest",
        ),
        (Method::GET, "/v1/wait/leader?timeoutMs=200", None, 408, "Timeout"),
        (Method::GET, "/v1/token", None, 409, "NotLeader"),
        (
            Method::POST,
            "/v1/pin",
            Some(b"{not json".to_vec()),
            400,
            "BadRequest",
        ),
        (
            Method::POST,
            "/v1/pin",
            Some(br#"{"entity":"Bad Name"}"#.to_vec()),
            400,
            "BadRequest",
        ),
        (
            Method::POST,
            "/v1/pin",
            Some(br#"{"entity":"a","x":1}"#.to_vec()),
            400,
            "BadRequest",
        ),
        (
            Method::POST,
            "/v1/pin",
            Some(vec![b'x'; 10_000]),
            413,
            "BadRequest",
        ),
        (
            Method::POST,
            "/v1/eligibility",
            Some(br#"{"eligible":false}"#.to_vec()),
            400,
            "BadRequest",
        ),
        (
            Method::POST,
            "/v1/eligibility",
            Some(br#"{"eligible":"no","reason":"x"}"#.to_vec()),
            400,
            "BadRequest",
        ),
        (
            Method::POST,
            "/v1/eligibility",
            Some(br#"{"eligible":false,"reason":"two\nlines"}"#.to_vec()),
            400,
            "BadRequest",
        ),
        (
            Method::POST,
            "/v1/eligibility",
            Some(format!(r#"{{"eligible":false,"reason":"{}"}}"#, "x".repeat(300)).into_bytes()),
            400,
            "BadRequest",
        ),
    ];
    for (method, uri, body, code, error) in refusals {
        expect(client.call(method, uri, body).await.unwrap(), code, error);
    }
    assert!(
        client.pins().await.unwrap().pins.is_empty(),
        "refused requests changed nothing"
    );
    assert!(
        !client.claim().await.unwrap().leader,
        "a minion's claim ticket is false"
    );

    // Pins and leaders through the socket.
    assert!(client.set_pin("machine-0", true).await.unwrap().pinned);
    assert_eq!(
        client.pins().await.unwrap().pins.get("errs"),
        Some(&vec!["machine-0".to_owned()])
    );
    assert!(!client.set_pin("machine-0", false).await.unwrap().pinned);
    let leaders = client.leaders().await.unwrap().leaders;
    assert_eq!(leaders.get("errs"), Some(&sidecars[first].unit));
    let (_, still) = leader(&sidecars, PROMPTLY).await;
    assert_eq!(still.term, status.term, "nothing changed the leadership");

    // A slow client that never finishes its headers does not block others and is cut off.
    let mut slow = UnixStream::connect(&minion.socket).await.unwrap();
    slow.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(client.status().await.is_ok(), "others are served meanwhile");
    let mut reader = BufReader::new(slow);
    let mut line = String::new();
    let cut = timeout(Duration::from_secs(20), reader.read_line(&mut line))
        .await
        .expect("cut off in time");
    assert!(cut.is_ok());
}

#[tokio::test]
async fn a_unit_whose_app_says_it_should_not_lead_lets_an_eligible_one_take_a_free_lease() {
    let ns = common::namespace().await;
    let mut sidecars = three(&ns, "elig").await;
    let (first, _) = leader(&sidecars, PROMPTLY).await;
    let (warming, ready) = ((first + 1) % 3, (first + 2) % 3);
    let said = sidecars[warming]
        .client()
        .declare_eligibility(Some("warming up"))
        .await
        .unwrap();
    assert_eq!(
        (said.eligible, said.reason.as_deref()),
        (false, Some("warming up"))
    );
    let status = sidecars[warming].client().status().await.unwrap();
    assert_eq!(
        (status.eligible, status.ineligible_reason.as_deref()),
        (false, Some("warming up"))
    );
    // A restarted sidecar reports the declaration the lease keeps from before: the app said
    // "not me" and has not taken it back.
    sidecars[warming].signal(Signal::SIGKILL);
    let _ = sidecars[warming].process.exit_code().await;
    let unit = sidecars[warming].unit.clone();
    sidecars[warming] = Sidecar::start(&ns, "elig", &unit).await;
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let status = sidecars[warming].client().status().await.unwrap();
        if !status.eligible {
            assert_eq!(status.ineligible_reason.as_deref(), Some("warming up"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted sidecar reports {status:?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
    // The leader steps down: the eligible standby takes the lease, the other stands aside.
    assert!(sidecars[first].client().release().await.unwrap());
    let (_, next) = next_leader(&sidecars, first, PROMPTLY).await;
    assert_eq!(
        next.unit, sidecars[ready].unit,
        "the eligible standby took the lease"
    );
    assert!(!sidecars[warming].client().status().await.unwrap().leader);
    // Eligible again.
    let said = sidecars[warming]
        .client()
        .declare_eligibility(None)
        .await
        .unwrap();
    assert!(said.eligible && said.reason.is_none());
    assert!(sidecars[warming].client().status().await.unwrap().eligible);
}

#[tokio::test]
async fn the_cli_answers_as_an_exec_probe() {
    let ns = common::namespace().await;
    let sidecars = three(&ns, "probe").await;
    let (first, _) = leader(&sidecars, PROMPTLY).await;
    let run = |socket: &std::path::Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_leadership-sidecar"))
            .args(args)
            .arg("--socket")
            .arg(socket)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(run(&sidecars[first].socket, &["is-leader"]), Some(0));
    let minion = &sidecars[(first + 1) % 3];
    assert_eq!(run(&minion.socket, &["is-leader"]), Some(1));
    assert_eq!(
        run(&minion.socket, &["wait-leader", "--timeout", "300ms"]),
        Some(1)
    );
    assert_eq!(run(&minion.socket, &["wait-minion", "--timeout", "1s"]), Some(0));
    assert_eq!(
        run(
            std::path::Path::new("/nonexistent/leadership.sock"),
            &["is-leader"]
        ),
        Some(2)
    );
}
