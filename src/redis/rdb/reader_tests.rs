//! The reader on hand-built files: the smallest valid file, opcodes, every way a file can be
//! refused.

use super::*;

/// A file: header, `body`, EOF and the checksum (real, zero, or a wrong one).
fn file(version: &str, body: &[u8], checksum: Checksum) -> Vec<u8> {
    let mut out = format!("REDIS{version}").into_bytes();
    out.extend_from_slice(body);
    out.push(OP_EOF);
    let crc = match checksum {
        Checksum::Real => crc64(0, &out),
        Checksum::Zero => 0,
        Checksum::Wrong => crc64(0, &out) ^ 1,
    };
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[derive(Clone, Copy)]
enum Checksum {
    Real,
    Zero,
    Wrong,
}

/// A string key `k` = `v` with the opcodes that may precede a key.
fn body() -> Vec<u8> {
    let mut b = vec![OP_AUX, 9];
    b.extend_from_slice(b"redis-ver");
    b.extend_from_slice(&[6]);
    b.extend_from_slice(b"7.0.15");
    b.extend_from_slice(&[OP_SELECTDB, 3, OP_RESIZEDB, 2, 1]);
    b.push(OP_EXPIRETIME_MS);
    b.extend_from_slice(&1_700_000_000_000_i64.to_le_bytes());
    b.extend_from_slice(&[OP_FREQ, 7, TYPE_STRING, 1, b'k', 1, b'v']);
    // A second key with an integer-encoded name and a seconds expiry and LRU idle time.
    b.push(OP_EXPIRETIME);
    b.extend_from_slice(&1_700_000_000_i32.to_le_bytes());
    b.extend_from_slice(&[OP_IDLE, 5, TYPE_STRING, 0xc0, 42, 0]);
    // A function library, skipped.
    b.extend_from_slice(&[OP_FUNCTION2, 4]);
    b.extend_from_slice(b"code");
    b
}

async fn read_all(bytes: &[u8]) -> Result<(Vec<RdbKey>, RdbSummary), RdbError> {
    let mut reader = RdbReader::open(bytes, ReaderLimits::default()).await?;
    let mut keys = Vec::new();
    while let Some(key) = reader.next_key().await? {
        keys.push(key);
    }
    Ok((keys, reader.summary().clone()))
}

/// What `DUMP` gives for a value: type, bytes, version, checksum.
fn dump(rdb_type: u8, value: &[u8], version: u16) -> Vec<u8> {
    let mut out = vec![rdb_type];
    out.extend_from_slice(value);
    out.extend_from_slice(&version.to_le_bytes());
    let crc = crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[tokio::test]
async fn keys_opcodes_and_summary() {
    let bytes = file("0010", &body(), Checksum::Real);
    let (keys, summary) = read_all(&bytes).await.expect("valid file");
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].db, 3);
    assert_eq!(keys[0].key.as_ref(), b"k");
    assert_eq!(keys[0].expire_at_ms, Some(1_700_000_000_000));
    assert_eq!(keys[0].lfu_freq, Some(7));
    assert_eq!(keys[0].payload.as_ref(), dump(0, &[1, b'v'], 10).as_slice());
    assert_eq!(keys[1].key.as_ref(), b"42");
    assert_eq!(keys[1].expire_at_ms, Some(1_700_000_000_000));
    assert_eq!(keys[1].idle_seconds, Some(5));
    assert_eq!(keys[1].lfu_freq, None);
    assert_eq!(keys[1].payload.as_ref(), dump(0, &[0], 10).as_slice());
    assert_eq!(summary.aux("redis-ver"), Some("7.0.15"));
    assert_eq!(summary.functions_skipped, 1);
    assert_eq!(summary.keys, 2);
    assert!(summary.finished);
    assert!(summary.checksum.is_some());
    assert_eq!(summary.bytes_read, bytes.len() as u64);
}

#[tokio::test]
async fn payload_version_is_the_files_and_zero_checksum_is_not_verified() {
    let bytes = file("0011", &body(), Checksum::Zero);
    let (keys, summary) = read_all(&bytes).await.expect("valid file");
    assert_eq!(keys[0].payload.as_ref(), dump(0, &[1, b'v'], 11).as_slice());
    assert_eq!(summary.checksum, None);
}

