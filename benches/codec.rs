//! The RESP codec on large replies, delivered the way a socket delivers them: in 64 KiB reads,
//! each followed by a decode attempt (as `Framed` does). Run with `cargo bench --bench codec`.
//!
//! * a CLUSTER NODES reply of a 1,000-node cluster (one bulk string of ~125 KB);
//! * a 100 MB bulk string (a large value brought back by GET or DUMP; above the default reply
//!   limit, so the codec here is given a 128 MiB one);
//! * a large array reply: CLUSTER GETKEYSINSLOT with 200,000 keys (~3.8 MB, 200,001 frames).

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redis_operator::redis::codec::GuardedResp2;
use tokio_util::codec::Decoder;

const CHUNK: usize = 64 * 1024;
const MAX_REPLY: usize = 128 * 1024 * 1024;

fn bulk(payload: &[u8]) -> Vec<u8> {
    let mut wire = format!("${}\r\n", payload.len()).into_bytes();
    wire.extend_from_slice(payload);
    wire.extend_from_slice(b"\r\n");
    wire
}

/// A CLUSTER NODES text for `nodes` members, half masters with 16 slots each, half replicas.
fn cluster_nodes_text(nodes: usize) -> Vec<u8> {
    let id = |i: usize| format!("{i:040x}");
    let mut text = String::new();
    for i in 0..nodes {
        let ip = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
        if i % 2 == 0 {
            let start = (i / 2) * 16;
            text.push_str(&format!(
                "{} {ip}:6379@16379 master - 0 1733300000000 {} connected {start}-{}\n",
                id(i),
                i + 1,
                start + 15
            ));
        } else {
            text.push_str(&format!(
                "{} {ip}:6379@16379 slave {} 0 1733300000000 {} connected\n",
                id(i),
                id(i - 1),
                i
            ));
        }
    }
    text.into_bytes()
}

fn keys_array(keys: usize) -> Vec<u8> {
    let mut wire = format!("*{keys}\r\n").into_bytes();
    for i in 0..keys {
        let key = format!("key:{i:08}");
        wire.extend_from_slice(&bulk(key.as_bytes()));
    }
    wire
}

/// Feeds `wire` in `CHUNK`-sized reads, decoding after each, and returns the decoded frame.
fn decode_chunked(wire: &[u8]) -> Option<redis_protocol::resp2::types::BytesFrame> {
    // Above the 64 MiB default reply limit, so that the 100 MB bulk is accepted.
    let mut codec = GuardedResp2::with_max_reply(MAX_REPLY);
    let mut buf = BytesMut::new();
    for chunk in wire.chunks(CHUNK) {
        buf.extend_from_slice(chunk);
        if let Ok(Some(frame)) = codec.decode(&mut buf) {
            return Some(frame);
        }
    }
    None
}

fn bench(c: &mut Criterion) {
    let cases = [
        ("cluster_nodes_1000", bulk(&cluster_nodes_text(1000))),
        ("bulk_100mb", bulk(&vec![b'x'; 100 * 1000 * 1000])),
        ("array_200k_keys", keys_array(200_000)),
    ];
    let mut group = c.benchmark_group("codec_64k_reads");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for (name, wire) in &cases {
        assert!(decode_chunked(wire).is_some(), "{name} decodes");
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| black_box(decode_chunked(black_box(wire))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
