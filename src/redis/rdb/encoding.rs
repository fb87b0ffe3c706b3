//! RDB primitive encodings (Redis's `rdbLoadLenByRef`, `rdbGenericLoadStringObject`,
//! `rdbLoadDoubleValue`): lengths, and strings that may be raw, an encoded integer or LZF.
//!
//! Values are only delimited ([`skip_string`]): their bytes flow into the `DUMP` payload
//! through the source's capture. Keys, AUX fields and function code are decoded
//! ([`read_string`]).

use tokio::io::AsyncRead;

use crate::redis::rdb::error::RdbError;
use crate::redis::rdb::lzf;
use crate::redis::rdb::source::Source;

/// `11|xxxxxx`: a specially encoded string follows; the low six bits say which.
const ENCVAL: u8 = 3;
const ENC_INT8: u8 = 0;
const ENC_INT16: u8 = 1;
const ENC_INT32: u8 = 2;
const ENC_LZF: u8 = 3;

/// A length field: a plain length, or the marker of a specially encoded string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Len {
    /// A length or count.
    Plain(u64),
    /// `RDB_ENC_*`: the string is an integer or LZF-compressed.
    Encoded(u8),
}

/// Reads a length field.
pub(crate) async fn read_len_field<R: AsyncRead + Unpin>(
    src: &mut Source<R>,
) -> Result<Len, RdbError> {
    let first = src.u8().await?;
    match first >> 6 {
        0 => Ok(Len::Plain(u64::from(first & 0x3f))),
        1 => {
            let second = src.u8().await?;
            Ok(Len::Plain(
                (u64::from(first & 0x3f) << 8) | u64::from(second),
            ))
        }
        ENCVAL => Ok(Len::Encoded(first & 0x3f)),
        _ => match first {
            0x80 => Ok(Len::Plain(u64::from(u32::from_be_bytes(
                src.array::<4>().await?,
            )))),
            0x81 => Ok(Len::Plain(u64::from_be_bytes(src.array::<8>().await?))),
            _ => Err(corrupt(src, format!("invalid length prefix 0x{first:02x}"))),
        },
    }
}

/// Reads a length that must be plain (a count, an id, a timestamp field).
pub(crate) async fn read_len<R: AsyncRead + Unpin>(src: &mut Source<R>) -> Result<u64, RdbError> {
    match read_len_field(src).await? {
        Len::Plain(n) => Ok(n),
        Len::Encoded(_) => Err(corrupt(
            src,
            "string encoding where a length belongs".into(),
        )),
    }
}

/// A length as `usize` for a byte count, or a corruption error on 32-bit overflow.
fn byte_len<R: AsyncRead + Unpin>(src: &Source<R>, n: u64) -> Result<usize, RdbError> {
    usize::try_from(n).map_err(|_| corrupt(src, format!("length {n} does not fit in memory")))
}

/// Consumes one string without decoding it.
pub(crate) async fn skip_string<R: AsyncRead + Unpin>(src: &mut Source<R>) -> Result<(), RdbError> {
    match read_len_field(src).await? {
        Len::Plain(n) => src.take(byte_len(src, n)?, None).await,
        Len::Encoded(ENC_INT8) => src.take(1, None).await,
        Len::Encoded(ENC_INT16) => src.take(2, None).await,
        Len::Encoded(ENC_INT32) => src.take(4, None).await,
        Len::Encoded(ENC_LZF) => {
            let compressed = read_len(src).await?;
            let _expanded = read_len(src).await?;
            src.take(byte_len(src, compressed)?, None).await
        }
        Len::Encoded(other) => Err(corrupt(src, format!("unknown string encoding {other}"))),
    }
}

/// Reads and decodes one string of at most `limit` bytes (compressed and expanded).
pub(crate) async fn read_string<R: AsyncRead + Unpin>(
    src: &mut Source<R>,
    limit: usize,
) -> Result<Vec<u8>, RdbError> {
    let too_large = |_| RdbError::PayloadTooLarge { limit };
    match read_len_field(src).await? {
        Len::Plain(n) => {
            let n = usize::try_from(n).map_err(too_large)?;
            if n > limit {
                return Err(RdbError::PayloadTooLarge { limit });
            }
            let mut out = Vec::with_capacity(n);
            src.take(n, Some(&mut out)).await?;
            Ok(out)
        }
        Len::Encoded(ENC_INT8) => Ok(i8::from_le_bytes(src.array::<1>().await?)
            .to_string()
            .into_bytes()),
        Len::Encoded(ENC_INT16) => Ok(i16::from_le_bytes(src.array::<2>().await?)
            .to_string()
            .into_bytes()),
        Len::Encoded(ENC_INT32) => Ok(i32::from_le_bytes(src.array::<4>().await?)
            .to_string()
            .into_bytes()),
        Len::Encoded(ENC_LZF) => {
            let compressed = usize::try_from(read_len(src).await?).map_err(too_large)?;
            let expanded = usize::try_from(read_len(src).await?).map_err(too_large)?;
            if compressed > limit || expanded > limit {
                return Err(RdbError::PayloadTooLarge { limit });
            }
            let mut packed = Vec::with_capacity(compressed);
            src.take(compressed, Some(&mut packed)).await?;
            lzf::decompress(&packed, expanded).map_err(|e| corrupt(src, e.to_string()))
        }
        Len::Encoded(other) => Err(corrupt(src, format!("unknown string encoding {other}"))),
    }
}

