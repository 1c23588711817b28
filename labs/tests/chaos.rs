//! A short run of the fault checker (`e2e/chaos` runs the long one): every kind of fault once,
//! on a control plane of its own with the chart's policies in force, and no two leaders at once;
//! the hostile unit sends its writes throughout, and none the API server admits is illegal.

use std::time::Duration;

use leadership_e2e::{testenv, tools::Tools};
use leadership_labs::chaos::{self, Settings, faults::FaultKind};

#[tokio::test]
async fn a_short_fault_run_finds_no_two_leaders_at_once() {
    let out = std::env::temp_dir().join(format!("leadership-chaos-test-{}", std::process::id()));
    let settings = Settings {
        duration: Duration::from_secs(75),
        units: 3,
        claim_duration: Duration::from_secs(1),
        seed: 11,
        plan: None,
        out: out.clone(),
        sidecar: testenv::binary("leadership-sidecar"),
        operator: testenv::binary("leadership-operator"),
        faketime: chaos::default_faketime(),
        hostile: true,
    };
    let tools = Tools::locate().expect("control-plane tools");
    let outcome = chaos::run(&tools, settings).await.expect("the run completes");
    let report = outcome.report();
    println!("{report}");
    assert!(outcome.passed(), "{report}\nthe history is in {}", out.display());
    for kind in FaultKind::ALL {
        assert!(
            outcome.by_kind.contains_key(kind.name()),
            "{} was not injected:\n{report}",
            kind.name()
        );
    }
    // Leadership came back after the faults (how fast is for `e2e/chaos` to measure, not a test).
    assert!(outcome.verdict.intervals >= 3, "{report}");
    assert!(outcome.verdict.availability > 0.0, "{report}");
    let hostile = outcome.hostile.as_ref().expect("the hostile unit ran");
    assert!(hostile.sent_total() > 50, "{report}");
    assert!(hostile.refused_total() > 0, "{report}");
    assert_eq!(outcome.illegal_writes_admitted(), 0, "{report}");
    let _ = std::fs::remove_dir_all(out);
}
