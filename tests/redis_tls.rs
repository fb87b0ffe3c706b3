//! The admin client over TLS against real redis-server 7.0.15 processes (Debian's build has
//! TLS) on loopback: PING, AUTH and `observe_node` over TLS; a wrong CA, a wrong name, a
//! plaintext client on the TLS port and a TLS client on a plaintext port all fail within the
//! connect timeout; with `tls-auth-clients yes` only a client certificate from the right CA
//! gets in; the acknowledged-write checker (`support/ack_writer.rs`) writes and reads back over
//! TLS. Certificates are made at test time with the `openssl` CLI (EC P-256, one day).

mod support {
    pub mod ack_writer;
}

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis_operator::redis::command::Cmd;
use redis_operator::redis::tls::is_handshake_failure;
use redis_operator::redis::{
    AdminOptions, Auth, Client, RedisError, Timeouts, TlsError, TlsOptions, observe_node,
};
use redis_protocol::resp2::types::BytesFrame;
use support::ack_writer::{AckWriter, AckWriterOptions, ReadBackOptions};

const PASSWORD: &str = "x";
const CONNECT: Duration = Duration::from_millis(1500);
/// The DNS SAN every test server certificate carries (with `*.` of it).
const SERVICE: &str = "redis-members.test.svc";

/// Ports 23400–23499 are reserved for this file; the counter keeps parallel tests apart.
static NEXT_PORT: AtomicU16 = AtomicU16::new(23400);

