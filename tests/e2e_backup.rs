//! End-to-end: backup and restore (issue 22) against a real S3 server (versitygw, `hack/s3`).
//!
//! A 3×1 holds keys of every type (strings, hashes, lists, sets, sorted sets, streams), some
//! with TTLs, and 20 values of 1 MiB, and takes WAIT-acknowledged writes throughout. A
//! RedisClusterBackup stores it; then two new clusters, a 5×1 and a 3×1, are created with
//! `restoreFrom` it. In both: every loaded key has the same type and value (`DUMP` equal) and
//! its TTL within 2 s, every write acknowledged before the backup was created is there, and the
//! slots are spread evenly. Then a backup is made of a cluster, its object corrupted, and a
//! restore from it fails with `ChecksumMismatch` having written nothing. A schedule firing
//! every minute makes backups and deletes all but the newest two with their objects, while a
//! restore whose operator is killed mid-way resumes and completes with every key.
//!
//! Needs the cluster, the CRDs and the RBAC: run through `make test`.

#![allow(clippy::unwrap_used, clippy::panic)]

mod kube_support;
mod support {
    pub mod ack_writer;
    pub mod chaos;
    pub mod redis_data;
}

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use kube_support::*;
use redis_operator::crd::{RedisCluster, RedisClusterBackup, RedisClusterBackupSchedule};
use redis_operator::redis::client::Frame;
use redis_operator::redis::command::Cmd;
use redis_operator::redis::{Client, reply};
use serde_json::json;
use support::ack_writer::ReadBackOptions;
use support::chaos::*;
use support::redis_data::DataClient;

