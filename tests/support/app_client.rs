//! A real application client for chaos and soak tests: `tests/support/app_client.py`, redis-py's
//! `RedisCluster` (pinned in the venv `make deps` creates) doing SET/GET with its default retries.
//!
//! [`AppClient::start`] spawns it in the background; [`AppClient::stop`] sends SIGTERM (it
//! writes its report on SIGTERM too) and returns the [`AppReport`]: the exceptions the
//! application saw by class, its longest stall, the longest outage of one slot range, and reads
//! that did not return the last acknowledged value. The password reaches it through a file
//! (mode 0600), never through argv.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// The client script.
pub const APP_CLIENT_SCRIPT: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/app_client.py");

/// How long [`AppClient::stop`] waits for the report after SIGTERM before it kills the client.
/// The script abandons even a blocked socket call on SIGTERM, so this is only a backstop.
const STOP_LIMIT: Duration = Duration::from_secs(20);

/// The venv's python (`${XDG_CACHE_HOME:-~/.cache}/redis-operator/pyenv/bin/python`, created by
/// `hack/install-deps.sh`). Panics, naming `make deps`, when it is missing.
#[allow(clippy::panic)]
pub fn app_python() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| panic!("neither XDG_CACHE_HOME nor HOME is set"));
    let python = cache.join("redis-operator/pyenv/bin/python");
    if !python.exists() {
        panic!(
            "{} is missing: the application client (redis-py) lives in a venv that `make deps` \
             (hack/install-deps.sh) creates",
            python.display()
        );
    }
    python
}

/// Tuning of an [`AppClient`]; [`AppClient::start`] uses the defaults.
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// Operations per second (each key visit is a GET and a SET).
    pub rate: u32,
    /// Keys cycled over: a key is read back `keys / (rate / 2)` seconds after it was written.
    pub keys: u32,
    /// redis-py's socket (connect and read) timeout; `None` keeps redis-py's default (no
    /// timeout at all, so a black-holed node would block the client forever).
    pub socket_timeout: Option<Duration>,
    /// TLS (`ssl=True`): the CA file the members' certificates are verified against, and the
    /// client certificate and key presented (for `clientAuth`), as PEM files.
    pub tls: Option<AppTls>,
}

/// PEM files for redis-py's TLS settings.
#[derive(Clone, Debug)]
pub struct AppTls {
    pub ca: PathBuf,
    pub cert: Option<(PathBuf, PathBuf)>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            rate: 200,
            keys: 2000,
            socket_timeout: Some(Duration::from_secs(5)),
            tls: None,
        }
    }
}

/// What the application saw (the JSON the script writes; see its `Report.finish`). Times are
/// seconds since the client started.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct AppReport {
    pub redis_py: String,
    /// Wall clock (Unix seconds) of the client's time 0, shortly (~0.1 s) after the spawn.
    pub started_unix_s: f64,
    pub duration_s: f64,
    /// `duration`, `sigterm`, `max_ops`, `alarm` (its hard limit) or `startup_failed`.
    pub stopped_by: Option<String>,
    pub startup_s: Option<f64>,
    pub startup_attempts: u64,
    pub startup_failed: bool,
    /// Operations attempted and succeeded.
    pub ops: u64,
    pub ok: u64,
    pub sets_ok: u64,
    pub gets_ok: u64,
    /// Exceptions by class name (`ConnectionError`, `ClusterDownError`, `TimeoutError`, ...).
    pub errors: BTreeMap<String, u64>,
    /// The first few, as `<at>s <op> <key>: <class>: <message>`.
    pub error_samples: Vec<String>,
    pub first_error_at_s: Option<f64>,
    pub last_error_at_s: Option<f64>,
    /// The longest gap between two consecutive successful operations (startup and a gap still
    /// open at the end included), and when it began.
    pub longest_stall_s: f64,
    pub longest_stall_at_s: f64,
    pub stall_open_at_end: bool,
    /// `[began at, length]` of every stall over 1 s (at most 200).
    pub stalls_over_1s: Vec<(f64, f64)>,
    /// The longest time one slot range (1024 slots) went from its last success, through
    /// failures, to its next success: what one shard's keys suffered while the others served.
    pub longest_outage_s: f64,
    pub longest_outage_at_s: f64,
    pub longest_outage_slots: Option<String>,
    /// `[began at, length, slots]` of every slot-range outage over 1 s (at most 200).
    pub outages_over_1s: Vec<(f64, f64, String)>,
    /// Slot ranges whose last operation failed: where the application had not recovered.
    pub failing_slots_at_end: Vec<String>,
    /// The operation cut short by SIGTERM while blocked, with how long it had been blocked.
    pub interrupted_op: Option<String>,
    /// GETs that returned neither the last acknowledged value nor one of the SETs that failed
    /// since (async replication can lose acknowledged writes in a failover); `lost_reads` of them
    /// returned nothing.
    pub wrong_reads: u64,
    pub lost_reads: u64,
    pub wrong_read_samples: Vec<String>,
}

