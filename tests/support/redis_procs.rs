//! Starts and stops real `redis-server` processes (Debian's 7.0.15) on loopback for tests and
//! the reshard benchmark. Every node gets its own port and data directory; everything is
//! killed and removed on drop.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis_operator::redis::command::Cmd;
use redis_operator::redis::{AdminOptions, Client};

/// The server binary.
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// Whether `port` (client) and `port + 10000` (cluster bus) can both be bound on loopback.
fn ports_free(port: u16) -> bool {
    let Some(bus) = port.checked_add(10000) else {
        return false;
    };
    TcpListener::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("127.0.0.1", bus)).is_ok()
}

/// Picks `count` ports at or above `base` (in 20000–29999) whose bus ports are free too.
pub fn pick_ports(base: u16, count: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(count);
    let mut port = base;
    while out.len() < count {
        assert!(port < 30000, "ran out of test ports above {base}");
        if ports_free(port) {
            out.push(port);
        }
        port += 1;
    }
    out
}

/// One redis-server process.
pub struct RedisProc {
    /// Client port.
    pub port: u16,
    /// Its data directory (nodes.conf, log).
    pub dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    /// A redis.conf the process starts from; then only its port, bind address, log and
    /// foreground mode are given on the command line, and the file holds the rest.
    conf: Option<PathBuf>,
}

impl RedisProc {
    /// Client address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A process that runs from the redis.conf at `conf` (its data directory, cluster and
    /// persistence settings are the file's), not started yet: see [`RedisProc::start`].
    pub fn from_conf(port: u16, dir: PathBuf, conf: PathBuf) -> Self {
        Self {
            port,
            dir,
            args: Vec::new(),
            child: None,
            conf: Some(conf),
        }
    }

    /// Starts the process if it is not running, and waits until it answers PING (after its
    /// dataset is loaded).
    pub async fn start(&mut self, limit: Duration) {
        if self.child.is_none() {
            self.spawn(&[]);
        }
        wait_ready(self.addr(), &AdminOptions::default(), limit).await;
    }

    /// Stops the process gracefully with SIGTERM (Redis's shutdown: the AOF is flushed and,
    /// with save points, the final RDB written) and waits until it exits; SIGKILL after
    /// `limit`.
    pub fn terminate(&mut self, limit: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let started = Instant::now();
        let stopped = loop {
            if let Ok(Some(_)) = child.try_wait() {
                break true;
            }
            if started.elapsed() >= limit {
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !stopped {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(
            stopped,
            "redis-server on port {} did not stop within {limit:?}",
            self.port
        );
    }

    fn spawn(&mut self, extra: &[String]) {
        let log = self.dir.join("redis.log");
        let mut cmd = Command::new(REDIS_SERVER);
        if let Some(conf) = &self.conf {
            cmd.arg(conf)
                .arg("--port")
                .arg(self.port.to_string())
                .arg("--bind")
                .arg("127.0.0.1")
                .arg("--logfile")
                .arg(&log)
                .arg("--daemonize")
                .arg("no")
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            self.child = Some(cmd.spawn().expect("spawn redis-server"));
            return;
        }
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .arg("--daemonize")
            .arg("no")
            .arg("--cluster-enabled")
            .arg("yes")
            .arg("--cluster-config-file")
            .arg("nodes.conf")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .args(&self.args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn().expect("spawn redis-server"));
    }

    /// Kills the process with SIGKILL (no shutdown, no save).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process still dies from SIGKILL; SIGCONT first only keeps the kernel
            // from holding its sockets a little longer.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port and directory (nodes.conf kept), with
    /// `extra` arguments added for this run only.
    pub async fn restart(&mut self, extra: &[&str]) {
        self.kill();
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        self.spawn(&extra);
        wait_ready(
            self.addr(),
            &AdminOptions::default(),
            Duration::from_secs(10),
        )
        .await;
    }

    /// Freezes the process with SIGSTOP: connections are accepted by the kernel but nothing
    /// answers, like a hung node or a black-holed pod IP.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes a paused process (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg(sig)
                .arg(child.id().to_string())
                .status()
                .expect("run kill");
            assert!(status.success(), "kill {sig} failed");
        }
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Last lines of the log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A set of redis-server processes in one temp directory.
pub struct RedisProcs {
    /// The processes, in port order.
    pub nodes: Vec<RedisProc>,
    root: PathBuf,
}

impl RedisProcs {
    /// Starts `count` cluster-enabled nodes on ports from `base`, each with `args` (e.g.
    /// `["--cluster-node-timeout", "2000"]`), and waits until each answers PING.
    pub async fn start(
        name: &str,
        base: u16,
        count: usize,
        args: &[&str],
        ready: &AdminOptions,
    ) -> Self {
        let root =
            std::env::temp_dir().join(format!("redis-op-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create test dir");
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let mut nodes = Vec::new();
        for port in pick_ports(base, count) {
            let dir = root.join(port.to_string());
            std::fs::create_dir_all(&dir).expect("create node dir");
            let mut node = RedisProc {
                port,
                dir,
                args: args.clone(),
                child: None,
                conf: None,
            };
            node.spawn(&[]);
            nodes.push(node);
        }
        for node in &nodes {
            wait_ready(node.addr(), ready, Duration::from_secs(10)).await;
        }
        Self { nodes, root }
    }

    /// Client addresses of all nodes.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(RedisProc::addr).collect()
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for RedisProcs {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Waits until the node answers PING (or NOAUTH, which also proves it is up).
pub async fn wait_ready(addr: SocketAddr, options: &AdminOptions, limit: Duration) {
    let started = Instant::now();
    loop {
        if let Ok(mut client) = Client::connect(addr, options).await {
            match client.call(&Cmd::ping()).await {
                Ok(_) | Err(redis_operator::redis::RedisError::NoAuth(_)) => return,
                Err(_) => {}
            }
        }
        assert!(
            started.elapsed() < limit,
            "redis-server at {addr} did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
