//! A zlib stream for a small git object, without the cost of a general compressor's reset.
//!
//! zlib-rs at level 1 (`deflate_quick`: greedy matches, the fixed Huffman code) clears its
//! 128 KiB hash table before every stream. A render stores ~320,000 objects of a few
//! hundred bytes each, and that clearing was more than half of the time spent compressing
//! them (perf, 10,000 clusters). This encoder makes the same kind of stream (greedy
//! matches, one block with the fixed code) with a hash table sized to the object, so that
//! clearing it costs about as much as reading the object. Larger objects, and those it
//! cannot shrink, go to zlib-rs. Any inflater reads the result (RFC 1950 and 1951); the
//! tests below inflate it with flate2: YAML, every length and distance code, random bytes.

/// Objects up to this size are compressed here; larger ones by zlib-rs, whose table clear
/// is then small beside the work.
const MAX_INPUT: usize = 16 * 1024;

const MIN_MATCH: usize = 4;
const MAX_MATCH: usize = 258;

/// The zlib stream of `data` appended to `out`, or `None` when `data` is larger than
/// `MAX_INPUT` (distances past 32 KiB would not fit deflate's window) or would not shrink
/// (incompressible content): the caller then uses zlib-rs. `table` is the caller's scratch
/// hash table, reused across calls.
pub fn compress_small(data: &[u8], table: &mut Vec<u32>, out: &mut Vec<u8>) -> Option<()> {
    if data.len() > MAX_INPUT {
        return None;
    }
    let start = out.len();
    // CMF 0x78 (deflate, 32 KiB window), FLG 0x01 (fastest; CMF·256+FLG divisible by 31).
    out.extend_from_slice(&[0x78, 0x01]);
    let mut bits = BitWriter { out, acc: 0, count: 0 };
    bits.put(0b011, 3); // the last block, fixed Huffman code
    let bits_log2 = (data.len().max(MIN_MATCH).next_power_of_two().trailing_zeros()).clamp(6, 14);
    table.clear();
    table.resize(1 << bits_log2, 0);
    let mut pos = 0;
    let mut literal_from = 0;
    while pos + MIN_MATCH <= data.len() {
        let word = u32::from_le_bytes(data[pos..pos + 4].try_into().expect("4 bytes"));
        let slot = (word.wrapping_mul(0x9E37_79B1) >> (32 - bits_log2)) as usize;
        // Positions are stored plus one, so that 0 means empty.
        let candidate = table[slot] as usize;
        table[slot] = pos as u32 + 1;
        if candidate > 0 && data[candidate - 1..candidate + 3] == data[pos..pos + 4] {
            let from = candidate - 1;
            let limit = (data.len() - pos).min(MAX_MATCH);
            let mut length = MIN_MATCH;
            while length < limit && data[from + length] == data[pos + length] {
                length += 1;
            }
            for &byte in &data[literal_from..pos] {
                bits.literal(byte);
            }
            bits.length(length);
            bits.distance(pos - from);
            pos += length;
            literal_from = pos;
        } else {
            pos += 1;
        }
    }
    for &byte in &data[literal_from..] {
        bits.literal(byte);
    }
    bits.put(0, 7); // end of block: symbol 256, code 0000000
    bits.flush();
    if out.len() - start + 4 > data.len() + 11 {
        // Stored blocks (what zlib falls back to) would be smaller.
        out.truncate(start);
        return None;
    }
    out.extend_from_slice(&zlib_rs::adler32::adler32(1, data).to_be_bytes());
    Some(())
}

/// Deflate's bits, least significant first; Huffman codes go in reversed.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    count: u32,
}

