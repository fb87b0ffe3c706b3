//! Unit tests of the guarded codec: frame boundaries, hostile input, the reply limit and the
//! resumable scan (fed in pieces it decodes what a one-shot decode gives).

use super::*;

#[test]
fn finds_frame_boundaries() {
    assert_eq!(complete_frame_len(b"+OK\r\n").unwrap(), Some(5));
    assert_eq!(complete_frame_len(b"+OK\r").unwrap(), None);
    assert_eq!(complete_frame_len(b"+\r\n").unwrap(), Some(3));
    assert_eq!(complete_frame_len(b"+a\rb\r\n").unwrap(), Some(6));
    assert_eq!(complete_frame_len(b"$3\r\nabc\r\n+x").unwrap(), Some(9));
    assert_eq!(complete_frame_len(b"$3\r\nab").unwrap(), None);
    assert_eq!(
        complete_frame_len(b"*2\r\n:1\r\n$-1\r\n").unwrap(),
        Some(13)
    );
    assert_eq!(complete_frame_len(b"*2\r\n:1\r\n").unwrap(), None);
    assert_eq!(complete_frame_len(b"*0\r\n").unwrap(), Some(4));
    assert_eq!(complete_frame_len(b"*-1\r\n").unwrap(), Some(5));
    assert_eq!(
        complete_frame_len(b"*2\r\n*1\r\n+a\r\n*1\r\n+b\r\n").unwrap(),
        Some(20)
    );
}

#[test]
fn rejects_hostile_input() {
    let mut deep = b"*1\r\n".repeat(100_000);
    deep.extend_from_slice(b":1\r\n");
    assert!(complete_frame_len(&deep).is_err());
    assert!(complete_frame_len(b"$-5\r\n").is_err());
    assert!(complete_frame_len(b"$99999999999\r\n").is_err());
    assert!(complete_frame_len(b"*x\r\n").is_err());
    assert!(complete_frame_len(b"?\r\n").is_err());
    let mut codec = GuardedResp2::default();
    let mut buf = BytesMut::from(&deep[..]);
    assert!(codec.decode(&mut buf).is_err());
}

/// Decodes `wire` fed in pieces of `step` bytes; the frames and the first error, if any.
fn feed(codec: &mut GuardedResp2, wire: &[u8], step: usize) -> (Vec<BytesFrame>, Option<String>) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in wire.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(err) => return (frames, Some(err.to_string())),
            }
        }
    }
    (frames, None)
}

#[test]
fn pieces_decode_like_one_shot() {
    let wire = b"*3\r\n$5\r\nhello\r\n*2\r\n:-7\r\n+a\rb\r\n$-1\r\n+OK\r\n-ERR x\r\n$0\r\n\r\n";
    let (whole, err) = feed(&mut GuardedResp2::default(), wire, wire.len());
    assert_eq!(err, None);
    assert_eq!(whole.len(), 4);
    for step in 1..wire.len() {
        let mut codec = GuardedResp2::default();
        assert_eq!(
            feed(&mut codec, wire, step),
            (whole.clone(), None),
            "{step}"
        );
    }
}

#[test]
fn reply_limit_refuses_large_bulk_from_its_header() {
    let mut codec = GuardedResp2::with_max_reply(1024);
    // Only the header has arrived: refused before any of the body is read.
    let mut buf = BytesMut::from(&b"$2000\r\n"[..]);
    let err = codec.decode(&mut buf).expect_err("too large");
    assert!(matches!(err, CodecError::TooLarge { limit: 1024 }), "{err}");
    // Exactly at the limit is accepted: 1024 = "$1015\r\n" (7) + 1015 + CRLF.
    let mut wire = b"$1015\r\n".to_vec();
    wire.extend(std::iter::repeat_n(b'x', 1015));
    wire.extend_from_slice(b"\r\n");
    assert_eq!(wire.len(), 1024);
    let (frames, err) = feed(&mut GuardedResp2::with_max_reply(1024), &wire, 100);
    assert_eq!((frames.len(), err), (1, None));
    let (_, err) = feed(&mut GuardedResp2::with_max_reply(1023), &wire, 100);
    assert!(err.is_some_and(|e| e.contains("1023")));
}

#[test]
fn reply_limit_counts_every_element_and_line() {
    // Many small elements add up past the limit: refused once they pass it, and the buffer
    // never holds more than the limit plus the piece just read.
    let mut wire = b"*100000\r\n".to_vec();
    for _ in 0..100_000 {
        wire.extend_from_slice(b"+0123456789\r\n");
    }
    let mut codec = GuardedResp2::with_max_reply(64 * 1024);
    let mut buf = BytesMut::new();
    let mut refused = false;
    for piece in wire.chunks(4096) {
        buf.extend_from_slice(piece);
        match codec.decode(&mut buf) {
            Ok(None) => assert!(buf.len() <= 64 * 1024, "{}", buf.len()),
            Ok(Some(_)) => panic!("decoded past the limit"),
            Err(err) => {
                assert!(matches!(err, CodecError::TooLarge { .. }), "{err}");
                refused = true;
                break;
            }
        }
    }
    assert!(refused);
    // One endless line: refused at the limit too (below the line-length guard).
    let mut line = b"+".to_vec();
    line.extend(std::iter::repeat_n(b'a', 5000));
    let (_, err) = feed(&mut GuardedResp2::with_max_reply(4096), &line, 512);
    assert!(err.is_some_and(|e| e.contains("4096")));
}

#[test]
fn next_reply_gets_its_own_limit() {
    // Two replies of 600 bytes each under a 1000-byte limit, arriving in one read: each
    // reply is within the limit even though the buffer holds more.
    let mut one = b"$590\r\n".to_vec();
    one.extend(std::iter::repeat_n(b'y', 590));
    one.extend_from_slice(b"\r\n");
    let wire = [one.clone(), one].concat();
    let (frames, err) = feed(&mut GuardedResp2::with_max_reply(1000), &wire, wire.len());
    assert_eq!((frames.len(), err), (2, None));
}

#[test]
fn long_line_is_searched_once() {
    // A 1 MB simple string arriving one byte at a time: with a rescan per read this would
    // touch ~5e11 bytes; resumed, it finishes at once.
    let mut wire = b"+".to_vec();
    wire.extend(std::iter::repeat_n(b'z', 1_000_000));
    wire.extend_from_slice(b"\r\n");
    let mut codec = GuardedResp2::default();
    let mut buf = BytesMut::new();
    let mut frame = None;
    for &b in &wire {
        buf.extend_from_slice(&[b]);
        if let Some(f) = codec.decode(&mut buf).expect("valid") {
            frame = Some(f);
        }
    }
    assert!(matches!(frame, Some(BytesFrame::SimpleString(s)) if s.len() == 1_000_000));
}

#[test]
fn error_resets_the_scan() {
    let mut codec = GuardedResp2::default();
    let mut buf = BytesMut::from(&b"*2\r\n:1\r\n?\r\n"[..]);
    assert!(codec.decode(&mut buf).is_err());
    let mut fresh = BytesMut::from(&b"+OK\r\n"[..]);
    assert!(matches!(
        codec.decode(&mut fresh),
        Ok(Some(BytesFrame::SimpleString(_)))
    ));
}