/// Keys of each kind loaded before the backup (make test's budget; the benchmark loads 1M).
fn per_kind() -> usize {
    std::env::var("BACKUP_KEYS_PER_KIND")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

/// `hack/s3 up`'s settings.
struct S3 {
    endpoint: String,
    bucket: String,
    access_key: String,
    secret_key: String,
}

impl S3 {
    /// The bucket under `prefix`, as the test reads and corrupts it.
    fn store(&self, prefix: &str) -> redis_operator::backup::store::Store {
        use redis_operator::backup::store::{S3Credentials, S3Location, Store, StoreTimeouts};
        Store::s3(
            &S3Location {
                endpoint: Some(self.endpoint.clone()),
                bucket: self.bucket.clone(),
                prefix: prefix.to_string(),
                region: "us-east-1".into(),
                ca_pem: None,
            },
            &S3Credentials {
                access_key_id: self.access_key.clone(),
                secret_access_key: self.secret_key.clone(),
            },
            StoreTimeouts::default(),
        )
        .unwrap()
    }
}

fn s3_up() -> S3 {
    let out = std::process::Command::new(repo().join("hack/s3"))
        .arg("up")
        .output()
        .expect("hack/s3 up");
    assert!(
        out.status.success(),
        "hack/s3 up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("hack/s3 up printed no {k}: {text}"))
            .to_string()
    };
    S3 {
        endpoint: get("S3_ENDPOINT"),
        bucket: get("S3_BUCKET"),
        access_key: get("S3_ACCESS_KEY"),
        secret_key: get("S3_SECRET_KEY"),
    }
}

async fn credentials(chaos: &Chaos, s3: &S3, name: &str, secret_key: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
        "stringData": {"accessKeyId": s3.access_key, "secretAccessKey": secret_key}
    }))
    .unwrap();
    Api::<Secret>::namespaced(chaos.client.clone(), &chaos.ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

fn backup(name: &str, cluster: &str, s3: &S3, prefix: &str, creds: &str) -> RedisClusterBackup {
    serde_json::from_value(json!({
        "apiVersion": "redis.redis-operator.dev/v1alpha1", "kind": "RedisClusterBackup",
        "metadata": {"name": name},
        "spec": {"cluster": cluster, "destination": {"s3": {
            "endpoint": s3.endpoint, "bucket": s3.bucket, "prefix": prefix,
            "credentialsSecret": creds}}}
    }))
    .unwrap()
}

/// Waits for the backup to finish; returns it.
async fn finished(api: &Api<RedisClusterBackup>, name: &str) -> RedisClusterBackup {
    wait_for(
        &format!("backup {name} finished"),
        Duration::from_secs(300),
        || async {
            let b = api.get(name).await.ok()?;
            let phase = format!("{:?}", b.status.as_ref()?.phase?);
            (phase == "Completed" || phase == "Failed").then_some(b)
        },
    )
    .await
}

/// Builds the command writing key `k` number `i` of a kind.
type MakeCmd = fn(&str, usize) -> Cmd;

/// Loads keys of every kind into the source; returns their names.
async fn load(data: &mut DataClient) -> Vec<Vec<u8>> {
    let n = per_kind();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let pairs: Vec<(Bytes, Bytes)> = (0..n * 2)
        .map(|i| {
            (
                Bytes::from(format!("str:{i}")),
                Bytes::from(format!("value-{i}")),
            )
        })
        .collect();
    data.load(&pairs, 1000).await.unwrap();
    keys.extend(pairs.iter().map(|(k, _)| k.to_vec()));
    let big: Vec<(Bytes, Bytes)> = (0..20u8)
        .map(|i| {
            (
                Bytes::from(format!("big:{i}")),
                Bytes::from(vec![b'a' + i; 1 << 20]),
            )
        })
        .collect();
    data.load(&big, 2).await.unwrap();
    keys.extend(big.iter().map(|(k, _)| k.to_vec()));
    let kinds: [(&str, MakeCmd); 6] = [
        ("hash", |k, i| {
            Cmd::new("HSET")
                .arg(k)
                .arg("f1")
                .arg(format!("v{i}"))
                .arg("f2")
                .arg("x")
        }),
        ("list", |k, i| {
            Cmd::new("RPUSH")
                .arg(k)
                .arg("a")
                .arg(format!("{i}"))
                .arg("c")
        }),
        ("set", |k, i| {
            Cmd::new("SADD").arg(k).arg("m1").arg(format!("m{i}"))
        }),
        ("zset", |k, i| {
            Cmd::new("ZADD")
                .arg(k)
                .arg("1")
                .arg("a")
                .arg(format!("{i}"))
                .arg("b")
        }),
        ("stream", |k, i| {
            Cmd::new("XADD")
                .arg(k)
                .arg("*")
                .arg("f")
                .arg(format!("{i}"))
        }),
        ("ttl", |k, _| {
            Cmd::new("SET").arg(k).arg("t").arg("EX").arg("3600")
        }),
    ];
    for (kind, make) in kinds {
        let cmds: Vec<(Bytes, Cmd)> = (0..n)
            .map(|i| {
                let key = format!("{kind}:{i}");
                let cmd = make(&key, i);
                (Bytes::from(key), cmd)
            })
            .collect();
        data.run_many(&cmds, 1000).await.unwrap();
        keys.extend(cmds.iter().map(|(k, _)| k.to_vec()));
    }
    keys
}

/// Read-only commands over the cluster, a batch tried again (on a fresh connection) when a
/// member did not answer within the client's timeout: the machine runs the other suites
/// beside this one, and a member stalled 3 s under that load once (a DUMP batch of 500).
async fn read_many(data: &mut DataClient, cmds: &[(Bytes, Cmd)], chunk: usize) -> Vec<Frame> {
    let mut tries = 0;
    loop {
        tries += 1;
        match data.run_many(cmds, chunk).await {
            Ok(frames) => return frames,
            Err(e) if tries < 4 => {
                println!("read try {tries} failed, trying again: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => panic!("reading {} keys failed {tries} times: {e}", cmds.len()),
        }
    }
}

/// DUMP and PEXPIRETIME of `keys`.
async fn dump(
    data: &mut DataClient,
    keys: &[Vec<u8>],
) -> BTreeMap<Vec<u8>, (Option<Vec<u8>>, i64)> {
    let mut out = BTreeMap::new();
    for part in keys.chunks(20_000) {
        // A set of strings is a hash table in Redis 7.0, iterated in an order that depends on
        // the process's hash seed: its DUMP differs between two equal sets on two servers, so
        // sets are compared by their sorted members instead.
        let dumps: Vec<(Bytes, Cmd)> = part
            .iter()
            .map(|k| {
                let name = if k.starts_with(b"set:") {
                    "SMEMBERS"
                } else {
                    "DUMP"
                };
                (
                    Bytes::from(k.clone()),
                    Cmd::new(name).arg_bytes(k.clone().into()),
                )
            })
            .collect();
        // The absolute expiry (Unix ms; -1 without one): comparable across clusters and time.
        let expiries: Vec<(Bytes, Cmd)> = part
            .iter()
            .map(|k| {
                (
                    Bytes::from(k.clone()),
                    Cmd::new("PEXPIRETIME").arg_bytes(k.clone().into()),
                )
            })
            .collect();
        let payloads = read_many(data, &dumps, 500).await;
        let ats = read_many(data, &expiries, 1000).await;
        for (((key, cmd), payload), ((_, tcmd), at)) in
            dumps.iter().zip(payloads).zip(expiries.iter().zip(ats))
        {
            let payload = if key.starts_with(b"set:") {
                let mut members = reply::bytes_array(cmd, payload).unwrap();
                members.sort();
                Some(members.join(&b"\0"[..]))
            } else {
                reply::opt_bytes(cmd, payload).unwrap().map(|b| b.to_vec())
            };
            let at = reply::int(tcmd, at).unwrap();
            out.insert(key.to_vec(), (payload, at));
        }
    }
    out
}

/// Slots per master of the cluster at `seed`.
async fn slot_counts(seed: SocketAddr, pass: &str) -> Vec<usize> {
    let mut c = Client::connect(seed, &member_admin(pass)).await.unwrap();
    let cmd = Cmd::cluster("NODES");
    let text = reply::text(&cmd, c.call(&cmd).await.unwrap()).unwrap();
    redis_operator::redis::parse::cluster_nodes::parse_cluster_nodes(&text)
        .unwrap()
        .iter()
        .filter(|e| e.is_master() && !e.slots.is_empty())
        .map(|e| e.slots.iter().map(|r| r.len()).sum())
        .collect()
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn a_backup_restores_into_five_and_three_shards_with_every_key() {
    let s3 = s3_up();
    let (chaos, members, writer) = Chaos::start("e2e-backup", json!({})).await;
    let ns = chaos.ns.name.clone();
    let mut source = DataClient::new(members.addrs(), chaos.admin()).await;
    let loaded = Instant::now();
    let keys = load(&mut source).await;
    println!(
        "{ns}: loaded {} keys in {:.1} s",
        keys.len(),
        loaded.elapsed().as_secs_f64()
    );
    let before = dump(&mut source, &keys).await;

    credentials(&chaos, &s3, "s3-creds", &s3.secret_key).await;
    let backups: Api<RedisClusterBackup> = Api::namespaced(chaos.client.clone(), &ns);
    // Every write acknowledged before this instant must be in the backup.
    let cut = writer.elapsed();
    backups
        .create(
            &PostParams::default(),
            &backup("b1", NAME, &s3, &format!("{ns}/"), "s3-creds"),
        )
        .await
        .unwrap();
    let b1 = finished(&backups, "b1").await;
    let st = b1.status.clone().unwrap();
    println!(
        "{ns}: backup {:?} {:?} {:?} in {:?} at {:?}",
        st.phase, st.size, st.keys, st.duration, st.location
    );
    assert_eq!(
        format!("{:?}", st.phase.unwrap()),
        "Completed",
        "{:?}",
        st.conditions
    );
    assert_eq!(st.shards.len(), 3);
    for s in &st.shards {
        assert_eq!(s.source_role.as_deref(), Some("follower"), "{s:?}");
        assert!(
            s.source_offset.unwrap() >= s.leader_offset_at_start,
            "{s:?}"
        );
    }
    let mut report = writer.stop().await;

    let clusters: Api<RedisCluster> = Api::namespaced(chaos.client.clone(), &ns);
    for (name, leaders) in [("restored5", 5), ("restored3", 3)] {
        clusters
            .create(
                &PostParams::default(),
                &cluster(name, leaders, 1, json!({"restoreFrom": {"backup": "b1"}})),
            )
            .await
            .unwrap();
    }
    for (name, leaders) in [("restored5", 5usize), ("restored3", 3)] {
        restore_completed(&clusters, &ns, name).await;
        let pass = password(&chaos.client, &ns, name).await;
        let addrs = member_addrs(&chaos.client, &ns, name).await;
        let mut target = DataClient::new(addrs.clone(), member_admin(&pass)).await;
        let after = dump(&mut target, &keys).await;
        let mut differ = 0;
        for (key, (payload, ttl)) in &before {
            let (p2, t2) = &after[key];
            if payload != p2 || (ttl - t2).abs() > 2000 || (*ttl < 0) != (*t2 < 0) {
                differ += 1;
                if differ < 5 {
                    println!(
                        "{name}: {} differs: ttl {ttl} vs {t2}",
                        String::from_utf8_lossy(key)
                    );
                }
            }
        }
        assert_eq!(differ, 0, "{name}: keys differing from the source");
        let counts = slot_counts(addrs[0], &pass).await;
        assert_eq!(
            counts.len(),
            leaders,
            "{name}: masters with slots: {counts:?}"
        );
        assert!(
            counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
            "{name}: {counts:?}"
        );
        // The writes acknowledged before the backup was created.
        let mut early = report.clone();
        for tag in &mut early.tags {
            let n = tag.acked_at.iter().take_while(|at| **at < cut).count();
            tag.acked.truncate(n);
        }
        early
            .read_back(&addrs, &pass, &ReadBackOptions::default())
            .await;
        println!("{ns}: {name}: acknowledged before the backup: {early}");
        assert_eq!(early.lost(), Some(0), "{name}");
        assert!(early.acknowledged() > 0);
    }
    report
        .read_back(&members.addrs(), &chaos.pass, &ReadBackOptions::default())
        .await;
    assert_eq!(
        report.lost(),
        Some(0),
        "the source lost acknowledged writes"
    );
    chaos.cleanup().await;
}

/// The backup's phase and progress.
async fn phase_of(api: &Api<RedisClusterBackup>, name: &str) -> (String, String) {
    let b = api.get(name).await.unwrap();
    let st = b.status.unwrap_or_default();
    (
        st.phase.map(|p| format!("{p:?}")).unwrap_or_default(),
        st.progress.unwrap_or_default(),
    )
}

/// The reason of the backup's `Completed` condition.
async fn backup_reason(api: &Api<RedisClusterBackup>, name: &str) -> Option<String> {
    let b = api.get(name).await.ok()?;
    let c = b
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Completed")?;
    Some(c.reason)
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn backup_failures_are_conditions_and_a_killed_operator_resumes() {
    let s3 = s3_up();
    let (mut chaos, members) = Chaos::create("e2e-backup-fail", json!({})).await;
    let ns = chaos.ns.name.clone();
    let backups: Api<RedisClusterBackup> = Api::namespaced(chaos.client.clone(), &ns);
    // Enough incompressible data that each shard takes a moment to stream.
    let mut data = DataClient::new(members.addrs(), chaos.admin()).await;
    let big: Vec<(Bytes, Bytes)> = (0..90)
        .map(|i| {
            let v: Vec<u8> = (0..1usize << 20)
                .map(|j| (j.wrapping_mul(2654435761) >> (i % 7)) as u8)
                .collect();
            (Bytes::from(format!("big:{i}")), Bytes::from(v))
        })
        .collect();
    data.load(&big, 4).await.unwrap();

    // Credentials missing: Pending, then the Secret appears, then wrong: Failed, StorageRefused.
    let prefix = format!("{ns}/");
    backups
        .create(
            &PostParams::default(),
            &backup("nocreds", NAME, &s3, &prefix, "later"),
        )
        .await
        .unwrap();
    wait_for("CredentialsMissing", Duration::from_secs(60), || async {
        (backup_reason(&backups, "nocreds").await? == "CredentialsMissing").then_some(())
    })
    .await;
    credentials(&chaos, &s3, "later", "not-the-secret").await;
    let b = finished(&backups, "nocreds").await;
    let st = b.status.unwrap();
    println!("{ns}: wrong credentials: {:?}", st.conditions);
    assert_eq!(format!("{:?}", st.phase.unwrap()), "Failed");
    assert_eq!(
        backup_reason(&backups, "nocreds").await.as_deref(),
        Some("StorageRefused")
    );

    // The operator killed mid-backup: a new one resumes after the shards stored.
    credentials(&chaos, &s3, "s3-creds", &s3.secret_key).await;
    backups
        .create(
            &PostParams::default(),
            &backup("resumed", NAME, &s3, &prefix, "s3-creds"),
        )
        .await
        .unwrap();
    wait_for(
        "the first shard stored",
        Duration::from_secs(120),
        || async {
            let (_, progress) = phase_of(&backups, "resumed").await;
            (!progress.is_empty() && progress != "0/3").then_some(())
        },
    )
    .await;
    chaos.operator.kill();
    println!(
        "{ns}: operator killed at {:?}",
        phase_of(&backups, "resumed").await
    );
    chaos.operator = Operator::start(&ns);
    let b = finished(&backups, "resumed").await;
    let st = b.status.clone().unwrap();
    assert_eq!(
        format!("{:?}", st.phase.unwrap()),
        "Completed",
        "{:?}",
        st.conditions
    );
    assert!(st.shards.iter().all(|s| s.sha256.is_some()));

    // A shard's follower deleted while an earlier shard streams: that shard waits for the
    // replacement follower to sync and is taken from it (its leader never forks).
    backups
        .create(
            &PostParams::default(),
            &backup("moved", NAME, &s3, &prefix, "s3-creds"),
        )
        .await
        .unwrap();
    wait_for("a shard stored", Duration::from_secs(120), || async {
        let (_, progress) = phase_of(&backups, "moved").await;
        (!progress.is_empty() && progress != "0/3").then_some(())
    })
    .await;
    let leader = backups.get("moved").await.unwrap().status.unwrap().shards[2]
        .leader_id
        .clone();
    let gone = members
        .0
        .iter()
        .find(|m| m.master_id.as_deref() == Some(leader.as_str()))
        .unwrap()
        .pod
        .clone();
    chaos.delete_pods(&[gone.as_str()]).await;
    let b = finished(&backups, "moved").await;
    let moved = b.status.unwrap();
    println!(
        "{ns}: follower {gone} deleted mid-backup: {:?}",
        moved.shards[2]
    );
    assert_eq!(
        format!("{:?}", moved.phase.unwrap()),
        "Completed",
        "{:?}",
        moved.conditions
    );
    assert_ne!(moved.shards[2].source.as_deref(), Some(gone.as_str()));
    assert_eq!(moved.shards[2].source_role.as_deref(), Some("follower"));

    // A corrupted object: the restore fails with ChecksumMismatch and writes nothing.
    let store = s3.store(&prefix).child(st.path.as_deref().unwrap());
    let mut bytes = store.get("shard-1.rdb").await.unwrap().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    store.put("shard-1.rdb", bytes.into()).await.unwrap();
    let clusters: Api<RedisCluster> = Api::namespaced(chaos.client.clone(), &ns);
    clusters
        .create(
            &PostParams::default(),
            &cluster(
                "corrupt",
                3,
                0,
                json!({"restoreFrom": {"backup": "resumed"}}),
            ),
        )
        .await
        .unwrap();
    let restore = wait_for("the restore refused", Duration::from_secs(300), || async {
        let r = clusters.get("corrupt").await.ok()?.status?.restore?;
        (format!("{:?}", r.phase?) == "Failed").then_some(r)
    })
    .await;
    println!("{ns}: corrupted: {:?}", restore.conditions);
    assert_eq!(restore.conditions[0].reason, "ChecksumMismatch");
    let pass = password(&chaos.client, &ns, "corrupt").await;
    let addrs = member_addrs(&chaos.client, &ns, "corrupt").await;
    let held =
        redis_operator::redis::ops::restore_stream::cluster_key_count(&addrs, &member_admin(&pass))
            .await
            .unwrap();
    assert_eq!(held, 0, "nothing written");
    chaos.cleanup().await;
}

/// The names of the schedule's backups now.
async fn scheduled(api: &Api<RedisClusterBackup>, schedule: &str) -> Vec<(String, String)> {
    let lp = kube::api::ListParams::default()
        .labels(&format!("redis.redis-operator.dev/schedule={schedule}"));
    let mut out: Vec<(String, String)> = api
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|b| b.metadata.deletion_timestamp.is_none())
        .map(|b| {
            let phase = b
                .status
                .and_then(|s| s.phase)
                .map(|p| format!("{p:?}"))
                .unwrap_or_default();
            (b.metadata.name.unwrap_or_default(), phase)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn a_schedule_keeps_the_newest_and_a_killed_operator_resumes_a_restore() {
    let s3 = s3_up();
    let (mut chaos, members) = Chaos::create("e2e-backup-sched", json!({})).await;
    let ns = chaos.ns.name.clone();
    let prefix = format!("{ns}/");
    credentials(&chaos, &s3, "s3-creds", &s3.secret_key).await;
    let backups: Api<RedisClusterBackup> = Api::namespaced(chaos.client.clone(), &ns);

    // Every minute, keeping the newest two: the first run is at most a minute away, and by the
    // third the first must be gone with its objects.
    let schedules: Api<RedisClusterBackupSchedule> = Api::namespaced(chaos.client.clone(), &ns);
    let schedule: RedisClusterBackupSchedule = serde_json::from_value(json!({
        "apiVersion": "redis.redis-operator.dev/v1alpha1", "kind": "RedisClusterBackupSchedule",
        "metadata": {"name": "minutely"},
        "spec": {"schedule": "* * * * *", "keepLast": 2, "template": {"cluster": NAME,
            "destination": {"s3": {"endpoint": s3.endpoint, "bucket": s3.bucket,
                "prefix": prefix, "credentialsSecret": "s3-creds"}}}}
    }))
    .unwrap();
    schedules
        .create(&PostParams::default(), &schedule)
        .await
        .unwrap();

    // Enough keys that a restore takes several seconds to write.
    let mut data = DataClient::new(members.addrs(), chaos.admin()).await;
    let pairs: Vec<(Bytes, Bytes)> = (0..300_000)
        .map(|i| {
            (
                Bytes::from(format!("k:{i}")),
                Bytes::from(format!("{i:0>64}")),
            )
        })
        .collect();
    data.load(&pairs, 1000).await.unwrap();
    let keys: Vec<Vec<u8>> = pairs.iter().map(|(k, _)| k.to_vec()).collect();
    let before = dump(&mut data, &keys).await;
    backups
        .create(
            &PostParams::default(),
            &backup("full", NAME, &s3, &prefix, "s3-creds"),
        )
        .await
        .unwrap();
    let full = finished(&backups, "full").await;
    assert_eq!(
        format!("{:?}", full.status.as_ref().unwrap().phase.unwrap()),
        "Completed"
    );

    // The operator killed while the restore writes a shard: a new one resumes it.
    let clusters: Api<RedisCluster> = Api::namespaced(chaos.client.clone(), &ns);
    clusters
        .create(
            &PostParams::default(),
            &cluster("resumed", 3, 0, json!({"restoreFrom": {"backup": "full"}})),
        )
        .await
        .unwrap();
    let mid = wait_for("the restore writing", Duration::from_secs(300), || async {
        let r = clusters.get("resumed").await.ok()?.status?.restore?;
        (format!("{:?}", r.phase?) == "Running" && r.in_progress.is_some()).then_some(r)
    })
    .await;
    chaos.operator.kill();
    println!(
        "{ns}: operator killed mid-restore: progress {:?}, in progress {:?}",
        mid.progress, mid.in_progress
    );
    chaos.operator = Operator::start(&ns);
    restore_completed(&clusters, &ns, "resumed").await;
    let pass = password(&chaos.client, &ns, "resumed").await;
    let addrs = member_addrs(&chaos.client, &ns, "resumed").await;
    let mut target = DataClient::new(addrs.clone(), member_admin(&pass)).await;
    assert_eq!(dump(&mut target, &keys).await, before, "restored keys");
    let held =
        redis_operator::redis::ops::restore_stream::cluster_key_count(&addrs, &member_admin(&pass))
            .await
            .unwrap();
    assert_eq!(held, keys.len() as u64, "no key twice, none extra");

    // A restore into a cluster that already holds a key is refused and writes nothing. The
    // backup it names does not exist yet, so the cluster is up (and written to) first.
    clusters
        .create(
            &PostParams::default(),
            &cluster("refused", 3, 0, json!({"restoreFrom": {"backup": "later"}})),
        )
        .await
        .unwrap();
    wait_ready(&clusters, "refused", Duration::from_secs(300)).await;
    let pass = password(&chaos.client, &ns, "refused").await;
    let addrs = member_addrs(&chaos.client, &ns, "refused").await;
    let mut mine = DataClient::new(addrs.clone(), member_admin(&pass)).await;
    mine.load(&[(Bytes::from("mine"), Bytes::from("the user's"))], 1)
        .await
        .unwrap();
    backups
        .create(
            &PostParams::default(),
            &backup("later", NAME, &s3, &prefix, "s3-creds"),
        )
        .await
        .unwrap();
    let refused = wait_for("the restore refused", Duration::from_secs(300), || async {
        let r = clusters.get("refused").await.ok()?.status?.restore?;
        (format!("{:?}", r.phase?) == "Failed").then_some(r)
    })
    .await;
    println!("{ns}: a cluster holding a key: {:?}", refused.conditions);
    assert_eq!(refused.conditions[0].reason, "RestoreRefused");
    let held =
        redis_operator::redis::ops::restore_stream::cluster_key_count(&addrs, &member_admin(&pass))
            .await
            .unwrap();
    assert_eq!(held, 1, "nothing written beside the user's key");

    // The schedule: three runs made; the oldest deleted with its objects; the newest two kept.
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    let kept = loop {
        let now = scheduled(&backups, "minutely").await;
        for (name, _) in &now {
            if !seen.contains(name) {
                seen.push(name.clone());
            }
        }
        if seen.len() >= 3
            && now.len() == 2
            && !now.iter().any(|(n, _)| *n == seen[0])
            && now.iter().all(|(_, p)| p == "Completed")
        {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "three scheduled runs with the oldest deleted: seen {seen:?}, now {now:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    println!("{ns}: scheduled runs seen {seen:?}, kept {kept:?}");
    let sched = schedules.get("minutely").await.unwrap().status.unwrap();
    assert!(sched.last_successful_time.is_some(), "{sched:?}");
    assert!(sched.next_schedule_time.is_some(), "{sched:?}");
    // The deleted backup's objects are gone; the kept ones' are there.
    let store = s3.store(&prefix);
    // Objects live under `<prefix><cluster>/<backup>-<uid8>/`.
    let under = |name: &str, objects: &[(String, u64)]| -> Vec<String> {
        let start = format!("{NAME}/{name}-");
        objects
            .iter()
            .filter(|(o, _)| o.starts_with(&start))
            .map(|(o, _)| o.clone())
            .collect()
    };
    let oldest = seen[0].clone();
    let objects = wait_for(
        "the deleted backup's objects gone",
        Duration::from_secs(60),
        || async {
            let objects = store.list().await.ok()?;
            under(&oldest, &objects).is_empty().then_some(objects)
        },
    )
    .await;
    for (name, _) in &kept {
        let mine = under(name, &objects);
        assert!(
            mine.iter().any(|o| o.ends_with("manifest.json")),
            "{name}: {mine:?}"
        );
    }
    chaos.cleanup().await;
}

/// Waits until `name`'s restore finished, and asserts it completed.
async fn restore_completed(clusters: &Api<RedisCluster>, ns: &str, name: &str) {
    let restore = wait_for(
        &format!("{name} restored"),
        Duration::from_secs(600),
        || async {
            let r = clusters.get(name).await.ok()?.status?.restore?;
            let phase = format!("{:?}", r.phase?);
            (phase == "Completed" || phase == "Failed").then_some(r)
        },
    )
    .await;
    println!(
        "{ns}: {name}: restore {:?} {:?} keys {:?}",
        restore.phase, restore.progress, restore.keys
    );
    assert_eq!(
        format!("{:?}", restore.phase.unwrap()),
        "Completed",
        "{:?}",
        restore.conditions
    );
}