fn free_port() -> u16 {
    loop {
        let port = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        assert!(port < 23500, "ran out of test ports");
        let bus = port + 10000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", bus)).is_ok()
        {
            return port;
        }
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("redis-op-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    dir
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate (IP 127.0.0.1, `SERVICE`, `*.SERVICE`) and a client certificate
/// from it, and a second CA with a client certificate of its own.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir = temp_dir(name);
        for ca in ["ca", "other-ca"] {
            openssl(
                &dir,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "1",
                    "-subj",
                    &format!("/CN={ca}"),
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.crt"),
                ],
            );
        }
        let server_ext = format!(
            "subjectAltName=IP:127.0.0.1,DNS:{SERVICE},DNS:*.{SERVICE}\n\
             extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n"
        );
        let client_ext = "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n";
        std::fs::write(dir.join("server.ext"), server_ext).expect("write ext");
        std::fs::write(dir.join("client.ext"), client_ext).expect("write ext");
        for (leaf, ca, ext) in [
            ("server", "ca", "server.ext"),
            ("client", "ca", "client.ext"),
            ("other-client", "other-ca", "client.ext"),
        ] {
            openssl(
                &dir,
                &[
                    "req",
                    "-new",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-subj",
                    &format!("/CN={leaf}"),
                    "-keyout",
                    &format!("{leaf}.key"),
                    "-out",
                    &format!("{leaf}.csr"),
                ],
            );
            openssl(
                &dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{leaf}.csr"),
                    "-CA",
                    &format!("{ca}.crt"),
                    "-CAkey",
                    &format!("{ca}.key"),
                    "-CAcreateserial",
                    "-days",
                    "1",
                    "-extfile",
                    ext,
                    "-out",
                    &format!("{leaf}.crt"),
                ],
            );
        }
        Self { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(file)).expect("read PEM")
    }

    /// TLS options trusting `ca`, presenting `client` (`client.crt`/`client.key`) if given.
    fn tls(&self, ca: &str, client: Option<&str>) -> TlsOptions {
        let (chain, key) = match client {
            Some(name) => (
                self.read(&format!("{name}.crt")),
                self.read(&format!("{name}.key")),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let pair = client.map(|_| (chain.as_slice(), key.as_slice()));
        TlsOptions::from_pem(&self.read(&format!("{ca}.crt")), pair).expect("TLS options")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn options(tls: Option<TlsOptions>, auth: bool) -> AdminOptions {
    AdminOptions {
        auth: auth.then(|| Auth {
            username: None,
            password: PASSWORD.to_owned(),
        }),
        timeouts: Timeouts {
            connect: CONNECT,
            command: Duration::from_secs(2),
            ..Timeouts::default()
        },
        tls: tls.map(Arc::new),
    }
}

/// A cluster-enabled redis-server with a TLS port (and, if asked, a plaintext port too).
struct TlsServer {
    tls_addr: SocketAddr,
    plain_addr: Option<SocketAddr>,
    child: Child,
    dir: PathBuf,
}

impl TlsServer {
    async fn start(pki: &Pki, auth_clients: bool, plain_port: bool) -> Self {
        let tls_port = free_port();
        let plain = plain_port.then(free_port);
        let dir = pki.dir.join(format!("node-{tls_port}"));
        std::fs::create_dir_all(&dir).expect("create node dir");
        let mut cmd = Command::new("/usr/bin/redis-server");
        cmd.args(["--port", &plain.unwrap_or(0).to_string()])
            .args(["--tls-port", &tls_port.to_string(), "--bind", "127.0.0.1"])
            .args(["--tls-cert-file", &pki.path("server.crt")])
            .args(["--tls-key-file", &pki.path("server.key")])
            .args(["--tls-ca-cert-file", &pki.path("ca.crt")])
            .args([
                "--tls-auth-clients",
                if auth_clients { "yes" } else { "no" },
            ])
            .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args([
                "--requirepass",
                PASSWORD,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("spawn redis-server");
        let server = Self {
            tls_addr: SocketAddr::from(([127, 0, 0, 1], tls_port)),
            plain_addr: plain.map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
            child,
            dir,
        };
        let client = auth_clients.then_some("client");
        server
            .wait_ready(&options(Some(pki.tls("ca", client)), true))
            .await;
        server
    }

    async fn wait_ready(&self, ready: &AdminOptions) {
        let started = Instant::now();
        loop {
            if let Ok(mut client) = Client::connect(self.tls_addr, ready).await
                && client.call(&Cmd::ping()).await.is_ok()
            {
                return;
            }
            let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server with TLS on {} did not start:\n{log}",
                self.tls_addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn ping(addr: SocketAddr, options: &AdminOptions) -> Result<BytesFrame, RedisError> {
    let mut client = Client::connect(addr, options).await?;
    client.call(&Cmd::ping()).await
}

/// Runs `attempt`, asserting it fails and does so within the connect timeout (plus slack for
/// the AUTH that follows the handshake, which has the same limit again).
async fn fails_quickly(
    what: &str,
    attempt: impl Future<Output = Result<BytesFrame, RedisError>>,
) -> RedisError {
    let started = Instant::now();
    let result = attempt.await;
    let took = started.elapsed();
    assert!(
        took < CONNECT * 2 + Duration::from_millis(500),
        "{what} took {took:?}"
    );
    result.expect_err(what)
}

#[tokio::test]
async fn ping_auth_and_observe_node_over_tls() {
    let pki = Pki::new("basic");
    let server = TlsServer::start(&pki, false, false).await;
    let addr = server.tls_addr;

    let with_auth = options(Some(pki.tls("ca", None)), true);
    let reply = ping(addr, &with_auth).await.expect("PING over TLS");
    assert_eq!(reply, BytesFrame::SimpleString(Bytes::from_static(b"PONG")));

    // AUTH really happens over TLS: without it the node refuses, with a wrong one too.
    let without_auth = options(Some(pki.tls("ca", None)), false);
    let err = ping(addr, &without_auth)
        .await
        .expect_err("PING without AUTH");
    assert!(matches!(err, RedisError::NoAuth(_)), "{err}");
    let mut wrong = with_auth.clone();
    wrong.auth = Some(Auth {
        username: None,
        password: "wrong".to_owned(),
    });
    let err = Client::connect(addr, &wrong)
        .await
        .expect_err("wrong password");
    assert!(matches!(err, RedisError::AuthRefused { .. }), "{err}");

    // A pipeline and a reply spanning many TLS records go through the same framing over TLS
    // (ECHO: no key, so the node's unassigned slots do not matter).
    let mut client = Client::connect(addr, &with_auth).await.expect("connect");
    let value = "v".repeat(200_000);
    let replies = client
        .pipeline(&[Cmd::new("ECHO").arg(value.as_str()), Cmd::ping()])
        .await
        .expect("pipeline");
    match replies.as_slice() {
        [Ok(BytesFrame::BulkString(got)), Ok(_)] => assert_eq!(got.len(), value.len()),
        other => panic!("unexpected pipeline replies: {other:?}"),
    }

    let observation = observe_node(addr, &with_auth)
        .await
        .expect("observe_node over TLS");
    assert_eq!(observation.addr, addr);
    assert_eq!(observation.keys, Some(0));
    assert!(observation.peers.is_empty());
}

#[tokio::test]
async fn server_name_and_ca_are_verified() {
    let pki = Pki::new("names");
    let server = TlsServer::start(&pki, false, false).await;
    let addr = server.tls_addr;

    // The expected DNS name: the Service name and a name the wildcard SAN covers both pass.
    for name in [SERVICE, &format!("redis-0.{SERVICE}")] {
        let tls = pki
            .tls("ca", None)
            .with_server_name(name)
            .expect("DNS name");
        ping(addr, &options(Some(tls), true))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    let tls = pki
        .tls("ca", None)
        .with_server_name("other.test.svc")
        .expect("DNS name");
    let err = fails_quickly("wrong name", ping(addr, &options(Some(tls), true))).await;
    assert!(is_handshake_failure(&err), "{err}");
    assert!(err.to_string().contains("not valid for name"), "{err}");

    let err = fails_quickly(
        "wrong CA",
        ping(addr, &options(Some(pki.tls("other-ca", None)), true)),
    )
    .await;
    assert!(is_handshake_failure(&err), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("TLS handshake failed") && text.contains("UnknownIssuer"),
        "{text}"
    );
}

#[tokio::test]
async fn plaintext_and_tls_on_the_wrong_port_fail_within_the_timeout() {
    let pki = Pki::new("mixed");
    let server = TlsServer::start(&pki, false, true).await;
    let plain_addr = server.plain_addr.expect("plaintext port");

    // The plaintext port works for a plaintext client (so the failures below are about TLS).
    ping(plain_addr, &options(None, true))
        .await
        .expect("plaintext PING");

    let err = fails_quickly(
        "plaintext on the TLS port",
        ping(server.tls_addr, &options(None, true)),
    )
    .await;
    assert!(
        matches!(
            err,
            RedisError::Closed { .. } | RedisError::Io { .. } | RedisError::Timeout { .. }
        ),
        "{err}"
    );

    let tls = options(Some(pki.tls("ca", None)), true);
    // Redis reads the ClientHello as the start of an inline command and waits for its end, so
    // this is normally the connect timeout; a reply it sent would fail the handshake instead.
    let err = fails_quickly("TLS on the plaintext port", ping(plain_addr, &tls)).await;
    assert!(
        is_handshake_failure(&err) || matches!(err, RedisError::ConnectTimeout { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn client_certificates_when_the_server_requires_them() {
    let pki = Pki::new("mtls");
    let server = TlsServer::start(&pki, true, false).await;
    let addr = server.tls_addr;

    let good = options(Some(pki.tls("ca", Some("client"))), true);
    ping(addr, &good)
        .await
        .expect("PING with a client certificate");
    observe_node(addr, &good)
        .await
        .expect("observe_node with a client certificate");

    // TLS 1.3: the server judges the certificate (or its absence) after the client's side of
    // the handshake is done, so its alert arrives with the AUTH inside connect, as an I/O
    // error naming the alert (CertificateRequired, UnknownCA).
    for (what, client, alert) in [
        ("no client certificate", None, "CertificateRequired"),
        ("another CA's", Some("other-client"), "UnknownCA"),
    ] {
        let err = fails_quickly(
            what,
            ping(addr, &options(Some(pki.tls("ca", client)), true)),
        )
        .await;
        let text = err.to_string();
        assert!(
            matches!(err, RedisError::Io { .. }) && text.contains("received fatal alert"),
            "{what}: {text}"
        );
        assert!(text.contains(alert), "{what}: {text}");
    }
}

#[test]
fn from_pem_errors_with_real_material() {
    let pki = Pki::new("pem");
    let ca = pki.read("ca.crt");
    let (chain, key) = (pki.read("client.crt"), pki.read("client.key"));
    let other_key = pki.read("other-client.key");

    let err = TlsOptions::from_pem(&key, None).expect_err("a key is no CA");
    assert!(matches!(err, TlsError::NoCaCertificate), "{err}");
    let err = TlsOptions::from_pem(&ca, Some((&chain, &other_key))).expect_err("wrong key");
    assert!(matches!(err, TlsError::ClientKey(_)), "{err}");
    let err = TlsOptions::from_pem(&ca, Some((&chain, &chain))).expect_err("no key");
    assert!(matches!(err, TlsError::NoClientKey), "{err}");
    let err = TlsOptions::from_pem(&ca, Some((&key, &key))).expect_err("no certificate");
    assert!(matches!(err, TlsError::NoClientCertificate), "{err}");

    // A bundle of CAs is accepted; a key in the same file is skipped.
    let mut bundle = ca.clone();
    bundle.extend_from_slice(&pki.read("other-ca.crt"));
    bundle.extend_from_slice(&key);
    TlsOptions::from_pem(&bundle, None).expect("CA bundle");

    // Equality is by content, and Debug shows no key material.
    let a = TlsOptions::from_pem(&ca, Some((&chain, &key))).expect("options");
    let b = TlsOptions::from_pem(&ca, Some((&chain, &key))).expect("options");
    assert_eq!(a, b);
    assert!(a.presents_client_cert());
    let named = b.with_server_name(SERVICE).expect("name");
    assert_ne!(a, named);
    let debug = format!("{a:?}");
    assert!(
        !debug.contains("PRIVATE") && debug.contains("client_cert: true"),
        "{debug}"
    );
}

/// Certificate rotation as the operator does it (`plan::certs`): the files change in place, the
/// server keeps presenting the certificate it loaded until `CONFIG SET tls-cert-file …` with the
/// same paths, then presents the new one; `TlsOptions::peer_certificate` sees both, and a client
/// trusting only the new CA gets in afterwards.
#[tokio::test]
async fn config_set_of_the_same_paths_reloads_the_certificate() {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;

    let pki = Pki::new("reload");
    let server = TlsServer::start(&pki, false, false).await;
    let old_ca = pki.read("ca.crt");
    let by_old_ca = pki.tls("ca", None).with_server_name(SERVICE).expect("name");
    let presented =
        |tls: TlsOptions| async move { tls.peer_certificate(server.tls_addr, CONNECT).await };
    let first = presented(by_old_ca.clone()).await.expect("handshake");
    let cert = |file: &str| CertificateDer::from_pem_file(pki.path(file)).expect("PEM");
    assert_eq!(first, cert("server.crt"));

    // The next certificate, from the other CA, same names.
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let run = |line: String| openssl(&pki.dir, &line.split(' ').collect::<Vec<_>>());
    run(format!(
        "req -new {ec} -subj /CN=next -keyout next.key -out next.csr"
    ));
    run(
        "x509 -req -in next.csr -CA other-ca.crt -CAkey other-ca.key -CAcreateserial -days 1 \
         -extfile server.ext -out next.crt"
            .into(),
    );
    // In place, each file swapped atomically (as the kubelet's `..data` link is): the new
    // certificate and key, and both CAs.
    let swap = |file: &str, bytes: Vec<u8>| {
        let tmp = pki.dir.join(format!("{file}.tmp"));
        std::fs::write(&tmp, bytes).expect("write");
        std::fs::rename(&tmp, pki.dir.join(file)).expect("rename");
    };
    let next = cert("next.crt");
    swap("server.crt", pki.read("next.crt"));
    swap("server.key", pki.read("next.key"));
    swap(
        "ca.crt",
        [old_ca.clone(), pki.read("other-ca.crt")].concat(),
    );
    // Files alone change nothing: the process serves what it loaded.
    assert_eq!(
        presented(by_old_ca.clone()).await.expect("handshake"),
        first
    );
    let by_new_ca = pki
        .tls("other-ca", None)
        .with_server_name(SERVICE)
        .expect("name");
    let refused = presented(by_new_ca.clone())
        .await
        .expect_err("old CA's certificate");
    assert!(is_handshake_failure(&refused), "{refused}");

    let mut admin = Client::connect(server.tls_addr, &options(Some(by_old_ca), true))
        .await
        .expect("connect");
    let reload = Cmd::new("CONFIG")
        .arg("SET")
        .arg("tls-cert-file")
        .arg(pki.path("server.crt"))
        .arg("tls-key-file")
        .arg(pki.path("server.key"))
        .arg("tls-ca-cert-file")
        .arg(pki.path("ca.crt"));
    admin.call(&reload).await.expect("CONFIG SET");
    assert_eq!(presented(by_new_ca.clone()).await.expect("handshake"), next);
    // The connection open across the reload keeps working; a new one trusting only the new CA
    // gets in.
    admin.call(&Cmd::ping()).await.expect("open connection");
    assert!(
        ping(server.tls_addr, &options(Some(by_new_ca), true))
            .await
            .is_ok()
    );
}

/// With `tls` set, the checker's writers, topology refresher and read-back all speak TLS (the
/// node has no plaintext port; it asks for the client certificate); without, it cannot start.
#[tokio::test]
async fn ack_writer_writes_and_reads_back_over_tls() {
    let pki = Pki::new("ack");
    let server = TlsServer::start(&pki, true, false).await;
    let tls = pki.tls("ca", Some("client")).with_server_name(SERVICE);
    let tls = Arc::new(tls.expect("server name"));
    let admin = options(Some(TlsOptions::clone(&tls)), true);
    let mut node = Client::connect(server.tls_addr, &admin)
        .await
        .expect("connect");
    // Alone, a node knows no IP of its own to announce; then it serves every slot.
    let announce = Cmd::new("CONFIG").arg("SET").arg("cluster-announce-ip");
    let all_slots = Cmd::new("CLUSTER")
        .arg("ADDSLOTSRANGE")
        .arg("0")
        .arg("16383");
    for cmd in [announce.arg("127.0.0.1"), all_slots] {
        node.call(&cmd).await.expect("set up the node");
    }
    let opts = AckWriterOptions {
        replicas: 0,
        start_timeout: Duration::from_secs(5),
        ..AckWriterOptions::default()
    };
    let seeds = vec![server.tls_addr];
    let plain = AckWriter::start(seeds.clone(), PASSWORD.into(), opts.clone()).await;
    assert!(plain.is_err(), "a plaintext writer started");
    let opts = AckWriterOptions {
        tls: Some(tls),
        ..opts
    };
    let writer = AckWriter::start(seeds, PASSWORD.into(), opts).await;
    let writer = writer.expect("the writer starts over TLS");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut report = writer.stop().await;
    report
        .read_back(&[], PASSWORD, &ReadBackOptions::default())
        .await;
    assert_eq!(report.verify(), Ok(()));
    assert!(report.acknowledged() > 20, "{report}");
}
