//! LZF decompression (liblzf's `lzf_decompress`, which Redis uses for strings longer than 20
//! bytes when `rdbcompression` is on). Only keys, AUX fields and function code are ever
//! decompressed: values travel into `DUMP` payloads still compressed.

/// Why a compressed string could not be expanded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LzfError {
    /// A literal run or back reference reaches past the input or output.
    #[error("LZF data is corrupt at input byte {at}")]
    Corrupt {
        /// Offset in the compressed input.
        at: usize,
    },
    /// The data expanded to a different length than the RDB recorded.
    #[error("LZF data expands to {got} bytes, the RDB says {expected}")]
    Length {
        /// The length in the RDB.
        expected: usize,
        /// What decompression produced.
        got: usize,
    },
}

/// Expands `input` into exactly `expected` bytes.
pub fn decompress(input: &[u8], expected: usize) -> Result<Vec<u8>, LzfError> {
    let mut out: Vec<u8> = Vec::with_capacity(expected);
    let mut ip = 0;
    while ip < input.len() {
        let at = ip;
        let ctrl = usize::from(input[ip]);
        ip += 1;
        if ctrl < 32 {
            // A literal run of ctrl + 1 bytes.
            let len = ctrl + 1;
            let run = input.get(ip..ip + len).ok_or(LzfError::Corrupt { at })?;
            if out.len() + len > expected {
                return Err(LzfError::Corrupt { at });
            }
            out.extend_from_slice(run);
            ip += len;
        } else {
            // A back reference: length in the top 3 bits (7 = one more length byte), distance
            // in the low 5 bits and the next byte.
            let mut len = ctrl >> 5;
            if len == 7 {
                len += usize::from(*input.get(ip).ok_or(LzfError::Corrupt { at })?);
                ip += 1;
            }
            let low = usize::from(*input.get(ip).ok_or(LzfError::Corrupt { at })?);
            ip += 1;
            let distance = ((ctrl & 0x1f) << 8) + low + 1;
            len += 2;
            let start = out
                .len()
                .checked_sub(distance)
                .ok_or(LzfError::Corrupt { at })?;
            if out.len() + len > expected {
                return Err(LzfError::Corrupt { at });
            }
            // Byte by byte: the reference may overlap what it produces (runs).
            for i in 0..len {
                let byte = out[start + i];
                out.push(byte);
            }
        }
    }
    if out.len() != expected {
        return Err(LzfError::Length {
            expected,
            got: out.len(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{LzfError, decompress};

    #[test]
    fn literal_runs_and_back_references() {
        // "aaaaaaaaaa": literal "a", then a reference of length 9 at distance 1.
        // ctrl = (len-2 = 7 -> 7 + extra 0) ... use len 9: 9-2 = 7 => top bits 7, extra byte 0.
        let data = [0x00, b'a', 0xe0, 0x00, 0x00];
        assert_eq!(decompress(&data, 10).expect("valid"), b"aaaaaaaaaa");
        // "abcabcabc": literal "abc", reference length 6 (ctrl top bits 4) at distance 3.
        let data = [0x02, b'a', b'b', b'c', 0x80, 0x02];
        assert_eq!(decompress(&data, 9).expect("valid"), b"abcabcabc");
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        // Reference before the start of the output.
        assert_eq!(
            decompress(&[0x20, 0x05], 3),
            Err(LzfError::Corrupt { at: 0 })
        );
        // Literal run longer than the input.
        assert_eq!(
            decompress(&[0x05, b'a'], 6),
            Err(LzfError::Corrupt { at: 0 })
        );
        // Output longer than announced.
        assert_eq!(
            decompress(&[0x01, b'a', b'b'], 1),
            Err(LzfError::Corrupt { at: 0 })
        );
        // Shorter than announced.
        assert_eq!(
            decompress(&[0x00, b'a'], 2),
            Err(LzfError::Length {
                expected: 2,
                got: 1
            })
        );
        // Truncated reference.
        assert_eq!(
            decompress(&[0x00, b'a', 0xe0], 10),
            Err(LzfError::Corrupt { at: 2 })
        );
    }
}
