//! redis.conf rendering and validation of user overrides.
//!
//! The operator owns every setting that cluster membership, identity, persistence location,
//! authentication or TLS depends on; users may tune the rest (memory, eviction, persistence cadence...).

use std::collections::BTreeMap;

/// Directory of the data volume (RDB/AOF and nodes.conf live together: identity and data must
/// survive or vanish as one, see redis-cluster.md §4.1).
pub const DATA_DIR: &str = "/data";
/// Directory of the ConfigMap-provided redis.conf.
pub const CONFIG_DIR: &str = "/etc/redis";
/// Directory of the per-start settings written by the container's entry script (memory-backed).
pub const RUNTIME_DIR: &str = "/run/redis";
/// Directory of the auth state Secret's files (`password`): what the probes and hooks
/// authenticate with, kept current through a password rotation.
pub const AUTH_DIR: &str = "/etc/redis-auth";
/// Client port.
pub const REDIS_PORT: i32 = 6379;
/// Cluster bus port (client port + 10000).
pub const BUS_PORT: i32 = 16379;
/// cluster-node-timeout in milliseconds: PFAIL after this, failover ≈ 1–2× this.
pub const NODE_TIMEOUT_MS: u64 = 5000;

/// Keys users may not override, and why (shown in the condition message).
const OWNED: &[(&str, &str)] = &[
    (
        "port",
        "members must listen where the operator and peers expect them",
    ),
    ("bind", "members must be reachable on the pod IP"),
    (
        "dir",
        "data and nodes.conf must live on the member's volume",
    ),
    ("requirepass", "auth is managed through spec.auth"),
    ("masterauth", "auth is managed through spec.auth"),
    ("masteruser", "auth is managed through spec.auth"),
    ("replicaof", "replication is managed by the operator"),
    ("slaveof", "replication is managed by the operator"),
    ("include", "the operator controls which files are loaded"),
    (
        "protected-mode",
        "auth is always on; protected mode would refuse peers",
    ),
    ("daemonize", "the process must stay in the foreground"),
    ("rename-command", "the operator needs the admin commands"),
];

/// Rejects overrides that redis.conf cannot hold as one directive each, or that name an
/// operator-owned key, with a message naming each offending key. The API server refuses most
/// of these at admission (the CEL rules on `spec.config`); this is the controller's own check,
/// for objects admitted before those rules existed and for what CEL cannot express.
///
/// redis.conf splits each line on whitespace and keeps the last value of a directive, so a key
/// with a space (`dir /tmp`), an empty key whose value is a whole directive, or a value with a
/// line break would set any directive; a NUL or an unbalanced quote would stop the member from
/// starting at its next restart.
///
/// # Errors
/// A sentence listing every offending key and why, for the `Ready=False` condition.
pub fn validate_overrides(overrides: &BTreeMap<String, String>) -> Result<(), String> {
    let bad: Vec<String> = overrides
        .iter()
        .filter_map(|(key, value)| problem(key, value).map(|why| format!("{:?} ({why})", key)))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "spec.config has keys or values redis.conf cannot take: {}",
            bad.join(", ")
        ))
    }
}

/// What is wrong with one override, if anything.
fn problem(key: &str, value: &str) -> Option<String> {
    let directive = key.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !directive {
        return Some("keys must be lowercase directive names, ^[a-z][a-z0-9-]*$".into());
    }
    if key.starts_with("cluster-") {
        return Some("cluster settings are managed by the operator".into());
    }
    if key.starts_with("tls-") {
        return Some("TLS is managed through spec.tls".into());
    }
    if let Some((_, why)) = OWNED.iter().find(|(owned, _)| *owned == key) {
        return Some((*why).into());
    }
    if value.chars().any(char::is_control) {
        return Some("values must not hold control characters (NUL, CR, LF, ...)".into());
    }
    match split_args(value) {
        Err(why) => Some(why.into()),
        Ok(args) if args.is_empty() => Some("needs a value (write \"\" for an empty one)".into()),
        Ok(_) => None,
    }
}

