//! The client against a fake server that sends garbage, truncated or hostile replies, and
//! property tests for the codec and the reply parsers: every bad input is an error, never a
//! panic or a crash.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use redis_operator::redis::codec::{GuardedResp2, complete_frame_len};
use redis_operator::redis::command::Cmd;
use redis_operator::redis::model::NodeObservation;
use redis_operator::redis::parse::cluster_info::parse_cluster_info;
use redis_operator::redis::parse::cluster_nodes::{OpenSlotState, parse_cluster_nodes, parse_line};
use redis_operator::redis::parse::cluster_shards::parse_cluster_shards;
use redis_operator::redis::parse::info::parse_replication_info;
use redis_operator::redis::{AdminOptions, Client, RedisError, Timeouts, observe_node};
use redis_protocol::resp2::types::BytesFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::codec::{Decoder, Encoder};

fn fast() -> AdminOptions {
    AdminOptions {
        auth: None,
        timeouts: Timeouts {
            connect: Duration::from_millis(500),
            command: Duration::from_millis(300),
            migrate: Duration::from_secs(1),
            ..Timeouts::default()
        },
        tls: None,
    }
}

/// A server on an ephemeral loopback port that answers every request on every connection
/// with `reply`, closing the connection after the first reply if `close` is set.
async fn fake_server(reply: Vec<u8>, close: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = vec![0u8; 4096];
                loop {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                    // One reply per complete (possibly pipelined) request.
                    while let Ok(Some(len)) = complete_frame_len(&pending) {
                        pending.drain(..len);
                        if socket.write_all(&reply).await.is_err() || close {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn ping(reply: &[u8], close: bool) -> (Result<BytesFrame, RedisError>, Client) {
    let addr = fake_server(reply.to_vec(), close).await;
    let mut client = Client::connect(addr, &fast()).await.expect("connect");
    let result = client.call(&Cmd::ping()).await;
    (result, client)
}

#[tokio::test]
async fn garbage_is_a_protocol_error() {
    let (result, _) = ping(b"hello world\r\n", false).await;
    assert!(
        matches!(result, Err(RedisError::Protocol { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn truncated_reply_then_close_is_an_error() {
    let (result, _) = ping(b"$10\r\nabc", true).await;
    assert!(
        matches!(
            result,
            Err(RedisError::Closed { .. } | RedisError::Io { .. })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn truncated_reply_then_silence_times_out_and_poisons() {
    let (result, mut client) = ping(b"*3\r\n:1\r\n", false).await;
    assert!(
        matches!(result, Err(RedisError::Timeout { .. })),
        "{result:?}"
    );
    assert!(client.is_poisoned());
    assert!(matches!(
        client.call(&Cmd::ping()).await,
        Err(RedisError::Poisoned { .. })
    ));
}

#[tokio::test]
async fn deep_nesting_is_rejected_not_a_stack_overflow() {
    let mut reply = b"*1\r\n".repeat(200_000);
    reply.extend_from_slice(b":1\r\n");
    let (result, _) = ping(&reply, false).await;
    assert!(
        matches!(result, Err(RedisError::Protocol { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn absurd_lengths_are_rejected() {
    for reply in [
        &b"$-7\r\n"[..],
        b"*99999999999\r\n",
        b":notanumber\r\n",
        b"$abc\r\n",
    ] {
        let (result, _) = ping(reply, false).await;
        assert!(
            matches!(result, Err(RedisError::Protocol { .. })),
            "{result:?}"
        );
    }
}

/// A server that answers the first request with an array header and then an endless stream
/// of elements, and reports how many bytes it wrote before the client closed the connection.
async fn flooding_server() -> (SocketAddr, tokio::sync::oneshot::Receiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (done, written) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let mut request = [0u8; 256];
        let _ = socket.read(&mut request).await;
        let mut sent = 0;
        let mut chunk = b"*50000000\r\n".to_vec();
        loop {
            if socket.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
            chunk = b"+0123456789abcdef\r\n".repeat(4096);
        }
        let _ = done.send(sent);
    });
    (addr, written)
}

#[tokio::test]
async fn oversized_reply_is_refused_and_closes_the_connection() {
    let limit = 1024 * 1024;
    let mut options = fast();
    options.timeouts.max_reply_bytes = limit;
    // Declared too large in its header: refused before the body arrives.
    let addr = fake_server(b"$2000000\r\nabc".to_vec(), false).await;
    let mut client = Client::connect(addr, &options).await.expect("connect");
    let result = client.call(&Cmd::ping()).await;
    assert!(
        matches!(result, Err(RedisError::ReplyTooLarge { limit: l, .. }) if l == limit),
        "{result:?}"
    );
    assert!(client.is_poisoned());
    let message = result.expect_err("too large").to_string();
    assert!(message.contains("1048576"), "{message}");
    // Endless small elements: refused once they pass the limit, and the connection is closed,
    // so the server's writes fail instead of filling the operator's memory.
    let (addr, written) = flooding_server().await;
    let mut client = Client::connect(addr, &options).await.expect("connect");
    let result = client.call(&Cmd::ping()).await;
    assert!(
        matches!(result, Err(RedisError::ReplyTooLarge { .. })),
        "{result:?}"
    );
    assert!(!result.as_ref().is_err_and(RedisError::is_transient));
    let written = tokio::time::timeout(Duration::from_secs(10), written)
        .await
        .expect("the server sees the connection closed")
        .expect("written");
    assert!(written > limit, "{written}");
    assert!(matches!(
        client.call(&Cmd::ping()).await,
        Err(RedisError::Poisoned { .. })
    ));
}

#[tokio::test]
async fn errors_from_commands_with_passwords_do_not_show_them() {
    // A server that never answers: the timeout error names the command, not its arguments.
    let addr = fake_server(Vec::new(), false).await;
    let mut client = Client::connect(addr, &fast()).await.expect("connect");
    let set = Cmd::new("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("s3cret-pw");
    let auth = Cmd::auth(Some("admin"), "s3cret-pw");
    let err = client.call(&set).await.expect_err("silence");
    assert!(matches!(err, RedisError::Timeout { .. }), "{err:?}");
    let mut client = Client::connect(addr, &fast()).await.expect("connect");
    let pipelined = client
        .pipeline(&[auth.clone(), set.clone()])
        .await
        .expect_err("silence");
    for text in [
        err.to_string(),
        format!("{err:?}"),
        pipelined.to_string(),
        format!("{pipelined:?}"),
        format!("{client:?}"),
        format!("{:?}", [auth, set]),
    ] {
        assert!(!text.contains("s3cret"), "{text}");
    }
}

#[tokio::test]
async fn error_replies_are_typed() {
    let (result, client) = ping(b"-MOVED 3999 10.1.2.3:6379\r\n", false).await;
    assert!(
        matches!(result, Err(RedisError::Moved { slot: 3999, .. })),
        "{result:?}"
    );
    // A server error is a complete reply: the connection stays usable.
    assert!(!client.is_poisoned());
    let (result, _) = ping(
        b"-LOADING Redis is loading the dataset in memory\r\n",
        false,
    )
    .await;
    assert!(matches!(result, Err(RedisError::Loading(_))), "{result:?}");
}

#[tokio::test]
async fn unexpected_shapes_fail_observation() {
    let addr = fake_server(b":1\r\n".to_vec(), false).await;
    let err = observe_node(addr, &fast())
        .await
        .expect_err("integer for CLUSTER NODES");
    assert!(matches!(err, RedisError::UnexpectedReply { .. }), "{err:?}");
    let addr = fake_server(b"$7\r\nnot ok!\r\n".to_vec(), false).await;
    let err = observe_node(addr, &fast())
        .await
        .expect_err("garbage CLUSTER NODES");
    assert!(
        matches!(
            err,
            RedisError::Parse { .. } | RedisError::UnexpectedReply { .. }
        ),
        "{err:?}"
    );
    let garbage =
        NodeObservation::from_replies(addr, "not ok!", "cluster_state:ok", "role:master", None);
    assert!(garbage.is_err());
}

#[tokio::test]
async fn refused_connection_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let err = Client::connect(addr, &fast()).await.expect_err("refused");
    assert!(matches!(err, RedisError::Connect { .. }), "{err:?}");
}

fn frame_strategy() -> impl Strategy<Value = BytesFrame> {
    let leaf = prop_oneof![
        "[ -~]{0,20}".prop_map(|s| BytesFrame::SimpleString(Bytes::from(s))),
        "[ -~]{0,20}".prop_map(|s| BytesFrame::Error(s.into())),
        any::<i64>().prop_map(BytesFrame::Integer),
        proptest::collection::vec(any::<u8>(), 0..40)
            .prop_map(|b| BytesFrame::BulkString(Bytes::from(b))),
        Just(BytesFrame::Null),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        proptest::collection::vec(inner, 0..8).prop_map(BytesFrame::Array)
    })
}

fn hex_id() -> impl Strategy<Value = String> {
    "[0-9a-f]{40}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Encoded frames split at arbitrary points decode to the same frame: the depth guard
    /// agrees with the crate's decoder on where frames end.
    #[test]
    fn codec_roundtrips_in_pieces(frame in frame_strategy(), cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
        let mut codec = GuardedResp2::default();
        let mut wire = BytesMut::new();
        codec.encode(frame.clone(), &mut wire).expect("encode");
        let wire = wire.to_vec();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(wire.len());
        let mut buf = BytesMut::new();
        let mut start = 0;
        let mut decoded = None;
        for cut in cuts {
            buf.extend_from_slice(&wire[start..cut]);
            start = cut;
            if let Some(f) = codec.decode(&mut buf).expect("valid input decodes") {
                decoded = Some(f);
                break;
            }
        }
        prop_assert_eq!(decoded, Some(frame));
    }

    /// Arbitrary bytes never panic the codec.
    #[test]
    fn codec_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut codec = GuardedResp2::default();
        let mut buf = BytesMut::from(&bytes[..]);
        for _ in 0..4 {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// Arbitrary bytes biased towards RESP structure never panic the codec.
    #[test]
    fn codec_survives_resp_like_bytes(parts in proptest::collection::vec(
        prop_oneof![
            Just(b"*".to_vec()), Just(b"$".to_vec()), Just(b":".to_vec()), Just(b"+".to_vec()),
            Just(b"-".to_vec()), Just(b"\r\n".to_vec()), Just(b"-1".to_vec()), Just(b"3".to_vec()),
            Just(b"0".to_vec()), proptest::collection::vec(any::<u8>(), 0..4),
        ],
        0..64,
    )) {
        let bytes: Vec<u8> = parts.concat();
        let mut codec = GuardedResp2::default();
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = codec.decode(&mut buf);
    }

    /// The text parsers never panic, whatever the text.
    #[test]
    fn text_parsers_survive_arbitrary_text(text in "(?s).{0,400}") {
        let _ = parse_cluster_nodes(&text);
        let _ = parse_cluster_info(&text);
        let _ = parse_replication_info(&text);
        let _ = RedisError::from_reply_line(&text);
        let _ = NodeObservation::from_replies("127.0.0.1:1".parse().unwrap(), &text, &text, &text, Some(1));
    }

    /// Lines made of plausible CLUSTER NODES tokens never panic the parser.
    #[test]
    fn cluster_nodes_survives_token_soup(tokens in proptest::collection::vec(
        prop_oneof![
            hex_id(), Just("127.0.0.1:7000@17000".to_owned()), Just(":0@0".to_owned()),
            Just("myself,master".to_owned()), Just("slave".to_owned()), Just("-".to_owned()),
            Just("0".to_owned()), Just("connected".to_owned()), Just("0-16383".to_owned()),
            Just("[5->-".to_owned()), Just("]".to_owned()), "[0-9]{1,6}", "[ -~]{0,8}",
        ],
        0..14,
    )) {
        let _ = parse_line(&tokens.join(" "));
    }

    /// CLUSTER SHARDS parsing never panics, whatever the frame.
    #[test]
    fn shards_parser_survives_arbitrary_frames(frame in frame_strategy()) {
        let _ = parse_cluster_shards(&frame);
    }

    /// A rendered CLUSTER NODES line parses back to what was rendered.
    #[test]
    fn cluster_nodes_line_roundtrips(
        id in hex_id(),
        master in proptest::option::of(hex_id()),
        ip in any::<[u8; 4]>(),
        port in 1u16..,
        bus in 1u16..,
        myself in any::<bool>(),
        pfail in any::<bool>(),
        epoch in any::<u64>(),
        pong in any::<u64>(),
        connected in any::<bool>(),
        mut bounds in proptest::collection::vec(0u16..16384, 0..10),
        open in proptest::option::of((0u16..16384, any::<bool>(), hex_id())),
    ) {
        bounds.sort_unstable();
        bounds.dedup();
        let ranges: Vec<(u16, u16)> = bounds.chunks_exact(2).map(|c| (c[0], c[1])).collect();
        let mut flags = Vec::new();
        if myself { flags.push("myself"); }
        flags.push(if master.is_some() { "slave" } else { "master" });
        if pfail { flags.push("fail?"); }
        let slots: Vec<String> = ranges.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
        let marker = open.as_ref().map(|(s, migrating, other)| {
            if *migrating { format!("[{s}->-{other}]") } else { format!("[{s}-<-{other}]") }
        });
        let ip_text = format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3]);
        let line = format!(
            "{id} {ip_text}:{port}@{bus} {} {} 0 {pong} {epoch} {} {} {}",
            flags.join(","),
            master.clone().unwrap_or_else(|| "-".to_owned()),
            if connected { "connected" } else { "disconnected" },
            slots.join(" "),
            marker.unwrap_or_default(),
        );
        let entry = parse_line(&line).expect("rendered line parses");
        prop_assert_eq!(entry.id.as_str(), id.as_str());
        prop_assert_eq!(entry.addr, Some(SocketAddr::from((ip, port))));
        prop_assert_eq!(entry.bus_port, Some(bus));
        prop_assert_eq!(entry.flags.myself, myself);
        prop_assert_eq!(entry.flags.pfail, pfail);
        prop_assert_eq!(entry.is_master(), master.is_none());
        prop_assert_eq!(entry.master_id.map(|m| m.to_string()), master);
        prop_assert_eq!(entry.config_epoch, epoch);
        prop_assert_eq!(entry.pong_recv_ms, pong);
        prop_assert_eq!(entry.link_connected, connected);
        let parsed: Vec<(u16, u16)> = entry.slots.iter().map(|r| (r.start, r.end)).collect();
        prop_assert_eq!(parsed, ranges);
        match (open, entry.open_slots.first()) {
            (None, None) => {}
            (Some((s, true, other)), Some((ps, OpenSlotState::Migrating { to }))) => {
                prop_assert_eq!(s, *ps);
                prop_assert_eq!(to.as_str(), other.as_str());
            }
            (Some((s, false, other)), Some((ps, OpenSlotState::Importing { from }))) => {
                prop_assert_eq!(s, *ps);
                prop_assert_eq!(from.as_str(), other.as_str());
            }
            (expected, got) => prop_assert!(false, "open slot mismatch: {:?} vs {:?}", expected, got),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever a fake server sends, a call returns (an error or a frame) within its timeout.
    #[test]
    fn client_survives_arbitrary_replies(reply in proptest::collection::vec(any::<u8>(), 0..256), close in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let addr = fake_server(reply, close).await;
            let mut client = Client::connect(addr, &fast()).await.expect("connect");
            let _ = client.call(&Cmd::ping()).await;
            let _ = observe_node(addr, &fast()).await;
        });
    }
}
