//! `redis-operator plan` run as a binary on fixture files.

use std::collections::BTreeSet;
use std::process::{Command, Output};

use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/plan");

fn plan(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_redis-operator"));
    command.arg("plan");
    for arg in args {
        // Bare fixture names resolve to the fixture directory.
        if arg.ends_with(".json") {
            command.arg(format!("{FIXTURES}/{arg}"));
        } else {
            command.arg(arg);
        }
    }
    command.output().expect("run redis-operator")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> Value {
    let text = stdout(output);
    let parsed = serde_json::from_str(&text);
    assert!(parsed.is_ok(), "stdout is not JSON: {text}");
    parsed.unwrap_or_default()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn json_plan_has_the_documented_shape_and_spreads_zones() {
    let out = plan(&[
        "--topology",
        "nodes-3zones.json",
        "--leaders",
        "3",
        "--followers-per-leader",
        "2",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = json(&out);
    assert_eq!(
        keys(&plan),
        BTreeSet::from(["shards".into(), "changes".into(), "zoneLossSafe".into()])
    );
    assert_eq!(plan["zoneLossSafe"], Value::Bool(true));
    let shards = plan["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 3);
    let mut leader_zones = BTreeSet::new();
    for (i, shard) in shards.iter().enumerate() {
        assert_eq!(
            keys(shard),
            BTreeSet::from(["index".into(), "members".into()])
        );
        assert_eq!(shard["index"], Value::from(i));
        let members = shard["members"].as_array().expect("members");
        assert_eq!(members.len(), 3);
        assert_eq!(members[0]["role"], "leader");
        assert!(members[1..].iter().all(|m| m["role"] == "follower"));
        let zones: BTreeSet<&str> = members.iter().filter_map(|m| m["zone"].as_str()).collect();
        assert_eq!(zones.len(), 3, "{shard}");
        for m in members {
            assert_eq!(
                keys(m),
                BTreeSet::from(["role".into(), "node".into(), "zone".into()])
            );
            // Tainted, cordoned, not-ready and control-plane nodes are never used.
            assert!(
                !["a3", "b3", "c3", "cp-1"].contains(&m["node"].as_str().unwrap_or("")),
                "{m}"
            );
        }
        leader_zones.insert(members[0]["zone"].as_str().unwrap_or("").to_string());
    }
    assert_eq!(leader_zones.len(), 3);
    let changes = plan["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 9);
    assert!(changes.iter().all(|c| c["op"] == "create"));
}

#[test]
fn table_is_the_default_and_reads_at_a_glance() {
    let out = plan(&[
        "--topology",
        "nodes-3zones.json",
        "--leaders",
        "4",
        "--followers-per-leader",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let header = text
        .lines()
        .find(|l| l.starts_with("SHARD"))
        .expect("grid header");
    for zone in ["zone-a", "zone-b", "zone-c"] {
        assert!(header.contains(zone), "{header}");
    }
    assert!(text.contains("Zone loss: NOT SAFE"), "{text}");
    assert!(text.contains("5 leaders would survive"), "{text}");
    assert!(text.contains("Changes (8), in order:"), "{text}");
}

#[test]
fn a_valid_current_placement_needs_no_changes() {
    let out = plan(&[
        "--topology",
        "nodes-3zones.json",
        "--leaders",
        "3",
        "--followers-per-leader",
        "1",
        "--current",
        "current-3zones.json",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = json(&out);
    assert_eq!(plan["changes"], Value::Array(vec![]));
    assert_eq!(plan["shards"][1]["members"][0]["node"], "b2");
}

#[test]
fn replaces_unhealthy_and_cordoned_members_in_order() {
    let out = plan(&[
        "--topology",
        "nodes-3zones.json",
        "--leaders",
        "3",
        "--followers-per-leader",
        "1",
        "--current",
        "current-degraded.json",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = json(&out);
    let ops: Vec<(String, String)> = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            let node = c
                .get("node")
                .or_else(|| c.get("to"))
                .and_then(Value::as_str)
                .unwrap_or("");
            (c["op"].as_str().unwrap_or("").to_string(), node.to_string())
        })
        .collect();
    // The dead member goes first; the healthy leader on the cordoned node c3 hands over by
    // failover and leaves last.
    assert_eq!(
        ops.first(),
        Some(&("remove".to_string(), "b3".to_string())),
        "{ops:?}"
    );
    assert_eq!(
        ops.last(),
        Some(&("remove".to_string(), "c3".to_string())),
        "{ops:?}"
    );
    let failover = ops
        .iter()
        .position(|(op, _)| op == "failover")
        .expect("a failover");
    let last_create = ops
        .iter()
        .rposition(|(op, _)| op == "create")
        .expect("a create");
    assert!(last_create < failover);
    let failover_change = &plan["changes"][failover];
    assert_eq!(failover_change["shard"], 1);
    assert_eq!(failover_change["from"], "c3");
}

#[test]
fn unsatisfiable_exits_2_with_the_reason_in_json() {
    let out = plan(&[
        "--topology",
        "nodes-2zones.json",
        "--leaders",
        "1",
        "--followers-per-leader",
        "2",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let body = json(&out);
    assert_eq!(
        keys(&body),
        BTreeSet::from(["error".into(), "reason".into()])
    );
    assert_eq!(body["error"], "unsatisfiable");
    assert_eq!(
        body["reason"],
        "each shard needs 3 members in distinct zones but only 2 zones have schedulable nodes with free slots: zone-a (2 free), zone-b (1 free), zone-c (0 free: 2 cordoned)"
    );
}

#[test]
fn unsatisfiable_exits_2_with_the_reason_in_words() {
    let out = plan(&[
        "--topology",
        "nodes-2zones.json",
        "--leaders",
        "1",
        "--followers-per-leader",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    assert!(
        text.starts_with("Unsatisfiable: each shard needs 3 members in distinct zones"),
        "{text}"
    );
}

#[test]
fn preferred_spread_relaxes_instead_of_failing() {
    let out = plan(&[
        "--topology",
        "nodes-2zones.json",
        "--leaders",
        "1",
        "--followers-per-leader",
        "2",
        "--spread",
        "preferred",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = json(&out);
    let nodes: BTreeSet<&str> = plan["shards"][0]["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["node"].as_str())
        .collect();
    assert_eq!(nodes.len(), 3);
    // One leader can never survive losing its zone.
    assert_eq!(plan["zoneLossSafe"], Value::Bool(false));
}

#[test]
fn zone_key_selects_the_label() {
    let args = [
        "--topology",
        "nodes-rack-label.json",
        "--leaders",
        "2",
        "--followers-per-leader",
        "2",
        "--output",
        "json",
    ];
    let default = plan(&args);
    assert_eq!(default.status.code(), Some(2), "nodes have no zone label");
    let mut with_key = args.to_vec();
    with_key.extend(["--zone-key", "example.com/rack"]);
    let out = plan(&with_key);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let zones: BTreeSet<String> = json(&out)["shards"][0]["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["zone"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        zones,
        BTreeSet::from(["rack-1".into(), "rack-2".into(), "rack-3".into()])
    );
}

#[test]
fn toleration_admits_tainted_nodes() {
    let args = [
        "--topology",
        "nodes-3zones.json",
        "--leaders",
        "1",
        "--followers-per-leader",
        "2",
        "--output",
        "json",
    ];
    let mut tolerant = args.to_vec();
    tolerant.extend([
        "--toleration",
        "dedicated=infra:NoSchedule",
        "--shared-nodes",
    ]);
    let out = plan(&tolerant);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn malformed_files_exit_1_naming_the_file() {
    for (flag, file, expect) in [
        ("--topology", "not-json.json", "not a v1 List of Nodes"),
        ("--topology", "pod-list.json", "kind is \"PodList\""),
        (
            "--topology",
            "nodes-bad-quantity.json",
            "node a2: status.allocatable.cpu \"lots\"",
        ),
        ("--topology", "missing.json", "cannot read"),
        ("--current", "current-bad.json", "expected a JSON array of"),
    ] {
        let mut args = vec!["--leaders", "1", "--followers-per-leader", "1"];
        if flag == "--current" {
            args.extend(["--topology", "nodes-3zones.json"]);
        }
        args.extend([flag, file]);
        let out = plan(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{file}: {err}");
        assert!(err.contains(file), "{file}: {err}");
        assert!(err.contains(expect), "{file}: {err}");
        assert!(!err.contains("panicked"), "{file}: {err}");
    }
}

#[test]
fn malformed_values_exit_1() {
    let out = plan(&[
        "--topology",
        "nodes-3zones.json",
        "--leaders",
        "1",
        "--followers-per-leader",
        "1",
        "--member-cpu",
        "two",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--member-cpu"));
}