/// Consumes a double in the old text form (`RDB_TYPE_ZSET`): a length byte, 253/254/255 for
/// NaN/+inf/-inf, else that many ASCII bytes.
pub(crate) async fn skip_double_text<R: AsyncRead + Unpin>(
    src: &mut Source<R>,
) -> Result<(), RdbError> {
    let len = src.u8().await?;
    if len < 253 {
        src.take(usize::from(len), None).await?;
    }
    Ok(())
}

/// A corruption error at the source's current offset.
pub(crate) fn corrupt<R>(src: &Source<R>, what: String) -> RdbError {
    RdbError::Corrupt {
        offset: src.offset(),
        what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn len_of(bytes: &[u8]) -> Result<(Len, u64), RdbError> {
        let mut src = Source::new(bytes);
        let len = read_len_field(&mut src).await?;
        Ok((len, src.offset()))
    }

    #[tokio::test]
    async fn length_encodings() {
        let cases: &[(&[u8], Len)] = &[
            (&[0x00], Len::Plain(0)),
            (&[0x3f], Len::Plain(63)),
            (&[0x40, 0x40], Len::Plain(64)),
            (&[0x7f, 0xff], Len::Plain(16383)),
            (&[0x80, 0x00, 0x00, 0x40, 0x00], Len::Plain(16384)),
            (
                &[0x80, 0xff, 0xff, 0xff, 0xff],
                Len::Plain(u64::from(u32::MAX)),
            ),
            (
                &[0x81, 0, 0, 0, 1, 0, 0, 0, 0],
                Len::Plain(u64::from(u32::MAX) + 1),
            ),
            (&[0xc0], Len::Encoded(ENC_INT8)),
            (&[0xc3], Len::Encoded(ENC_LZF)),
        ];
        for (bytes, want) in cases {
            let (got, used) = len_of(bytes).await.expect("valid length");
            assert_eq!(got, *want, "{bytes:02x?}");
            assert_eq!(used, bytes.len() as u64, "{bytes:02x?} consumed");
        }
        assert!(matches!(
            len_of(&[0x82]).await,
            Err(RdbError::Corrupt { .. })
        ));
        assert!(matches!(
            len_of(&[0x80, 0x00]).await,
            Err(RdbError::Truncated { offset: 2 })
        ));
    }

    #[tokio::test]
    async fn string_encodings_decode_and_skip_alike() {
        let cases: &[(&[u8], &[u8])] = &[
            (&[0x03, b'a', b'b', b'c'], b"abc"),
            (&[0x00], b""),
            (&[0xc0, 0xfb], b"-5"),
            (&[0xc1, 0x39, 0x30], b"12345"),
            (&[0xc2, 0x00, 0x00, 0x00, 0x80], b"-2147483648"),
            // LZF: compressed 5 bytes, expands to 10 ("aaaaaaaaaa").
            (
                &[0xc3, 0x05, 0x0a, 0x00, b'a', 0xe0, 0x00, 0x00],
                b"aaaaaaaaaa",
            ),
        ];
        for (bytes, want) in cases {
            let mut src = Source::new(*bytes);
            let got = read_string(&mut src, 100).await.expect("valid string");
            assert_eq!(got, *want, "{bytes:02x?}");
            assert_eq!(src.offset(), bytes.len() as u64);
            let mut src = Source::new(*bytes);
            skip_string(&mut src).await.expect("valid string");
            assert_eq!(src.offset(), bytes.len() as u64, "{bytes:02x?} skipped");
        }
    }

    #[tokio::test]
    async fn limits_and_truncation() {
        let mut src = Source::new(&[0x05, b'a', b'b', b'c', b'd', b'e'][..]);
        assert!(matches!(
            read_string(&mut src, 4).await,
            Err(RdbError::PayloadTooLarge { limit: 4 })
        ));
        let mut src = Source::new(&[0x05, b'a', b'b'][..]);
        assert!(matches!(
            skip_string(&mut src).await,
            Err(RdbError::Truncated { offset: 3 })
        ));
        // A 2^62-byte claim fails on the data, without allocating it.
        let mut src = Source::new(&[0x81, 0x40, 0, 0, 0, 0, 0, 0, 0, b'x'][..]);
        assert!(matches!(
            read_string(&mut src, 1 << 20).await,
            Err(RdbError::PayloadTooLarge { .. })
        ));
        let mut src = Source::new(&[0xc4][..]);
        assert!(matches!(
            skip_string(&mut src).await,
            Err(RdbError::Corrupt { .. })
        ));
    }
}
