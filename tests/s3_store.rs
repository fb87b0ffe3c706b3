//! The backup object store (src/backup/store.rs) against a real S3 server, versitygw, one per
//! test (tests/support/s3_server.rs), and against a local directory.

#[path = "support/s3_server.rs"]
mod s3_server;

use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{RngCore, SeedableRng};
use redis_operator::backup::store::{
    S3Credentials, Store, StoreErrorKind, StoreTimeouts, backup_path,
};
use ring::digest::{Context, SHA256};
use s3_server::S3Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn s3_store(server: &S3Server, prefix: &str) -> Store {
    Store::s3(
        &server.location(prefix),
        &S3Server::credentials(),
        StoreTimeouts::default(),
    )
    .expect("s3 store")
}

/// Timeouts short enough that a test of an unreachable server stays short.
fn short_timeouts() -> StoreTimeouts {
    StoreTimeouts {
        connect: Duration::from_secs(1),
        request: Duration::from_secs(2),
    }
}

#[tokio::test]
async fn put_get_round_trip() {
    let server = S3Server::start("roundtrip");
    let store = s3_store(&server, "team");
    store
        .put("manifest.json", Bytes::from_static(b"{\"shards\":3}"))
        .await
        .expect("put");
    let got = store.get("manifest.json").await.expect("get");
    assert_eq!(&got[..], b"{\"shards\":3}");
    assert_eq!(store.size("manifest.json").await.expect("size"), Some(12));
    // Path-style under the configured prefix: the posix backend shows it as a file.
    assert!(server.dir.join("data/backups/team/manifest.json").exists());
}

/// 40 MiB through the streaming writer (five 8 MiB parts, a multipart upload), invisible until
/// finish, then streamed back with the same SHA-256.
#[tokio::test]
async fn streaming_multipart_upload_and_download() {
    let server = S3Server::start("multipart");
    let store = s3_store(&server, "").child(&backup_path("demo", "nightly", "0123456789abcdef"));
    let mut writer = store.writer("shard-0.rdb");
    let mut rng = rand::rngs::StdRng::seed_from_u64(22);
    let mut sent = Context::new(&SHA256);
    let mut chunk = vec![0u8; 1024 * 1024 + 7];
    let total = 40 * 1024 * 1024;
    let mut written = 0;
    while written < total {
        let n = chunk.len().min(total - written);
        rng.fill_bytes(&mut chunk[..n]);
        sent.update(&chunk[..n]);
        if let Err(e) = writer.write_all(&chunk[..n]).await {
            panic!("write: {}", writer.io_error(&e));
        }
        written += n;
    }
    assert_eq!(store.size("shard-0.rdb").await.expect("size"), None);
    writer.finish().await.expect("finish");
    assert_eq!(
        store.size("shard-0.rdb").await.expect("size"),
        Some(total as u64)
    );

    let mut reader = store.reader("shard-0.rdb").await.expect("reader");
    let mut got = Context::new(&SHA256);
    let mut read = 0;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        got.update(&buf[..n]);
        read += n;
    }
    assert_eq!(read, total);
    assert_eq!(got.finish().as_ref(), sent.finish().as_ref());
}

#[tokio::test]
async fn aborted_upload_leaves_no_object() {
    let server = S3Server::start("abort");
    let store = s3_store(&server, "p");
    let mut writer = store.writer("big");
    let data = vec![7u8; 20 * 1024 * 1024];
    writer.write_all(&data).await.expect("write");
    writer.abort().await.expect("abort");
    assert_eq!(store.size("big").await.expect("size"), None);
    assert!(store.list().await.expect("list").is_empty());
}

