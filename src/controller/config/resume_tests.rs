//! `scripts/resume-rdb.sh` run by `sh` against a temporary data directory: which starts load
//! the shutdown RDB (runtime.conf gets `appendonly no`) and which load the AOF.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::{RESUME_RDB_SCRIPT, hash, render};

/// One start: the config overrides, the role nodes.conf records (None: no nodes.conf), and
/// the files in /data with their age in seconds.
struct Start<'a> {
    overrides: &'a [(&'a str, &'a str)],
    role: Option<&'a str>,
    files: &'a [(&'a str, u64)],
}

fn write_aged(path: &Path, age: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"x").unwrap();
    let when = SystemTime::now() - Duration::from_secs(age);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// Runs the script for `start`; true if the member starts from its RDB (AOF off).
fn loads_rdb(start: &Start<'_>) -> bool {
    let dir = std::env::temp_dir().join(format!(
        "resume-rdb-{}-{}",
        std::process::id(),
        hash(&format!(
            "{:?}{:?}{:?}",
            start.overrides, start.role, start.files
        ))
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let overrides: BTreeMap<String, String> = start
        .overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let conf = dir.join("redis.conf");
    std::fs::write(&conf, render(&overrides)).unwrap();
    if let Some(role) = start.role {
        let nodes = format!(
            "{} 10.0.0.1:6379@16379 myself,{role} - 0 0 1 connected\nvars currentEpoch 1 lastVoteEpoch 0\n",
            "a".repeat(40)
        );
        std::fs::write(data.join("nodes.conf"), nodes).unwrap();
    }
    for (file, age) in start.files {
        write_aged(&data.join(file), *age);
    }
    let runtime = dir.join("runtime.conf");
    std::fs::write(&runtime, "cluster-announce-ip 10.0.0.1\n").unwrap();
    let script = RESUME_RDB_SCRIPT
        .replace("/etc/redis/redis.conf", &conf.display().to_string())
        .replace("/run/redis/runtime.conf", &runtime.display().to_string())
        .replace("/data/", &format!("{}/", data.display()));
    let out = std::process::Command::new("sh")
        .args(["-euc", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the script runs under set -eu: {out:?}"
    );
    let text = std::fs::read_to_string(&runtime).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    text.lines().last() == Some("appendonly no")
}

const AOF: &[(&str, u64)] = &[
    ("appendonlydir/appendonly.aof.1.base.rdb", 100),
    ("appendonlydir/appendonly.aof.1.incr.aof", 20),
    ("appendonlydir/appendonly.aof.manifest", 100),
];

#[test]
fn only_a_follower_whose_rdb_is_not_older_than_its_aof_starts_from_it() {
    let with = |extra: &'static [(&'static str, u64)]| -> Vec<(&'static str, u64)> {
        AOF.iter().chain(extra).copied().collect()
    };
    let rdb_newer = with(&[("dump.rdb", 10)]);
    let rdb_older = with(&[("dump.rdb", 30)]);
    let tried = with(&[("dump.rdb", 10), ("resume-rdb.tried", 5)]);
    let tried_before = with(&[("dump.rdb", 10), ("resume-rdb.tried", 50)]);
    let renamed = with(&[("cache.rdb", 10), ("dump.rdb", 30)]);
    let no_rdb = with(&[]);
    // (overrides, role in nodes.conf, files, loads the RDB)
    type Case<'a> = (
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
        &'a [(&'a str, u64)],
        bool,
    );
    let cases: &[Case<'_>] = &[
        // A graceful stop: the final RDB is written after the AOF's last fsync.
        (&[], Some("slave"), &rdb_newer, true),
        // A crash: writes reached the AOF after the last RDB.
        (&[], Some("slave"), &rdb_older, false),
        // A leader always loads its AOF.
        (&[], Some("master"), &rdb_newer, false),
        (&[], None, &rdb_newer, false),
        (&[], Some("slave"), &no_rdb, false),
        // No AOF at all: the RDB is all there is.
        (&[], Some("slave"), &[("dump.rdb", 10)], true),
        // Persistence by RDB only: nothing to switch.
        (&[("appendonly", "no")], Some("slave"), &rdb_newer, false),
        (
            &[("appendonly", "\"yes\"")],
            Some("slave"),
            &rdb_newer,
            true,
        ),
        // The previous start tried this very RDB and the AOF is not back on: Redis may not
        // have been able to read it.
        (&[], Some("slave"), &tried, false),
        (&[], Some("slave"), &tried_before, true),
        (
            &[("dbfilename", "cache.rdb")],
            Some("slave"),
            &renamed,
            true,
        ),
        (
            &[("dbfilename", "other.rdb")],
            Some("slave"),
            &renamed,
            false,
        ),
    ];
    for (overrides, role, files, rdb) in cases {
        let start = Start {
            overrides,
            role: *role,
            files,
        };
        assert_eq!(loads_rdb(&start), *rdb, "{overrides:?} {role:?} {files:?}");
    }
}
