//! The backup's data path without Kubernetes: real redis-server clusters and a real S3 server
//! (versitygw). A 3×1 cluster's shards are snapshotted from their followers (as the backup
//! controller picks them) into S3 with a manifest; the manifest and every object's checksum
//! are verified; the backup is restored into a 5-master cluster and every key compared
//! (`DUMP` equal, expiry equal). A corrupted object and a missing one are refused before any
//! key is written.

#![allow(clippy::unwrap_used, clippy::panic)]

mod support {
    pub mod redis_cluster;
    pub mod redis_data;
    pub mod redis_procs;
    pub mod s3_server;
}

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis_operator::backup::manifest::{MANIFEST, Manifest};
use redis_operator::backup::restore::verify;
use redis_operator::backup::shards::{self, Source};
use redis_operator::backup::store::{Store, StoreTimeouts};
use redis_operator::backup::take;
use redis_operator::crd::backup::{
    BackupDestination, BackupShardStatus, DeletionPolicy, RedisClusterBackup,
    RedisClusterBackupSpec, RedisClusterBackupStatus, S3Destination,
};
use redis_operator::redis::command::Cmd;
use redis_operator::redis::model;
use redis_operator::redis::ops::restore_stream::{RestoreMode, cluster_key_count, restore_rdb};
use redis_operator::redis::{AdminOptions, reply};
use support::redis_cluster::build;
use support::redis_data::DataClient;
use support::s3_server::S3Server;

/// Diskless replication without delay, as the operator configures its members.
const ARGS: &[&str] = &[
    "--repl-diskless-sync",
    "yes",
    "--repl-diskless-sync-delay",
    "0",
];

fn options() -> AdminOptions {
    AdminOptions::default()
}

async fn load(data: &mut DataClient) -> Vec<Vec<u8>> {
    let pairs: Vec<(Bytes, Bytes)> = (0..20_000)
        .map(|i| (Bytes::from(format!("k:{i}")), Bytes::from(format!("v{i}"))))
        .chain((0..3).map(|i| {
            (
                Bytes::from(format!("big:{i}")),
                Bytes::from(vec![b'x'; 1 << 20]),
            )
        }))
        .collect();
    data.load(&pairs, 500).await.unwrap();
    let mut keys: Vec<Vec<u8>> = pairs.iter().map(|(k, _)| k.to_vec()).collect();
    for i in 0..500 {
        for (key, cmd) in [
            (
                format!("h:{i}"),
                Cmd::new("HSET")
                    .arg(format!("h:{i}"))
                    .arg("f")
                    .arg(format!("{i}")),
            ),
            (
                format!("z:{i}"),
                Cmd::new("ZADD").arg(format!("z:{i}")).arg("1").arg("m"),
            ),
            (
                format!("s:{i}"),
                Cmd::new("XADD")
                    .arg(format!("s:{i}"))
                    .arg("*")
                    .arg("f")
                    .arg("v"),
            ),
            (
                format!("t:{i}"),
                Cmd::new("SET")
                    .arg(format!("t:{i}"))
                    .arg("v")
                    .arg("EX")
                    .arg("900"),
            ),
        ] {
            data.run(key.as_bytes(), &cmd).await.unwrap();
            keys.push(key.into_bytes());
        }
    }
    keys
}

async fn dump(data: &mut DataClient, keys: &[Vec<u8>]) -> BTreeMap<Vec<u8>, (Option<Bytes>, i64)> {
    let mut out = BTreeMap::new();
    for key in keys {
        let cmd = Cmd::new("DUMP").arg_bytes(key.clone().into());
        let payload = reply::opt_bytes(&cmd, data.run(key, &cmd).await.unwrap()).unwrap();
        let cmd = Cmd::new("PEXPIRETIME").arg_bytes(key.clone().into());
        let at = reply::int(&cmd, data.run(key, &cmd).await.unwrap()).unwrap();
        out.insert(key.clone(), (payload, at));
    }
    out
}

