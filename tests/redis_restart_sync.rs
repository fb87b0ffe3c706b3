//! Restart cost (issue 23) against real redis-server 7.0.15 processes: a follower of a
//! cluster-mode master, run from the operator's rendered redis.conf (AOF on, `everysec`, the
//! default save points), restarted the way a rolling update restarts it.
//!
//! * Graceful stop, started through the entry script's resume step
//!   (`scripts/resume-rdb.sh`): it loads its shutdown RDB with the AOF off and resumes with a
//!   partial resync; the AOF is turned back on once the link is up (the operator's step).
//! * Graceful stop, started as before (AOF on): the AOF holds no replication id, so it
//!   full-syncs.
//! * A crash (SIGKILL, no final RDB) after the AOF was back on: the AOF is newer, the resume
//!   step keeps it, and every write is there before the follower reaches its master.

#![allow(clippy::unwrap_used, clippy::panic)]

mod support {
    pub mod redis_procs;
}

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redis_operator::controller::config::{RESUME_RDB_SCRIPT, render};
use redis_operator::redis::command::Cmd;
use redis_operator::redis::model::observe_node;
use redis_operator::redis::sync::{SyncBar, follower_in_sync};
use redis_operator::redis::{AdminOptions, Client, ClusterAdmin, reply};
use support::redis_procs::{RedisProc, pick_ports};

/// Bound of every wait in this file.
const LIMIT: Duration = Duration::from_secs(20);

