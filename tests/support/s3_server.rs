//! A real S3 server for tests: versitygw (built by hack/install-deps.sh) with its posix backend,
//! one process per test on a free loopback port with its own data directory, killed and
//! removed on drop. Independent of `hack/s3 up` and of any other test's server.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis_operator::backup::store::{S3Credentials, S3Location};

pub const ACCESS_KEY: &str = "redis-operator-test";
pub const SECRET_KEY: &str = "test-secret-key-0123456789abcdef";
pub const BUCKET: &str = "backups";
pub const REGION: &str = "us-east-1";

/// The binary, as hack/install-deps.sh installs it (VERSITYGW overrides).
pub fn versitygw_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("VERSITYGW") {
        return PathBuf::from(bin);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME");
    cache.join("redis-operator/versitygw/bin/versitygw")
}

pub struct S3Server {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    /// HTTPS with a certificate for 127.0.0.1 from its own CA (`ca.crt` in `dir`).
    pub tls: bool,
    child: Option<Child>,
}

/// Runs `openssl ARGS` in `dir`; a failure fails the test with openssl's output.
fn openssl(dir: &std::path::Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split(' '))
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl {args}: {out:?}");
}

/// A CA (`ca.crt`) and a server certificate for 127.0.0.1 it signed (`tls.crt`, `tls.key`).
fn server_pki(dir: &std::path::Path) {
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write san.ext");
    openssl(
        dir,
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=s3-test-ca",
    );
    openssl(
        dir,
        "req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout tls.key -out tls.csr -subj /CN=127.0.0.1",
    );
    openssl(
        dir,
        "x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out tls.crt -days 2 -extfile san.ext",
    );
}

impl S3Server {
    /// Starts a server whose bucket [`BUCKET`] exists, and waits until it accepts connections.
    pub fn start(name: &str) -> S3Server {
        Self::start_with(name, false)
    }

    /// [`S3Server::start`] over HTTPS, its certificate signed by a CA of its own.
    pub fn start_tls(name: &str) -> S3Server {
        Self::start_with(name, true)
    }

    fn start_with(name: &str, tls: bool) -> S3Server {
        let bin = versitygw_bin();
        assert!(
            bin.exists(),
            "versitygw is missing at {}: run hack/install-deps.sh",
            bin.display()
        );
        let dir = std::env::temp_dir().join(format!("redis-op-s3-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // The posix backend's buckets are the data directory's subdirectories.
        std::fs::create_dir_all(dir.join("data").join(BUCKET)).expect("create s3 data dir");
        let addr = free_loopback_addr();
        let log = std::fs::File::create(dir.join("versitygw.log")).expect("create s3 log");
        let mut cmd = Command::new(&bin);
        if tls {
            server_pki(&dir);
            cmd.arg("--cert")
                .arg(dir.join("tls.crt"))
                .arg("--key")
                .arg(dir.join("tls.key"));
        }
        let child = cmd
            .arg("--port")
            .arg(addr.to_string())
            .args(["--access", ACCESS_KEY, "--secret", SECRET_KEY])
            .args(["--region", REGION, "--quiet", "posix"])
            .arg(dir.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn versitygw");
        let server = S3Server {
            addr,
            dir,
            tls,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "versitygw did not listen on {addr} within 10 s: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The CA that signed an HTTPS server's certificate.
    pub fn ca_pem(&self) -> Option<Vec<u8>> {
        self.tls
            .then(|| std::fs::read(self.dir.join("ca.crt")).expect("read ca.crt"))
    }

    pub fn location(&self, prefix: &str) -> S3Location {
        S3Location {
            endpoint: Some(self.endpoint()),
            bucket: BUCKET.to_string(),
            prefix: prefix.to_string(),
            region: REGION.to_string(),
            ca_pem: self.ca_pem(),
        }
    }

    pub fn credentials() -> S3Credentials {
        S3Credentials {
            access_key_id: ACCESS_KEY.to_string(),
            secret_access_key: SECRET_KEY.to_string(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGSTOP / SIGCONT: the server keeps its socket (connections are accepted by the kernel)
    /// and answers nothing, as `hack/s3 pause` does.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig}");
    }

    /// Kills the server: connections are refused from here on.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("versitygw.log")).unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = Command::new("kill")
                .args(["-CONT", &self.pid().to_string()])
                .status();
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port nothing listens on (the kernel's pick; free again once the listener drops).
fn free_loopback_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr")
}
