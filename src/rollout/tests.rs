use std::collections::BTreeMap;

use super::*;
use crate::error::Location;
use crate::model::Cluster;
use crate::spec::{LabelSelector, WaveSpec};

fn cluster(name: &str, ring: &str) -> Cluster {
    Cluster {
        name: name.into(),
        labels: BTreeMap::from([("ring".to_string(), ring.to_string())]),
        annotations: BTreeMap::new(),
        spec: Default::default(),
        location: Location::new("inventory.yaml", 1),
    }
}

fn spec(waves: Vec<WaveSpec>, max_failures: u32) -> RolloutSpec {
    RolloutSpec {
        waves,
        min_healthy_time: Some("60s".into()),
        max_failures,
        progress_deadline: Some("10m".into()),
    }
}

fn wave(name: &str, selector: Option<(&str, &str)>, percent: Option<u32>) -> WaveSpec {
    WaveSpec {
        name: name.into(),
        cluster_selector: selector.map(|(k, v)| LabelSelector {
            match_labels: BTreeMap::from([(k.to_string(), v.to_string())]),
            ..Default::default()
        }),
        clusters: vec![],
        percent,
    }
}

fn canary_rest() -> RolloutSpec {
    spec(
        vec![wave("canary", Some(("ring", "canary")), None), wave("rest", None, None)],
        0,
    )
}

fn fleet() -> Vec<Cluster> {
    vec![
        cluster("store-3", "main"),
        cluster("store-1", "canary"),
        cluster("store-2", "main"),
    ]
}

fn waves_of(spec: &RolloutSpec, clusters: &[Cluster]) -> Vec<Wave> {
    let refs: Vec<&Cluster> = clusters.iter().collect();
    waves::assign(Some(spec), &refs)
}

fn step(spec: &RolloutSpec, waves: &[Wave], prev: Option<&State>, revision: &str, now: i64, gate: GateState) -> State {
    advance(
        &Inputs {
            placement: "web",
            rollout: Some(spec),
            suspend: false,
            revision,
            source_commit: None,
            waves,
            previous: prev,
            now,
        },
        &|_| ClusterGate {
            state: gate,
            reason: if gate == GateState::Healthy {
                String::new()
            } else {
                "Deployment/web/web Degraded: ProgressDeadlineExceeded".into()
            },
        },
    )
}

const T0: i64 = 1_800_000_000;

#[test]
fn waves_take_selector_then_percent_of_the_rest_then_the_remaining() {
    let clusters: Vec<Cluster> = (1..=10)
        .map(|i| cluster(&format!("s{i:02}"), if i == 7 { "canary" } else { "main" }))
        .collect();
    let s = spec(
        vec![
            wave("canary", Some(("ring", "canary")), None),
            wave("early", None, Some(25)),
        ],
        0,
    );
    let w = waves_of(&s, &clusters);
    let names: Vec<(&str, Vec<&str>)> = w
        .iter()
        .map(|w| (w.name.as_str(), w.clusters.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("canary", vec!["s07"]),
            // 25% of the 9 left, rounded up, in name order.
            ("early", vec!["s01", "s02", "s03"]),
            ("remaining", vec!["s04", "s05", "s06", "s08", "s09", "s10"]),
        ]
    );
}

#[test]
fn a_new_revision_opens_only_the_first_wave_and_holds_the_others() {
    let s = canary_rest();
    let w = waves_of(&s, &fleet());
    let st = step(&s, &w, None, "r1", T0, GateState::Pending);
    assert_eq!((st.phase, st.open_waves), (Phase::Progressing, 1));
    assert_eq!(held_clusters(&st, &w), vec!["store-2", "store-3"]);
    assert!(st.waves[0].open && !st.waves[1].open);
}

#[test]
fn the_next_wave_opens_after_min_healthy_time_of_a_passing_gate() {
    let s = canary_rest();
    let w = waves_of(&s, &fleet());
    let st = step(&s, &w, None, "r1", T0, GateState::Pending);
    let st = step(&s, &w, Some(&st), "r1", T0 + 10, GateState::Progressing);
    assert_eq!(st.open_waves, 1);
    assert!(st.message.contains("store-1"), "{}", st.message);
    let st = step(&s, &w, Some(&st), "r1", T0 + 20, GateState::Healthy);
    assert_eq!(st.open_waves, 1, "healthy for 0 s of 60");
    assert!(st.healthy_since.is_some());
    let st = step(&s, &w, Some(&st), "r1", T0 + 50, GateState::Healthy);
    assert_eq!(st.open_waves, 1, "healthy for 30 s of 60");
    let st = step(&s, &w, Some(&st), "r1", T0 + 81, GateState::Healthy);
    assert_eq!((st.phase, st.open_waves), (Phase::Complete, 2));
    assert!(held_clusters(&st, &w).is_empty());
}

#[test]
fn health_must_hold_without_a_break() {
    let s = canary_rest();
    let w = waves_of(&s, &fleet());
    let st = step(&s, &w, None, "r1", T0, GateState::Healthy);
    let st = step(&s, &w, Some(&st), "r1", T0 + 40, GateState::Progressing);
    assert_eq!(st.healthy_since, None);
    let st = step(&s, &w, Some(&st), "r1", T0 + 70, GateState::Healthy);
    assert_eq!(st.open_waves, 1, "the clock restarted at T0+70");
}