#[tokio::test]
async fn missing_object() {
    let server = S3Server::start("missing");
    let store = s3_store(&server, "p");
    assert_eq!(store.size("nope").await.expect("size"), None);
    let err = store
        .get("nope")
        .await
        .expect_err("get of a missing object");
    assert_eq!(err.kind, StoreErrorKind::NotFound, "{err}");
    assert!(err.message.contains("s3://backups/p/nope"), "{err}");
    assert!(err.message.contains(&server.endpoint()), "{err}");
    assert!(!err.transient());
    let err = match store.reader("nope").await {
        Ok(_) => panic!("reader of a missing object"),
        Err(e) => e,
    };
    assert_eq!(err.kind, StoreErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn list_and_delete_all_stay_under_the_prefix() {
    let server = S3Server::start("list");
    let root = s3_store(&server, "root");
    let a = root.child("demo/a-11111111/");
    let b = root.child("demo/b-22222222");
    // A sibling whose name starts like a's: prefixes are whole path segments.
    let a_like = root.child("demo/a-11111111x");
    for (store, name) in [
        (&a, "manifest.json"),
        (&a, "shards/0.rdb"),
        (&b, "manifest.json"),
        (&a_like, "manifest.json"),
    ] {
        store
            .put(name, Bytes::from(name.to_string()))
            .await
            .expect("put");
    }
    let mut listed = a.list().await.expect("list");
    listed.sort();
    assert_eq!(
        listed,
        vec![
            ("manifest.json".to_string(), 13),
            ("shards/0.rdb".to_string(), 12)
        ]
    );
    assert_eq!(root.list().await.expect("list root").len(), 4);
    assert_eq!(a.delete_all().await.expect("delete_all"), 2);
    assert!(a.list().await.expect("list").is_empty());
    assert_eq!(b.list().await.expect("list b").len(), 1);
    assert_eq!(a_like.list().await.expect("list a_like").len(), 1);
    assert_eq!(a.delete_all().await.expect("delete_all again"), 0);
}

#[tokio::test]
async fn wrong_credentials_are_unauthorized() {
    let server = S3Server::start("creds");
    let wrong_secret = S3Credentials {
        access_key_id: s3_server::ACCESS_KEY.to_string(),
        secret_access_key: "not-the-secret-key-0000".to_string(),
    };
    let wrong_key = S3Credentials {
        access_key_id: "no-such-key".to_string(),
        secret_access_key: "not-the-secret-key-0000".to_string(),
    };
    for creds in [wrong_secret, wrong_key] {
        let store = Store::s3(&server.location("p"), &creds, short_timeouts()).expect("store");
        let err = store
            .put("x", Bytes::from_static(b"x"))
            .await
            .expect_err("put with wrong credentials");
        assert_eq!(err.kind, StoreErrorKind::Unauthorized, "{err}");
        eprintln!("{err}");
        assert!(!err.transient());
        assert!(!err.message.contains(&creds.secret_access_key), "{err}");
        let err = store.get("x").await.expect_err("get");
        assert_eq!(err.kind, StoreErrorKind::Unauthorized, "{err}");
        let err = store.list().await.expect_err("list");
        assert_eq!(err.kind, StoreErrorKind::Unauthorized, "{err}");
    }
}

#[tokio::test]
async fn missing_bucket() {
    let server = S3Server::start("nobucket");
    let mut loc = server.location("p");
    loc.bucket = "no-such-bucket".to_string();
    let store = Store::s3(&loc, &S3Server::credentials(), short_timeouts()).expect("store");
    let err = store
        .put("x", Bytes::from_static(b"x"))
        .await
        .expect_err("put into a missing bucket");
    assert_eq!(err.kind, StoreErrorKind::BucketMissing, "{err}");
    eprintln!("{err}");
    assert!(err.message.contains("s3://no-such-bucket/p/x"), "{err}");
    let err = store.list().await.expect_err("list");
    assert_eq!(err.kind, StoreErrorKind::BucketMissing, "{err}");
    let err = store.get("x").await.expect_err("get");
    assert_eq!(err.kind, StoreErrorKind::BucketMissing, "{err}");
}

/// Connection refused: retried a few times, then Unreachable, well within the retry budget.
#[tokio::test]
async fn killed_server_is_unreachable() {
    let mut server = S3Server::start("killed");
    let store = Store::s3(
        &server.location("p"),
        &S3Server::credentials(),
        short_timeouts(),
    )
    .expect("store");
    store.put("x", Bytes::from_static(b"x")).await.expect("put");
    server.kill();
    let start = Instant::now();
    let err = store
        .size("x")
        .await
        .expect_err("size with the server gone");
    assert_eq!(err.kind, StoreErrorKind::Unreachable, "{err}");
    eprintln!("after {:?}: {err}", start.elapsed());
    assert!(err.transient());
    assert!(err.message.contains(&server.endpoint()), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(35),
        "{:?}",
        start.elapsed()
    );
}

/// A server that accepts connections and never answers (SIGSTOP, as `hack/s3 pause`): the
/// request timeout fires, and mid-upload the writer fails instead of hanging.
#[tokio::test]
async fn stopped_server_times_out_mid_upload() {
    let server = S3Server::start("stopped");
    let store = Store::s3(
        &server.location("p"),
        &S3Server::credentials(),
        short_timeouts(),
    )
    .expect("store");
    let mut writer = store.writer("big");
    writer
        .write_all(&vec![1u8; 10 * 1024 * 1024])
        .await
        .expect("first part");
    server.signal("STOP");
    let start = Instant::now();
    let result = async {
        writer.write_all(&vec![2u8; 20 * 1024 * 1024]).await?;
        writer.shutdown().await
    }
    .await;
    let err = writer.io_error(&result.expect_err("upload to a stopped server"));
    assert_eq!(err.kind, StoreErrorKind::Unreachable, "{err}");
    eprintln!("after {:?}: {err}", start.elapsed());
    assert!(
        start.elapsed() < Duration::from_secs(45),
        "{:?}",
        start.elapsed()
    );
    let start = Instant::now();
    let err = store.size("x").await.expect_err("size");
    assert_eq!(err.kind, StoreErrorKind::Unreachable, "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(45),
        "{:?}",
        start.elapsed()
    );
    server.signal("CONT");
    writer.abort().await.expect("abort once the server is back");
}

#[tokio::test]
async fn local_directory_store() {
    let dir = std::env::temp_dir().join(format!("redis-op-local-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::local(&dir.join("backups"), "team")
        .expect("local store")
        .child("demo/x-12345678");
    assert!(store.describe().ends_with("/backups/team/demo/x-12345678/"));
    store
        .put("manifest.json", Bytes::from_static(b"{}"))
        .await
        .expect("put");
    let mut writer = store.writer("shards/0.rdb");
    writer
        .write_all(&vec![3u8; 9 * 1024 * 1024])
        .await
        .expect("write");
    writer.finish().await.expect("finish");
    assert_eq!(store.get("manifest.json").await.expect("get"), "{}");
    let mut data = Vec::new();
    store
        .reader("shards/0.rdb")
        .await
        .expect("reader")
        .read_to_end(&mut data)
        .await
        .expect("read");
    assert_eq!(data.len(), 9 * 1024 * 1024);
    assert_eq!(store.size("missing").await.expect("size"), None);
    let err = store.get("missing").await.expect_err("get missing");
    assert_eq!(err.kind, StoreErrorKind::NotFound, "{err}");
    let mut listed = store.list().await.expect("list");
    listed.sort();
    assert_eq!(
        listed,
        vec![
            ("manifest.json".to_string(), 2),
            ("shards/0.rdb".to_string(), 9 * 1024 * 1024)
        ]
    );
    assert_eq!(store.delete_all().await.expect("delete_all"), 2);
    assert!(store.list().await.expect("list").is_empty());
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[tokio::test]
async fn https_with_a_private_ca() {
    let server = S3Server::start_tls("tls");
    // Trusting the CA that signed the server's certificate: a round trip.
    let store = Store::s3(
        &server.location("p"),
        &S3Server::credentials(),
        short_timeouts(),
    )
    .expect("store");
    store
        .put("x", Bytes::from_static(b"over tls"))
        .await
        .unwrap_or_else(|e| panic!("put over https: {e}\n{}", server.log()));
    assert_eq!(
        store.get("x").await.expect("get"),
        Bytes::from_static(b"over tls")
    );
    // Without it, the system roots do not vouch for the server: refused, never sent in clear.
    let mut untrusted = server.location("p");
    untrusted.ca_pem = None;
    let store = Store::s3(&untrusted, &S3Server::credentials(), short_timeouts()).expect("store");
    let err = store
        .get("x")
        .await
        .expect_err("get with an untrusted certificate");
    eprintln!("{err}");
    assert_eq!(err.kind, StoreErrorKind::Untrusted, "{err}");
    assert!(!err.transient(), "retrying will not make it trusted");
    assert!(err.message.contains("certificate"), "{err}");
    // A CA that is not PEM is refused when the store is made.
    let mut garbage = server.location("p");
    garbage.ca_pem = Some(b"not a certificate".to_vec());
    let err = Store::s3(&garbage, &S3Server::credentials(), short_timeouts())
        .expect_err("a CA that is not PEM");
    assert!(err.message.contains("CA"), "{err}");
}
