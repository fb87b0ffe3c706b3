use super::*;
use crate::backup::fixture::{three_by_one, view};
use crate::crd::backup::BackupShardStatus;

fn started(view: &ClusterView) -> RedisClusterBackupStatus {
    let Step::Start(shards) = next(&RedisClusterBackupStatus::default(), view, 1) else {
        panic!("expected Start");
    };
    RedisClusterBackupStatus {
        phase: Some(BackupPhase::Running),
        shards: shards
            .iter()
            .map(|s| BackupShardStatus {
                index: i32::try_from(s.index).unwrap(),
                slots: shards::slots_text(&s.slots),
                leader_id: s.leader.to_string(),
                leader_offset_at_start: i64::try_from(s.leader_offset).unwrap(),
                ..BackupShardStatus::default()
            })
            .collect(),
        ..RedisClusterBackupStatus::default()
    }
}

fn store(status: &mut RedisClusterBackupStatus, index: usize) {
    let s = &mut status.shards[index];
    s.sha256 = Some("00".repeat(32));
}

#[test]
fn a_backup_goes_shard_by_shard_then_writes_its_manifest() {
    let v = view(&three_by_one(100, true));
    let mut status = started(&v);
    assert_eq!(status.shards.len(), 3);
    for i in 0..3 {
        match next(&status, &v, 1) {
            Step::Snapshot {
                index,
                role,
                at_least,
                source,
            } => {
                assert_eq!(index, i);
                assert_eq!(role, "follower");
                assert_eq!(at_least, [100, 200, 300][i]);
                // The followers are 10.0.0.4-6.
                assert_eq!(source.to_string(), format!("10.0.0.{}:6379", 4 + i));
            }
            other => panic!("{i}: {other:?}"),
        }
        store(&mut status, i);
    }
    assert_eq!(next(&status, &v, 1), Step::WriteManifest);
    status.phase = Some(BackupPhase::Completed);
    assert_eq!(next(&status, &v, 1), Step::Finished);
}

#[test]
fn a_cluster_not_serving_every_slot_is_waited_for() {
    let mut nodes = three_by_one(100, true);
    nodes[1].slots = "";
    let v = view(&nodes);
    assert!(matches!(
        next(&RedisClusterBackupStatus::default(), &v, 1),
        Step::Wait("ClusterNotReady", _)
    ));
}

#[test]
fn a_shard_that_failed_too_often_fails_the_backup() {
    let v = view(&three_by_one(100, true));
    let mut status = started(&v);
    status.shards[0].failed_attempts = MAX_ATTEMPTS - 1;
    assert!(matches!(
        next(&status, &v, 1),
        Step::Snapshot { index: 0, .. }
    ));
    status.shards[0].failed_attempts = MAX_ATTEMPTS;
    assert!(matches!(
        next(&status, &v, 1),
        Step::Fail("SnapshotFailed", _)
    ));
}

#[test]
fn a_shard_without_an_in_sync_follower_waits_and_a_moved_slot_fails() {
    let v = view(&three_by_one(100, true));
    let status = started(&v);
    let down = view(&three_by_one(100, false));
    assert!(matches!(
        next(&status, &down, 1),
        Step::Wait("WaitingForSource", _)
    ));
    let mut nodes = three_by_one(100, true);
    nodes[0].slots = "0-100";
    nodes[1].slots = "101-10922";
    let moved = view(&nodes);
    assert!(matches!(
        next(&status, &moved, 1),
        Step::Fail("SlotsMoved", _)
    ));
}

#[test]
fn sizes_and_durations_read_like_kubectl() {
    assert_eq!(human_bytes(512), "512B");
    assert_eq!(human_bytes(1536), "1.5KiB");
    assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0GiB");
    assert_eq!(human_duration(45), "45s");
    assert_eq!(human_duration(72), "1m12s");
    assert_eq!(human_duration(7380), "2h3m");
}