/// A master with every slot and one follower, in a temp directory removed on drop.
struct Pair {
    master: RedisProc,
    follower: RedisProc,
    root: PathBuf,
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.master.kill();
        self.follower.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// The operator's redis.conf with its paths moved into `dir` (port and bind come from argv).
fn write_conf(dir: &Path) -> PathBuf {
    let text = render(&BTreeMap::new())
        .replace(
            "/run/redis/runtime.conf",
            &runtime_conf(dir).display().to_string(),
        )
        .replace("/data", &dir.display().to_string());
    let conf = dir.join("redis.conf");
    std::fs::write(&conf, text).unwrap();
    std::fs::write(runtime_conf(dir), "").unwrap();
    conf
}

fn runtime_conf(dir: &Path) -> PathBuf {
    dir.join("runtime.conf")
}

/// The entry script's resume step for the member in `dir`, as the container runs it (`sh`,
/// `set -eu`), after a fresh runtime.conf; true if it chose the RDB (`appendonly no`).
fn run_resume_step(dir: &Path) -> bool {
    std::fs::write(runtime_conf(dir), "").unwrap();
    let script = RESUME_RDB_SCRIPT
        .replace(
            "/etc/redis/redis.conf",
            &dir.join("redis.conf").display().to_string(),
        )
        .replace(
            "/run/redis/runtime.conf",
            &runtime_conf(dir).display().to_string(),
        )
        .replace("/data/", &format!("{}/", dir.display()));
    let out = std::process::Command::new("sh")
        .args(["-euc", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "resume step: {out:?}");
    std::fs::read_to_string(runtime_conf(dir))
        .unwrap()
        .contains("appendonly no")
}

async fn call(addr: SocketAddr, cmd: Cmd) -> String {
    let mut c = Client::connect(addr, &AdminOptions::default())
        .await
        .unwrap();
    reply::text(&cmd, c.call(&cmd).await.unwrap()).unwrap()
}

/// A numeric field of `INFO <section>`.
async fn info(addr: SocketAddr, section: &str, field: &str) -> u64 {
    let text = call(addr, Cmd::info(section)).await;
    text.lines()
        .find_map(|l| l.trim_end().strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO {section}: {text}"))
}

/// DBSIZE.
async fn keys_in(addr: SocketAddr) -> u64 {
    let cmd = Cmd::dbsize();
    let mut c = Client::connect(addr, &AdminOptions::default())
        .await
        .unwrap();
    reply::count(&cmd, c.call(&cmd).await.unwrap()).unwrap()
}

/// Master's (sync_full, sync_partial_ok).
async fn syncs(master: SocketAddr) -> (u64, u64) {
    (
        info(master, "stats", "sync_full").await,
        info(master, "stats", "sync_partial_ok").await,
    )
}

async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The follower has everything its master had when read (the one definition of in-sync).
async fn caught_up(pair: &Pair) -> bool {
    let options = AdminOptions::default();
    let (Ok(f), Ok(m)) = (
        observe_node(pair.follower.addr(), &options).await,
        observe_node(pair.master.addr(), &options).await,
    ) else {
        return false;
    };
    follower_in_sync(&f, &m, SyncBar::CaughtUp)
}

async fn write(addr: SocketAddr, prefix: &str, n: usize) {
    let mut c = Client::connect(addr, &AdminOptions::default())
        .await
        .unwrap();
    let cmds: Vec<Cmd> = (0..n)
        .map(|i| {
            Cmd::new("SET")
                .arg(format!("{prefix}:{i}"))
                .arg(format!("v{i}"))
        })
        .collect();
    for chunk in cmds.chunks(1000) {
        for r in c.pipeline(chunk).await.unwrap() {
            r.unwrap();
        }
    }
}

/// A master holding every slot with 20 000 keys and a follower in sync with it.
async fn pair(name: &str, base: u16) -> Pair {
    let root = std::env::temp_dir().join(format!("redis-op-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let ports = pick_ports(base, 2);
    let mut procs = ports.iter().map(|port| {
        let dir = root.join(port.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let conf = write_conf(&dir);
        RedisProc::from_conf(*port, dir, conf)
    });
    let (master, follower) = (procs.next().unwrap(), procs.next().unwrap());
    let mut pair = Pair {
        master,
        follower,
        root,
    };
    pair.master.start(LIMIT).await;
    pair.follower.start(LIMIT).await;
    let m = pair.master.addr();
    call(m, Cmd::cluster("ADDSLOTSRANGE").arg("0").arg("16383")).await;
    call(
        pair.follower.addr(),
        Cmd::cluster("MEET")
            .arg("127.0.0.1")
            .arg(m.port().to_string()),
    )
    .await;
    let id = call(m, Cmd::cluster("MYID")).await;
    until("the follower to learn its master", || async {
        call(pair.follower.addr(), Cmd::cluster("NODES"))
            .await
            .contains(&id)
    })
    .await;
    call(pair.follower.addr(), Cmd::cluster("REPLICATE").arg(&id)).await;
    // A node serves only 2 s after its start (CLUSTER_WRITABLE_DELAY).
    until("the master to serve", || async {
        call(m, Cmd::cluster("INFO"))
            .await
            .contains("cluster_state:ok")
    })
    .await;
    write(m, "base", 20_000).await;
    until("the first sync", || caught_up(&pair)).await;
    pair
}

/// Stops the follower gracefully, writes `during` keys meanwhile, starts it again (through
/// the resume step when `resume`), and waits until it is caught up; the master's sync
/// counters' deltas (full, partial).
async fn graceful_restart(pair: &mut Pair, resume: bool) -> (u64, u64) {
    let m = pair.master.addr();
    let before = syncs(m).await;
    pair.follower.terminate(LIMIT);
    write(m, "during", 1_000).await;
    if resume {
        assert!(
            run_resume_step(&pair.follower.dir),
            "a follower stopped gracefully starts from its shutdown RDB:\n{}",
            pair.follower.log_tail()
        );
    } else {
        std::fs::write(runtime_conf(&pair.follower.dir), "").unwrap();
    }
    pair.follower.start(LIMIT).await;
    let f = pair.follower.addr();
    assert_eq!(
        info(f, "persistence", "aof_enabled").await,
        u64::from(!resume)
    );
    until("the resync", || caught_up(pair)).await;
    if resume {
        // The operator's step once the link is up (plan::config): the same operation.
        let admin = ClusterAdmin::new([f], AdminOptions::default());
        let on = BTreeMap::from([("appendonly".to_string(), "yes".to_string())]);
        admin.config_set(f, &on).await.unwrap();
        assert_eq!(info(f, "persistence", "aof_enabled").await, 1);
        until("the AOF rewrite", || async {
            info(f, "persistence", "aof_rewrite_in_progress").await == 0
                && info(f, "persistence", "aof_rewrite_scheduled").await == 0
        })
        .await;
    }
    assert_eq!(keys_in(f).await, keys_in(m).await);
    let after = syncs(m).await;
    (after.0 - before.0, after.1 - before.1)
}

#[tokio::test]
async fn a_follower_restarted_from_its_shutdown_rdb_resyncs_partially() {
    let mut pair = pair("resume-rdb", 27400).await;
    let (full, partial) = graceful_restart(&mut pair, true).await;
    assert_eq!(
        (full, partial),
        (0, 1),
        "master sync_full / sync_partial_ok deltas\n{}",
        pair.follower.log_tail()
    );
    assert_eq!(keys_in(pair.follower.addr()).await, 21_000);
}

#[tokio::test]
async fn a_follower_restarted_with_its_aof_full_syncs() {
    let mut pair = pair("resume-aof", 27420).await;
    let (full, partial) = graceful_restart(&mut pair, false).await;
    assert_eq!((full, partial), (1, 0), "{}", pair.follower.log_tail());
}

#[tokio::test]
async fn after_a_crash_the_newer_aof_is_loaded_with_every_write() {
    let mut pair = pair("resume-crash", 27440).await;
    // The previous restart went through the RDB and the AOF is back on: dump.rdb exists.
    graceful_restart(&mut pair, true).await;
    let m = pair.master.addr();
    write(m, "after", 1_000).await;
    until("replication", || caught_up(&pair)).await;
    // The follower's AOF is written (not necessarily fsynced) within an event-loop turn.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let want = keys_in(m).await;
    pair.follower.kill();
    assert!(
        !run_resume_step(&pair.follower.dir),
        "after a crash the AOF is newer than the RDB"
    );
    // Its master frozen: what the follower holds is what it loaded from its own disk.
    pair.master.pause();
    pair.follower.start(LIMIT).await;
    let f = pair.follower.addr();
    let loaded = keys_in(f).await;
    let aof = info(f, "persistence", "aof_enabled").await;
    pair.master.resume();
    assert_eq!(aof, 1);
    assert_eq!(loaded, want, "every write is in the AOF it loaded");
    until("the resync", || caught_up(&pair)).await;
    assert_eq!(keys_in(f).await, keys_in(m).await);
}