/// Splits a redis.conf value the way Redis splits a config line (`sdssplitargs`): whitespace
/// between arguments, `"..."` with backslash escapes, `'...'` with `\'`; a closing quote must
/// end the argument.
///
/// # Errors
/// Why Redis would refuse the line at load.
pub fn split_args(line: &str) -> Result<Vec<String>, &'static str> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(args);
        }
        let mut arg = String::new();
        while let Some(c) = chars.next() {
            match c {
                c if c.is_ascii_whitespace() => break,
                '"' | '\'' => {
                    quoted(&mut chars, c, &mut arg)?;
                    if chars.peek().is_some_and(|n| !n.is_ascii_whitespace()) {
                        return Err("a closing quote must be followed by a space");
                    }
                }
                c => arg.push(c),
            }
        }
        args.push(arg);
    }
}

/// The rest of a quoted argument up to its closing `quote`.
fn quoted(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    quote: char,
    arg: &mut String,
) -> Result<(), &'static str> {
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => arg.push(escaped),
                None => break,
            },
            c if c == quote => return Ok(()),
            c => arg.push(c),
        }
    }
    Err("unbalanced quotes")
}

/// redis.conf keys a running server refuses to change (`CONFIG SET` answers "can't set
/// immutable config" or "can't set protected config"), plus directives that are not configs at
/// all. Found by sending `CONFIG SET <key> <its current value>` for every key `CONFIG GET *`
/// lists on a cluster-enabled Redis 7.0 (docs/configuration.md says how it was found); the
/// operator-owned keys are refused before this matters. Every other key is applied live.
pub const RESTART_KEYS: &[&str] = &[
    "aclfile",
    "always-show-logo",
    "aof_rewrite_cpulist",
    "appenddirname",
    "appendfilename",
    "bgsave_cpulist",
    "bio_cpulist",
    "daemonize",
    "databases",
    "dbfilename",
    "disable-thp",
    "enable-debug-command",
    "enable-module-command",
    "enable-protected-configs",
    "io-threads",
    "io-threads-do-reads",
    "loadmodule",
    "logfile",
    "pidfile",
    "rdbchecksum",
    "server_cpulist",
    "set-proc-title",
    "socket-mark-id",
    "supervised",
    "syslog-enabled",
    "syslog-facility",
    "syslog-ident",
    "tcp-backlog",
    "unixsocket",
    "unixsocketperm",
    "user",
];

/// Whether a running server accepts `key` through `CONFIG SET`.
pub fn is_live(key: &str) -> bool {
    let k = key.trim().to_ascii_lowercase();
    !RESTART_KEYS.contains(&k.as_str())
}