#[test]
fn a_failed_canary_pauses_and_says_why() {
    let s = canary_rest();
    let w = waves_of(&s, &fleet());
    let st = step(&s, &w, None, "r1", T0, GateState::Pending);
    let st = step(&s, &w, Some(&st), "r1", T0 + 30, GateState::Failed);
    assert_eq!((st.phase, st.open_waves), (Phase::Paused, 1));
    assert!(
        st.message.contains("store-1") && st.message.contains("ProgressDeadlineExceeded"),
        "{}",
        st.message
    );
    assert_eq!(st.blocking.len(), 1);
    assert_eq!(st.blocking[0].state, GateState::Failed);
    // It stays closed while failing, long past any minHealthyTime.
    let st = step(&s, &w, Some(&st), "r1", T0 + 3600, GateState::Failed);
    assert_eq!((st.phase, st.open_waves), (Phase::Paused, 1));
}

#[test]
fn max_failures_tolerates_that_many_failing_clusters() {
    let mut s = spec(vec![wave("first", None, Some(50)), wave("second", None, None)], 1);
    s.min_healthy_time = Some("0s".into());
    let clusters: Vec<Cluster> = (1..=4).map(|i| cluster(&format!("s{i}"), "main")).collect();
    let w = waves_of(&s, &clusters);
    let st = step(&s, &w, None, "r1", T0, GateState::Pending);
    let gate = |c: &str| ClusterGate {
        state: if c == "s1" {
            GateState::Failed
        } else {
            GateState::Healthy
        },
        reason: String::new(),
    };
    let inputs = |prev| Inputs {
        placement: "web",
        rollout: Some(&s),
        suspend: false,
        revision: "r1",
        source_commit: None,
        waves: &w,
        previous: prev,
        now: T0 + 5,
    };
    let st = advance(&inputs(Some(&st)), &gate);
    assert_eq!((st.phase, st.open_waves), (Phase::Complete, 2), "{}", st.message);
}

#[test]
fn the_progress_deadline_pauses_a_wave_that_never_passes() {
    let s = canary_rest();
    let w = waves_of(&s, &fleet());
    let st = step(&s, &w, None, "r1", T0, GateState::Pending);
    let st = step(&s, &w, Some(&st), "r1", T0 + 599, GateState::Pending);
    assert_eq!(st.phase, Phase::Progressing);
    let st = step(&s, &w, Some(&st), "r1", T0 + 601, GateState::Pending);
    assert_eq!(st.phase, Phase::Paused);
    assert!(st.message.contains("progress deadline (10m)"), "{}", st.message);
    // It goes on by itself once the gate passes for minHealthyTime.
    let st = step(&s, &w, Some(&st), "r1", T0 + 700, GateState::Healthy);
    let st = step(&s, &w, Some(&st), "r1", T0 + 760, GateState::Healthy);
    assert_eq!((st.phase, st.open_waves), (Phase::Complete, 2));
}

#[test]
fn a_newer_revision_starts_over_at_the_first_wave() {
    let s = canary_rest();
    let w = waves_of(&s, &fleet());
    let st = step(&s, &w, None, "r1", T0, GateState::Healthy);
    let st = step(&s, &w, Some(&st), "r1", T0 + 60, GateState::Healthy);
    assert_eq!(st.phase, Phase::Complete);
    let st = step(&s, &w, Some(&st), "r2", T0 + 100, GateState::Healthy);
    assert_eq!(
        (st.phase, st.open_waves, st.revision.as_deref()),
        (Phase::Progressing, 1, Some("r2"))
    );
    assert_eq!(st.started_at.as_deref(), Some("2027-01-15T08:01:40Z"));
}

#[test]
fn suspend_holds_every_cluster_and_resuming_goes_on() {
    let s = canary_rest();
    let w = waves_of(&s, &fleet());
    let st = step(&s, &w, None, "r1", T0, GateState::Healthy);
    let suspended = advance(
        &Inputs {
            placement: "web",
            rollout: Some(&s),
            suspend: true,
            revision: "r2",
            source_commit: None,
            waves: &w,
            previous: Some(&st),
            now: T0 + 10,
        },
        &|_| unreachable!("a suspended placement asks no gate"),
    );
    assert_eq!(suspended.phase, Phase::Suspended);
    assert_eq!(held_clusters(&suspended, &w).len(), 3);
    assert_eq!(
        suspended.revision.as_deref(),
        Some("r1"),
        "keeps the revision it was rolling out"
    );
    let resumed = step(&s, &w, Some(&suspended), "r1", T0 + 20, GateState::Healthy);
    assert_eq!((resumed.phase, resumed.open_waves), (Phase::Progressing, 1));
}

#[test]
fn empty_waves_open_at_once() {
    let s = spec(
        vec![
            wave("canary", Some(("ring", "canary")), None),
            wave("ghost", Some(("ring", "none")), None),
            wave("rest", None, None),
        ],
        0,
    );
    let clusters = vec![cluster("a", "main"), cluster("b", "main")];
    let w = waves_of(&s, &clusters);
    // canary and ghost are empty: the first wave with clusters is open from the start.
    let st = step(&s, &w, None, "r1", T0, GateState::Pending);
    assert_eq!(st.open_waves, 3);
    assert_eq!(st.phase, Phase::Complete);
}

#[test]
fn state_files_round_trip() {
    let s = canary_rest();
    let w = waves_of(&s, &fleet());
    let st = step(&s, &w, None, "r1", T0, GateState::Failed);
    let st = step(&s, &w, Some(&st), "r1", T0 + 1, GateState::Failed);
    let text = crate::yaml::to_yaml_string(&serde_json::to_value(&st).unwrap());
    let doc = crate::yaml::parse_documents(&text, "x.yaml").unwrap().remove(0);
    let back: State = serde_json::from_value(doc.value).unwrap();
    assert_eq!(back, st);
}