impl AppReport {
    /// Total exceptions of every class.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// One line for logs and README tables.
    pub fn summary(&self) -> String {
        let mut errors = String::new();
        for (class, n) in &self.errors {
            let sep = if errors.is_empty() { "" } else { ", " };
            let _ = write!(errors, "{sep}{class} {n}");
        }
        if errors.is_empty() {
            errors.push_str("none");
        }
        let open = if self.stall_open_at_end {
            " (still open at the end)"
        } else {
            ""
        };
        let mut tail = String::new();
        if !self.failing_slots_at_end.is_empty() {
            let _ = write!(
                tail,
                "; still failing at the end: {}",
                self.failing_slots_at_end.join(" ")
            );
        }
        if let Some(op) = &self.interrupted_op {
            let _ = write!(tail, "; interrupted: {op}");
        }
        format!(
            "redis-py {}: {}/{} ops ok in {:.1} s; errors: {errors}; longest stall {:.2} s at \
             {:.1} s{open}, {} stalls > 1 s; longest slot-range outage {:.2} s at {:.1} s ({}); \
             {} wrong reads ({} lost){tail}",
            self.redis_py,
            self.ok,
            self.ops,
            self.duration_s,
            self.longest_stall_s,
            self.longest_stall_at_s,
            self.stalls_over_1s.len(),
            self.longest_outage_s,
            self.longest_outage_at_s,
            self.longest_outage_slots.as_deref().unwrap_or("-"),
            self.wrong_reads,
            self.lost_reads,
        )
    }
}

/// A running application client; killed (without a report) if dropped without [`Self::stop`].
pub struct AppClient {
    child: Option<Child>,
    dir: PathBuf,
    started: Instant,
}

impl AppClient {
    /// Starts the client against `seeds` for at most `duration` (it stops by itself then), with
    /// keys `<prefix>:<i>`; `password` empty means no AUTH.
    pub fn start(seeds: &[SocketAddr], password: &str, duration: Duration, prefix: &str) -> Self {
        Self::start_with(seeds, password, duration, prefix, &AppOptions::default())
    }

    /// [`Self::start`] with other [`AppOptions`].
    pub fn start_with(
        seeds: &[SocketAddr],
        password: &str,
        duration: Duration,
        prefix: &str,
        options: &AppOptions,
    ) -> Self {
        assert!(!seeds.is_empty(), "the app client needs a seed");
        let python = app_python();
        let dir = private_dir(prefix);
        let password_file = dir.join("password");
        write_private(&password_file, password);
        let seeds: Vec<String> = seeds.iter().map(SocketAddr::to_string).collect();
        let timeout = options.socket_timeout.map_or(0.0, |t| t.as_secs_f64());
        let log = std::fs::File::create(dir.join("client.log")).expect("create app client log");
        let mut command = Command::new(python);
        if let Some(tls) = &options.tls {
            command.arg(APP_CLIENT_SCRIPT).arg("--tls-ca").arg(&tls.ca);
            if let Some((cert, key)) = &tls.cert {
                command
                    .arg("--tls-cert")
                    .arg(cert)
                    .arg("--tls-key")
                    .arg(key);
            }
        } else {
            command.arg(APP_CLIENT_SCRIPT);
        }
        let child = command
            .arg("--seeds")
            .arg(seeds.join(","))
            .arg("--password-file")
            .arg(&password_file)
            .arg("--duration")
            .arg(format!("{:.3}", duration.as_secs_f64()))
            .arg("--report")
            .arg(dir.join("report.json"))
            .arg("--key-prefix")
            .arg(prefix)
            .arg("--rate")
            .arg(options.rate.to_string())
            .arg("--keys")
            .arg(options.keys.to_string())
            .arg("--socket-timeout")
            .arg(format!("{timeout:.3}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn the app client (python)");
        Self {
            child: Some(child),
            dir,
            started: Instant::now(),
        }
    }

    /// Time since the client was started (the report's times are relative to about this).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the client (SIGTERM; SIGKILL after [`STOP_LIMIT`]) and returns its report. Blocks
    /// the calling thread for at most that long. Panics, with the client's log, when no report
    /// was written.
    #[allow(clippy::panic)]
    pub fn stop(mut self) -> AppReport {
        let Some(mut child) = self.child.take() else {
            panic!("app client already stopped");
        };
        if matches!(child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        let deadline = Instant::now() + STOP_LIMIT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let report = std::fs::read_to_string(self.dir.join("report.json"));
        let log = std::fs::read_to_string(self.dir.join("client.log")).unwrap_or_default();
        let text = report.unwrap_or_else(|e| {
            panic!("app client wrote no report ({e}; exit {status:?}); its log:\n{log}")
        });
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("app client report does not parse ({e}):\n{text}\nits log:\n{log}")
        })
    }
}

impl Drop for AppClient {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh directory (mode 0700) for one client's password, report and log.
fn private_dir(prefix: &str) -> PathBuf {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let safe: String = prefix
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let dir = std::env::temp_dir().join(format!(
        "redis-op-app-{safe}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&dir)
        .expect("create app client dir");
    dir
}

fn write_private(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("create password file");
    f.write_all(text.as_bytes()).expect("write password file");
}
