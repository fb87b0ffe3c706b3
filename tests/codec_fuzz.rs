//! The codec fuzz property (`fuzz/codec_check.rs`) on stable: random and RESP-shaped bytes,
//! random read sizes and reply limits. `make fuzz-codec` runs the same property under
//! libFuzzer (coverage-guided) for a bounded time where a nightly toolchain is available.

use proptest::prelude::*;
use redis_operator::redis::codec;

#[path = "../fuzz/codec_check.rs"]
mod codec_check;

/// RESP-shaped fragments, so the random inputs reach deep into the scanner.
fn resp_soup() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            Just(b"*".to_vec()),
            Just(b"$".to_vec()),
            Just(b":".to_vec()),
            Just(b"+".to_vec()),
            Just(b"-".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"-1".to_vec()),
            Just(b"0".to_vec()),
            Just(b"2".to_vec()),
            Just(b"3".to_vec()),
            Just(b"40".to_vec()),
            Just(b"9999".to_vec()),
            Just(b"*2\r\n".to_vec()),
            Just(b"$3\r\nabc\r\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..6),
        ],
        0..96,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn codec_property_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        codec_check::check(&data);
    }

    #[test]
    fn codec_property_on_resp_shaped_bytes(limit in any::<u8>(), sizes in any::<[u8; 7]>(), wire in resp_soup()) {
        let mut data = vec![limit];
        data.extend_from_slice(&sizes);
        data.extend_from_slice(&wire);
        codec_check::check(&data);
    }
}

/// Inputs that once broke (or nearly broke) an assumption, kept as fixed cases.
#[test]
fn codec_property_regressions() {
    for wire in [
        &b"+a\rb\r\n"[..],
        b"$3\r\nabcXY",
        b"*1\r\n*0\r\n+x\r\n",
        b"*2\r\n$0\r\n\r\n:+5\r\n",
        b"-\xff\r\n",
        b"+\r\r\n",
    ] {
        for limit in [0u8, 255] {
            let mut data = vec![limit, 1, 2, 3, 200, 5, 6, 7];
            data.extend_from_slice(wire);
            codec_check::check(&data);
        }
    }
}