impl BitWriter<'_> {
    fn put(&mut self, value: u32, count: u32) {
        self.acc |= u64::from(value) << self.count;
        self.count += count;
        if self.count >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.count -= 32;
        }
    }

    fn flush(&mut self) {
        while self.count > 0 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.count = self.count.saturating_sub(8);
        }
    }

    /// A literal/length symbol in the fixed code (RFC 1951 3.2.6).
    fn symbol(&mut self, symbol: u32) {
        let (code, len) = match symbol {
            0..=143 => (0x30 + symbol, 8),
            144..=255 => (0x190 + symbol - 144, 9),
            256..=279 => (symbol - 256, 7),
            _ => (0xC0 + symbol - 280, 8),
        };
        self.put(code.reverse_bits() >> (32 - len), len);
    }

    fn literal(&mut self, byte: u8) {
        self.symbol(u32::from(byte));
    }

    /// A match length, 4..=258: its symbol (257..=285) and extra bits.
    fn length(&mut self, length: usize) {
        let x = (length - 3) as u32;
        if length == MAX_MATCH {
            self.symbol(285);
        } else if x < 8 {
            self.symbol(257 + x);
        } else {
            let n = 31 - x.leading_zeros(); // 3..=7
            self.symbol(257 + 4 * (n - 1) + ((x >> (n - 2)) & 3));
            self.put(x & ((1 << (n - 2)) - 1), n - 2);
        }
    }

    /// A distance, 1..=32768: its 5-bit code (0..=29) and extra bits.
    fn distance(&mut self, distance: usize) {
        let x = (distance - 1) as u32;
        let (code, extra) = if x < 4 {
            (x, 0)
        } else {
            let n = 31 - x.leading_zeros(); // 2..=14
            (2 * n + ((x >> (n - 1)) & 1), n - 1)
        };
        self.put(code.reverse_bits() >> 27, 5);
        if extra > 0 {
            self.put(x & ((1 << extra) - 1), extra);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn inflate(stream: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(stream)
            .read_to_end(&mut out)
            .expect("a valid zlib stream");
        out
    }

    fn round_trip(data: &[u8]) -> Option<usize> {
        let mut table = Vec::new();
        let mut out = vec![0xAA]; // appends after what is there
        compress_small(data, &mut table, &mut out)?;
        assert_eq!(out[0], 0xAA);
        assert_eq!(inflate(&out[1..]), data, "round trip of {} bytes", data.len());
        Some(out.len() - 1)
    }

    #[test]
    fn yaml_round_trips_and_shrinks() {
        let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: storefront\n  namespace: store\n  labels:\n    app.kubernetes.io/name: storefront\n    app.kubernetes.io/part-of: store\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: storefront\n";
        let size = round_trip(yaml.as_bytes()).expect("YAML compresses");
        assert!(size < yaml.len() * 3 / 4, "{size} of {}", yaml.len());
    }

    /// A stream of `prefix` as literals and one match, written by the bit writer alone (the
    /// matcher may pick another match), and the bytes it stands for.
    fn stream_with_match(prefix: &[u8], length: usize, distance: usize) -> (Vec<u8>, Vec<u8>) {
        let mut expected = prefix.to_vec();
        for _ in 0..length {
            expected.push(expected[expected.len() - distance]);
        }
        let mut out = vec![0x78, 0x01];
        let mut bits = BitWriter {
            out: &mut out,
            acc: 0,
            count: 0,
        };
        bits.put(0b011, 3);
        for &byte in prefix {
            bits.literal(byte);
        }
        bits.length(length);
        bits.distance(distance);
        bits.put(0, 7);
        bits.flush();
        out.extend_from_slice(&zlib_rs::adler32::adler32(1, &expected).to_be_bytes());
        (out, expected)
    }

    #[test]
    fn every_length_and_distance_code() {
        let prefix: Vec<u8> = (0..MAX_INPUT).map(|i| (i * 7 + i / 256) as u8).collect();
        for length in 4..=MAX_MATCH {
            let (stream, expected) = stream_with_match(&prefix[..16], length, 3);
            assert_eq!(inflate(&stream), expected, "length {length}");
        }
        // The first and last distance of every code an object of MAX_INPUT bytes can use
        // (codes 0 to 27: 1 to 16,384; codes 28 and 29 start past it).
        let firsts = [
            1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
            4097, 6145, 8193, 12289,
        ];
        let lasts = firsts[1..].iter().map(|next| next - 1).chain([MAX_INPUT]);
        for distance in firsts.into_iter().chain(lasts) {
            let (stream, expected) = stream_with_match(&prefix[..distance], 5, distance);
            assert_eq!(inflate(&stream), expected, "distance {distance}");
        }
    }

    #[test]
    fn matches_at_many_lengths_and_distances() {
        // Runs of every length up to past 258, at distances from 1 to 16 KiB.
        let mut data = Vec::new();
        let mut seed = 7u32;
        let mut noise = |n: usize, data: &mut Vec<u8>| {
            for _ in 0..n {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                data.push((seed >> 16) as u8);
            }
        };
        for length in (4..300).step_by(3) {
            noise(length, &mut data);
            let from = data.len() - length;
            data.extend_from_within(from..from + length);
        }
        data.truncate(MAX_INPUT - 300);
        let early = data[..200].to_vec();
        data.extend_from_slice(&early); // a distance near 16 KiB
        assert!(round_trip(&data).is_some());
        assert!(round_trip(&vec![b'a'; MAX_INPUT]).is_some()); // distance 1, length 258
        assert_eq!(
            round_trip(&vec![b'a'; MAX_INPUT + 1]),
            None,
            "larger objects go to zlib-rs"
        );
    }

    #[test]
    fn short_empty_and_incompressible_inputs() {
        for data in [&b""[..], b"a", b"abc", b"abcd", b"abcdabcd", b"\xff\x00\x90\x8f"] {
            let mut table = Vec::new();
            let mut out = Vec::new();
            if compress_small(data, &mut table, &mut out).is_some() {
                assert_eq!(inflate(&out), data);
            } else {
                assert!(out.is_empty(), "nothing is left behind when it gives up");
            }
        }
        // Random bytes do not shrink: the caller is told, and stores them with zlib-rs.
        let mut seed = 1u64;
        let random: Vec<u8> = (0..4096)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 32) as u8
            })
            .collect();
        assert_eq!(round_trip(&random), None);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_round_trip(data in proptest::collection::vec(proptest::sample::select(b"ab:- \n".to_vec()), 0..3000)) {
            // Bytes below 144 cost 8 bits as literals: these always fit.
            proptest::prop_assert!(round_trip(&data).is_some());
        }
    }
}