/// A redis.conf value as `CONFIG SET` takes it. redis.conf splits a line into arguments with
/// quotes (`save ""` is an empty value, `save "3600 1"` one value with a space); `CONFIG SET`
/// takes its argument verbatim. So a value wholly wrapped in one pair of quotes is unwrapped
/// (with `\"`, `\'` and `\\` unescaped); anything else is passed as it is.
pub fn runtime_value(conf_value: &str) -> String {
    let v = conf_value.trim();
    let quoted = v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')));
    if !quoted {
        return v.to_string();
    }
    let inner = &v[1..v.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('"' | '\'' | '\\')) => out.push(n),
                Some(n) => {
                    out.push(c);
                    out.push(n);
                }
                None => out.push(c),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The overrides split into (needs a restart, applied live).
pub fn split_live(
    overrides: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    overrides
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .partition(|(k, _)| !is_live(k))
}

/// Renders redis.conf: the operator's baseline, then the user's overrides, then the include of
/// the per-start runtime file (announce IP and passwords must not be in a ConfigMap or argv).
pub fn render(overrides: &BTreeMap<String, String>) -> String {
    let mut out = String::from(
        "# Generated by redis-operator. Edit spec.config of the RedisCluster instead.\n",
    );
    let baseline: &[(&str, String)] = &[
        ("port", REDIS_PORT.to_string()),
        ("bind", "0.0.0.0 -::*".to_string()),
        ("protected-mode", "no".to_string()),
        ("dir", DATA_DIR.to_string()),
        ("cluster-enabled", "yes".to_string()),
        ("cluster-config-file", format!("{DATA_DIR}/nodes.conf")),
        ("cluster-node-timeout", NODE_TIMEOUT_MS.to_string()),
        // One lost shard must not stop the others from serving (reference §7.1).
        ("cluster-require-full-coverage", "no".to_string()),
        // A replica too far behind must not promote itself and silently lose writes.
        ("cluster-replica-validity-factor", "10".to_string()),
        // The operator owns placement: Redis must not move replicas across zones by itself.
        ("cluster-allow-replica-migration", "no".to_string()),
        ("cluster-migration-barrier", "1".to_string()),
        ("appendonly", "yes".to_string()),
        ("appendfsync", "everysec".to_string()),
        ("repl-backlog-size", "64mb".to_string()),
        // Redis waits 5 s by default before a diskless full sync, to batch replicas. The
        // operator attaches a shard's followers within milliseconds of each other, so 1 s
        // still batches them, and a lone replacement follower is protected 4 s sooner.
        ("repl-diskless-sync-delay", "1".to_string()),
        ("shutdown-timeout", "10".to_string()),
    ];
    for (k, v) in baseline {
        if !overrides.contains_key(*k) {
            out.push_str(&format!("{k} {v}\n"));
        }
    }
    for (k, v) in overrides {
        out.push_str(&format!("{k} {v}\n"));
    }
    out.push_str(&format!("include {RUNTIME_DIR}/runtime.conf\n"));
    out
}

/// Whether the redis.conf rendered from `overrides` turns the AOF on: the baseline does, and
/// `spec.config` may say otherwise.
pub fn aof_on(overrides: &BTreeMap<String, String>) -> bool {
    overrides
        .get("appendonly")
        .is_none_or(|v| runtime_value(v).eq_ignore_ascii_case("yes"))
}

/// Stable short hash (of a rendered config, of a revision's inputs).
pub fn hash(rendered: &str) -> String {
    // FNV-1a: stable across Rust versions and processes, unlike DefaultHasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in rendered.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Entry script of the redis container: writes the per-start settings, runs the start gate,
/// then execs redis-server so it receives SIGTERM directly.
///
/// The start gate (reference §2.5, S4, `scripts/start-gate.sh`): a member whose nodes.conf
/// says it leads slots but that has no dataset on disk (persistence off, or its volume lost)
/// would come back as the leader of its slots with nothing in them, and its followers would
/// full-sync the empty dataset and wipe the shard. So it does not start until a peer shows that
/// a follower took its slots over (Redis's own election or the operator's FORCE failover; it
/// then rejoins as a follower of the new leader and syncs from it), or until every follower it
/// knows answers and holds no keys (nothing to protect). Without persistence, an RDB on disk is
/// a full sync's leftover, never the member's own dataset, and goes first
/// (`scripts/stale-rdb.sh`): otherwise a leader that was once a follower came back with it.
///
/// A follower stopped gracefully starts from its shutdown RDB instead of its AOF, so that it
/// resumes with a partial resync ([`RESUME_RDB_SCRIPT`]).
pub const ENTRY_SCRIPT: &str = concat!(
    r#"set -eu
umask 077
{
  printf 'cluster-announce-ip %s\n' "$POD_IP"
  printf 'requirepass "%s"\n' "$REDIS_PASSWORD"
  printf 'masterauth "%s"\n' "$REDIS_PASSWORD"
} > /run/redis/runtime.conf
"#,
    include_str!("scripts/stale-rdb.sh"),
    include_str!("scripts/resume-rdb.sh"),
    include_str!("scripts/start-gate.sh"),
    r#"exec redis-server /etc/redis/redis.conf
"#
);

/// The entry script's step that starts a follower from its shutdown RDB with the AOF off
/// (`scripts/resume-rdb.sh`, which says why this is safe); the operator turns the AOF back on
/// once its replication link is up. Public for the tests against real servers.
pub const RESUME_RDB_SCRIPT: &str = include_str!("scripts/resume-rdb.sh");

/// preStop hook: a leader hands its slots to its best in-sync follower with a graceful
/// `CLUSTER FAILOVER` (no acknowledged write lost, writes pause for milliseconds) and waits up
/// to 10 s until it follows, before the kubelet sends SIGTERM. The hook runs for every graceful
/// deletion (kubectl delete, eviction, drain) even when the operator is down; the operator
/// hands over itself only if a leader still leads 5 s into its deletion.
pub const PRE_STOP_SCRIPT: &str = include_str!("scripts/pre-stop.sh");

/// Readiness: the server answers an authenticated PING, with the current password (the
/// mounted file follows a rotation; the environment is the password the container started
/// with, used only if the file is unreadable).
pub const READINESS_SCRIPT: &str = r#"REDISCLI_AUTH="$(cat /etc/redis-auth/password 2>/dev/null || printf %s "$REDIS_PASSWORD")" redis-cli -p 6379 ping | grep -q PONG"#;

/// Checks a password can be written into redis.conf verbatim.
///
/// # Errors
/// Why the password is unusable.
pub fn validate_password(password: &str) -> Result<(), String> {
    if password.is_empty() {
        return Err("the auth Secret's password is empty".into());
    }
    if password
        .chars()
        .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        return Err("the auth Secret's password contains quotes, backslashes or control characters, which redis.conf cannot hold".into());
    }
    Ok(())
}

#[cfg(test)]
mod gate_tests;
#[cfg(test)]
mod resume_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `scripts/stale-rdb.sh` against a redis.conf rendered from `overrides` and a data
    /// directory holding `dump.rdb`; true if the file is still there afterwards.
    fn rdb_kept(overrides: &[(&str, &str)]) -> bool {
        let dir = std::env::temp_dir().join(format!(
            "stale-rdb-{}-{}",
            std::process::id(),
            hash(&format!("{overrides:?}"))
        ));
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let conf = dir.join("redis.conf");
        let overrides: BTreeMap<String, String> = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        std::fs::write(&conf, render(&overrides)).unwrap();
        let rdb = data.join(
            overrides
                .get("dbfilename")
                .map_or("dump.rdb", |f| f.trim_matches('"')),
        );
        std::fs::write(&rdb, b"REDIS0011").unwrap();
        let script = include_str!("scripts/stale-rdb.sh")
            .replace("/etc/redis/redis.conf", &conf.display().to_string())
            .replace("/data/", &format!("{}/", data.display()));
        let status = std::process::Command::new("sh")
            .args(["-euc", &script])
            .status()
            .unwrap();
        assert!(status.success(), "the script runs under set -eu");
        let kept = rdb.exists();
        std::fs::remove_dir_all(&dir).unwrap();
        kept
    }

    #[test]
    fn an_rdb_is_removed_at_start_only_when_persistence_is_off() {
        // (overrides, kept): the baseline has AOF on; an RDB is then a snapshot of its own.
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[], true),
            (&[("appendonly", "no")], true),
            (&[("appendonly", "no"), ("save", "900 1")], true),
            (&[("save", "\"\"")], true),
            (&[("appendonly", "no"), ("save", "\"\"")], false),
            (&[("appendonly", "no"), ("save", "''")], false),
            (
                &[
                    ("appendonly", "no"),
                    ("save", "\"\""),
                    ("dbfilename", "cache.rdb"),
                ],
                false,
            ),
        ];
        for (overrides, kept) in cases {
            assert_eq!(rdb_kept(overrides), *kept, "{overrides:?}");
        }
    }

    #[test]
    fn owned_keys_are_refused_with_reasons() {
        let overrides = BTreeMap::from([
            ("maxmemory".to_string(), "1gb".to_string()),
            ("cluster-enabled".to_string(), "no".to_string()),
            ("Port".to_string(), "7000".to_string()),
        ]);
        let err = validate_overrides(&overrides).unwrap_err();
        assert!(err.contains("cluster-enabled"), "{err}");
        assert!(err.contains("Port"), "{err}");
        assert!(!err.contains("maxmemory"), "{err}");
    }

    #[test]
    fn no_key_or_value_can_inject_a_directive_or_break_the_file() {
        // (key, value, refused)
        let cases = [
            ("maxmemory", "1gb", false),
            ("save", "900 1 300 10", false),
            ("save", "\"\"", false),
            ("notify-keyspace-events", "'KEA'", false),
            ("", "maxmemory-policy allkeys-lfu", true),
            ("dir /tmp", "x", true),
            ("rename-command CONFIG", "\"\"", true),
            ("Maxmemory", "1gb", true),
            ("maxmemory ", "1gb", true),
            ("cluster-enabled", "no", true),
            ("dir", "/tmp", true),
            ("port", "7000", true),
            ("tls-port", "6379", true),
            ("tls-auth-clients", "no", true),
            ("tls-protocols", "TLSv1.3", true),
            ("maxmemory", "", true),
            ("maxmemory", "1gb\nrename-command CONFIG x", true),
            ("maxmemory", "1gb\0", true),
            ("maxmemory", "\"1gb", true),
            ("maxmemory", "'1gb", true),
            ("maxmemory", "\"1\"gb", true),
        ];
        for (key, value, refused) in cases {
            let overrides = BTreeMap::from([(key.to_string(), value.to_string())]);
            assert_eq!(
                validate_overrides(&overrides).is_err(),
                refused,
                "{key:?} = {value:?}: {:?}",
                validate_overrides(&overrides)
            );
        }
    }

    #[test]
    fn values_split_as_redis_splits_them() {
        assert_eq!(
            split_args(" 900 1  300 10 ").unwrap(),
            ["900", "1", "300", "10"]
        );
        assert_eq!(split_args("\"a b\" 'c d'").unwrap(), ["a b", "c d"]);
        assert_eq!(split_args("\"\"").unwrap(), [""]);
        assert!(split_args("\"a").is_err());
        assert!(split_args("\"a\"b").is_err());
    }

    #[test]
    fn overrides_replace_baseline_and_runtime_include_is_last() {
        let overrides = BTreeMap::from([("appendonly".to_string(), "no".to_string())]);
        assert!(validate_overrides(&overrides).is_ok());
        let conf = render(&overrides);
        assert!(conf.contains("appendonly no\n"));
        assert!(!conf.contains("appendonly yes"));
        assert!(conf.trim_end().ends_with("include /run/redis/runtime.conf"));
        assert!(conf.contains("cluster-enabled yes\n"));
    }

    #[test]
    fn immutable_keys_need_a_restart_and_the_rest_is_live() {
        let overrides = BTreeMap::from([
            ("maxmemory".to_string(), "1gb".to_string()),
            ("maxmemory-policy".to_string(), "allkeys-lru".to_string()),
            ("databases".to_string(), "4".to_string()),
            ("IO-Threads".to_string(), "2".to_string()),
        ]);
        let (restart, live) = split_live(&overrides);
        assert_eq!(
            restart.keys().collect::<Vec<_>>(),
            vec!["IO-Threads", "databases"]
        );
        assert_eq!(
            live.keys().collect::<Vec<_>>(),
            vec!["maxmemory", "maxmemory-policy"]
        );
    }

    #[test]
    fn quoted_conf_values_are_unwrapped_for_config_set() {
        assert_eq!(runtime_value("\"\""), "");
        assert_eq!(runtime_value("\"3600 1 300 100\""), "3600 1 300 100");
        assert_eq!(runtime_value("'allkeys-lru'"), "allkeys-lru");
        assert_eq!(runtime_value("3600 1"), "3600 1");
        assert_eq!(runtime_value("\"a\\\"b\""), "a\"b");
        assert_eq!(runtime_value("100mb"), "100mb");
    }

    #[test]
    fn hash_is_stable_and_sensitive() {
        assert_eq!(hash("a"), hash("a"));
        assert_ne!(hash("a"), hash("b"));
    }

    #[test]
    fn passwords_that_break_redis_conf_are_refused() {
        assert!(validate_password("abcDEF123").is_ok());
        assert!(validate_password("").is_err());
        assert!(validate_password("a\"b").is_err());
        assert!(validate_password("a\nb").is_err());
    }
}
