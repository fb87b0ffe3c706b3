//! Redis's CRC-64 (the "Jones" polynomial, reflected, initial value 0, no final xor): the
//! checksum at the end of an RDB file and of every `DUMP` payload (Redis's `src/crc64.c`).
//!
//! Computed slice-by-8 with tables built at compile time: every byte of a backup passes
//! through it twice (the file checksum and the payload checksum), so a bytewise loop would
//! cap the parse at a few hundred MB/s.

/// The Jones polynomial in normal form; the reflected algorithm uses its bit reversal.
const POLY: u64 = 0xad93_d235_94c9_35a9;

// A static, not a const: a const would be a fresh 16 KiB temporary at every use in debug builds.
static TABLES: [[u64; 256]; 8] = build_tables();

const fn build_tables() -> [[u64; 256]; 8] {
    let reflected = POLY.reverse_bits();
    let mut tables = [[0u64; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ reflected
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = tables[k - 1][i];
            tables[k][i] = (prev >> 8) ^ tables[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    tables
}

/// Continues the checksum `crc` over `data` (start with 0), like Redis's `crc64(crc, s, l)`.
pub fn crc64(mut crc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        crc ^= u64::from_le_bytes(word);
        crc = TABLES[7][(crc & 0xff) as usize]
            ^ TABLES[6][((crc >> 8) & 0xff) as usize]
            ^ TABLES[5][((crc >> 16) & 0xff) as usize]
            ^ TABLES[4][((crc >> 24) & 0xff) as usize]
            ^ TABLES[3][((crc >> 32) & 0xff) as usize]
            ^ TABLES[2][((crc >> 40) & 0xff) as usize]
            ^ TABLES[1][((crc >> 48) & 0xff) as usize]
            ^ TABLES[0][(crc >> 56) as usize];
    }
    for &byte in chunks.remainder() {
        crc = TABLES[0][((crc ^ u64::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::crc64;

    /// The bitwise definition, to check the tables against.
    fn crc64_bitwise(mut crc: u64, data: &[u8]) -> u64 {
        let reflected = super::POLY.reverse_bits();
        for &byte in data {
            crc ^= u64::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ reflected
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    #[test]
    fn redis_test_vectors() {
        // From the test in Redis's src/crc64.c.
        assert_eq!(crc64(0, b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        // The C test takes sizeof() of the array, so the terminating NUL is included.
        let li = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed \
            do eiusmod tempor incididunt ut labore et dolore magna \
            aliqua. Ut enim ad minim veniam, quis nostrud exercitation \
            ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis \
            aute irure dolor in reprehenderit in voluptate velit esse \
            cillum dolore eu fugiat nulla pariatur. Excepteur sint \
            occaecat cupidatat non proident, sunt in culpa qui officia \
            deserunt mollit anim id est laborum.\0";
        assert_eq!(crc64(0, li), 0xc779_4709_e696_83b3);
        assert_eq!(crc64(0, b""), 0);
    }

    #[test]
    fn slice_by_8_matches_bitwise_and_is_incremental() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 100, 1000] {
            assert_eq!(
                crc64(0, &data[..len]),
                crc64_bitwise(0, &data[..len]),
                "len {len}"
            );
        }
        for split in [0, 1, 5, 8, 333, 999, 1000] {
            let (a, b) = data.split_at(split);
            assert_eq!(crc64(crc64(0, a), b), crc64(0, &data), "split {split}");
        }
    }
}