#[tokio::test]
async fn refusals() {
    let newer = file("0012", &body(), Checksum::Real);
    assert!(matches!(
        read_all(&newer).await,
        Err(RdbError::UnsupportedVersion { version: 12 })
    ));
    assert!(matches!(read_all(b"RDB").await, Err(RdbError::NotRdb)));
    assert!(matches!(
        read_all(b"REDISxxxx").await,
        Err(RdbError::NotRdb)
    ));
    assert!(matches!(
        read_all(&file("0010", &body(), Checksum::Wrong)).await,
        Err(RdbError::ChecksumMismatch { .. })
    ));
    // A module value names its key.
    let module = file(
        "0010",
        &[TYPE_MODULE_2, 3, b'm', b'o', b'd', 0x81],
        Checksum::Real,
    );
    let err = read_all(&module).await.expect_err("module");
    assert!(err.to_string().contains("\"mod\""), "{err}");
    let aux = file("0010", &[OP_MODULE_AUX, 1, 2], Checksum::Real);
    assert!(matches!(
        read_all(&aux).await,
        Err(RdbError::ModuleAux { .. })
    ));
    let unknown = file("0010", &[30, 1, b'u', 0], Checksum::Real);
    let err = read_all(&unknown).await.expect_err("unknown type");
    assert!(
        matches!(err, RdbError::UnknownType { rdb_type: 30, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn every_truncation_is_a_clean_error() {
    let bytes = file("0010", &body(), Checksum::Real);
    for len in 0..bytes.len() {
        match read_all(&bytes[..len]).await {
            Err(RdbError::Truncated { offset }) => assert_eq!(offset, len as u64),
            Err(RdbError::NotRdb) => assert!(len < 9),
            other => panic!("cut at {len}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn oversized_value_names_its_key() {
    let mut body = vec![TYPE_STRING, 3, b'b', b'i', b'g', 0x40, 200];
    body.extend_from_slice(&[b'x'; 200]);
    let bytes = file("0010", &body, Checksum::Real);
    let limits = ReaderLimits {
        max_payload_bytes: 100,
    };
    let mut reader = RdbReader::open(&bytes[..], limits).await.expect("header");
    let err = reader.next_key().await.expect_err("too large");
    assert!(
        matches!(&err, RdbError::ValueTooLarge { key, limit: 100 } if key == "\"big\""),
        "{err}"
    );
}

#[tokio::test]
async fn aggregate_types_are_delimited() {
    // A set of two strings, a zset with text scores (one +inf), a hash, a quicklist 2 with one
    // listpack node, and a string after them to prove each was consumed exactly.
    let mut b = vec![TYPE_SET, 1, b's', 2, 1, b'a', 1, b'b'];
    b.extend_from_slice(&[
        TYPE_ZSET, 1, b'z', 2, 1, b'a', 3, b'1', b'.', b'5', 1, b'b', 254,
    ]);
    b.extend_from_slice(&[TYPE_HASH, 1, b'h', 1, 1, b'f', 1, b'v']);
    b.extend_from_slice(&[TYPE_LIST_QUICKLIST_2, 1, b'l', 1, 2, 3, 1, 2, 3]);
    b.extend_from_slice(&[TYPE_ZSET_2, 2, b'z', b'2', 1, 1, b'm']);
    b.extend_from_slice(&1.5f64.to_le_bytes());
    b.extend_from_slice(&[TYPE_STRING, 4, b'l', b'a', b's', b't', 1, b'x']);
    let (keys, _) = read_all(&file("0010", &b, Checksum::Real))
        .await
        .expect("valid file");
    let names: Vec<&[u8]> = keys.iter().map(|k| k.key.as_ref()).collect();
    assert_eq!(names, [&b"s"[..], b"z", b"h", b"l", b"z2", b"last"]);
    assert_eq!(
        keys[1].payload.as_ref(),
        dump(
            TYPE_ZSET,
            &[2, 1, b'a', 3, b'1', b'.', b'5', 1, b'b', 254],
            10
        )
        .as_slice()
    );
}