fn backup_object(status: RedisClusterBackupStatus) -> RedisClusterBackup {
    let mut b = RedisClusterBackup::new(
        "flow",
        RedisClusterBackupSpec {
            cluster: "src".into(),
            destination: BackupDestination {
                s3: S3Destination {
                    endpoint: None,
                    bucket: "b".into(),
                    prefix: String::new(),
                    region: "us-east-1".into(),
                    credentials_secret: "c".into(),
                    ca_secret: None,
                },
            },
            deletion_policy: DeletionPolicy::Delete,
        },
    );
    b.status = Some(status);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_backed_up_to_s3_restores_into_five_masters() {
    let s3 = S3Server::start("backup-flow");
    let store = Store::s3(
        &s3.location("flow/"),
        &S3Server::credentials(),
        StoreTimeouts::default(),
    )
    .unwrap()
    .child("src/flow-00000000/");
    let src = build("bflow-src", 27800, 3, 1, ARGS, options()).await;
    let addrs = src.procs.addrs();
    let mut data = DataClient::new(addrs.clone(), options()).await;
    let keys = load(&mut data).await;
    let before = dump(&mut data, &keys).await;

    // The backup, as the controller takes it: shards at the start, each from its follower.
    let begun = Instant::now();
    let view = model::observe(&addrs, &options()).await;
    assert_eq!(shards::not_startable(&view), None);
    let at_start = shards::shards_at_start(&view);
    let mut status = RedisClusterBackupStatus {
        start_time: Some("2026-12-05T00:00:00Z".into()),
        ..RedisClusterBackupStatus::default()
    };
    for s in &at_start {
        let recorded = BackupShardStatus {
            index: i32::try_from(s.index).unwrap(),
            slots: shards::slots_text(&s.slots),
            leader_id: s.leader.to_string(),
            leader_offset_at_start: i64::try_from(s.leader_offset).unwrap(),
            ..BackupShardStatus::default()
        };
        let Source::Follower(f) = shards::source_for(&view, s, 1) else {
            panic!("shard {} has no in-sync follower", s.index);
        };
        let source = (f.addr, f.addr.to_string(), "follower");
        let done = take::snapshot(&store, &options(), &recorded, source, s.leader_offset)
            .await
            .unwrap();
        assert!(done.source_offset.unwrap() >= recorded.leader_offset_at_start);
        status.shards.push(done);
    }
    let manifest = take::write_manifest(
        &store,
        &backup_object(status),
        serde_json::json!({"leaders": 3}),
        "2026-12-05T00:01:00Z",
    )
    .await
    .unwrap();
    println!(
        "backup: {} keys, {} bytes in {:.2} s",
        manifest.keys(),
        manifest.bytes(),
        begun.elapsed().as_secs_f64()
    );
    assert_eq!(manifest.keys(), keys.len() as u64);
    let read = Manifest::parse(&store.get(MANIFEST).await.unwrap()).unwrap();
    assert_eq!(read, manifest);
    verify(&store, &read).await.unwrap();

    // Into five masters, every key on its slot's owner.
    let dst = build("bflow-dst", 27830, 5, 0, ARGS, options()).await;
    let targets = dst.procs.addrs();
    assert_eq!(cluster_key_count(&targets, &options()).await.unwrap(), 0);
    let begun = Instant::now();
    let mut restored = 0;
    for shard in &read.shards {
        let reader = store.reader(&shard.object).await.unwrap();
        let summary = restore_rdb(
            reader,
            &targets,
            &options(),
            RestoreMode::Fresh,
            Default::default(),
            &mut |_| {},
        )
        .await
        .unwrap();
        restored += summary.restored;
    }
    println!(
        "restore into 5 masters: {restored} keys in {:.2} s",
        begun.elapsed().as_secs_f64()
    );
    assert_eq!(restored, keys.len() as u64);
    let mut target = DataClient::new(targets.clone(), options()).await;
    let after = dump(&mut target, &keys).await;
    let differ: Vec<_> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .map(|(k, _)| String::from_utf8_lossy(k).to_string())
        .take(5)
        .collect();
    assert!(differ.is_empty(), "keys differ: {differ:?}");

    // A corrupted object, then a missing one: refused before anything is written.
    let object = &read.shards[1].object;
    let mut bytes = store.get(object).await.unwrap().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    store.put(object, bytes.into()).await.unwrap();
    let refused = verify(&store, &read).await.unwrap_err();
    assert_eq!(refused.reason, "ChecksumMismatch", "{refused:?}");
    assert!(refused.message.contains(object.as_str()), "{refused:?}");
    let missing = store.child("gone/");
    let err = verify(&missing, &read).await.unwrap_err();
    assert_eq!(err.reason, "ObjectMissing", "{err:?}");
}

/// Loads `n` incompressible values of 1 MiB (a snapshot of several part-sized chunks).
async fn load_big(data: &mut DataClient, n: usize) {
    use rand::RngCore;
    let mut rng = rand::rng();
    let pairs: Vec<(Bytes, Bytes)> = (0..n)
        .map(|i| {
            let mut v = vec![0u8; 1 << 20];
            rng.fill_bytes(&mut v);
            (Bytes::from(format!("rnd:{i}")), Bytes::from(v))
        })
        .collect();
    data.load(&pairs, 4).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_snapshot_leaves_nothing_a_restore_would_trust() {
    let s3 = S3Server::start("backup-fail");
    let store = Store::s3(
        &s3.location("fail/"),
        &S3Server::credentials(),
        StoreTimeouts::default(),
    )
    .unwrap()
    .child("src/fail-00000000/");
    let mut src = build("bfail-src", 27860, 3, 1, ARGS, options()).await;
    let addrs = src.procs.addrs();
    let mut data = DataClient::new(addrs.clone(), options()).await;
    load_big(&mut data, 60).await;
    // The follower in sync with what was just loaded (on a busy machine it lags a moment).
    let started = Instant::now();
    let view = loop {
        let view = model::observe(&addrs, &options()).await;
        let at_start = shards::shards_at_start(&view);
        if matches!(
            shards::source_for(&view, &at_start[0], 1),
            Source::Follower(_)
        ) {
            break view;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "shard 0's follower never caught up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let at_start = shards::shards_at_start(&view);
    let shard = &at_start[0];
    let recorded = BackupShardStatus {
        index: 0,
        slots: shards::slots_text(&shard.slots),
        leader_id: shard.leader.to_string(),
        leader_offset_at_start: i64::try_from(shard.leader_offset).unwrap(),
        ..BackupShardStatus::default()
    };
    let Source::Follower(f) = shards::source_for(&view, shard, 1) else {
        panic!("no follower");
    };
    let follower = f.addr;
    let source = || (follower, follower.to_string(), "follower");

    // The bucket unreachable while the RDB streams: the upload fails, nothing is stored.
    s3.signal("STOP");
    let begun = Instant::now();
    let err = take::snapshot(&store, &options(), &recorded, source(), shard.leader_offset)
        .await
        .unwrap_err();
    s3.signal("CONT");
    println!(
        "S3 stopped: {err:?} after {:.1} s",
        begun.elapsed().as_secs_f64()
    );
    assert!(!err.permanent, "{err:?}");
    assert_eq!(store.size("shard-0.rdb").await.unwrap(), None);

    // The source follower killed mid-snapshot: an error to retry, nothing stored.
    let index = src
        .procs
        .addrs()
        .iter()
        .position(|a| *a == follower)
        .unwrap();
    src.procs.nodes[index].pause();
    let opts = options();
    // As a leader source (no offset wait first), so that SYNC is what the kill cuts.
    let as_leader = (follower, follower.to_string(), "leader");
    let snapshot = take::snapshot(&store, &opts, &recorded, as_leader, 0);
    let kill = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        src.procs.nodes[index].kill();
    };
    let (result, ()) = tokio::join!(snapshot, kill);
    let err = result.unwrap_err();
    println!("source killed: {err:?}");
    assert!(!err.permanent, "{err:?}");
    assert_eq!(store.size("shard-0.rdb").await.unwrap(), None);
    assert!(store.list().await.unwrap().is_empty(), "nothing stored");
}
