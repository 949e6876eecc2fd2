//! The mutation engine: a small, fast PRNG and byte/line/token mutations of corpus inputs,
//! stacked a few at a time, with splicing between inputs and a per-target dictionary of
//! protocol tokens (`a=candidate:`, `m=audio`, JSON keys, RIFF chunk ids, ...).

/// SplitMix64: tiny, fast, good enough for choosing mutations; seeded for reproducible runs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability 1/n.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// A length biased towards small values: mostly 1-8, sometimes up to `max`.
    pub fn small_len(&mut self, max: usize) -> usize {
        let max = max.max(1);
        if self.one_in(8) {
            1 + self.below(max)
        } else {
            1 + self.below(max.min(8))
        }
    }
}

/// Bytes that often sit on a parser's edge.
const INTERESTING_BYTES: [u8; 16] = [
    0, 1, 0x7f, 0x80, 0xff, b' ', b'\r', b'\n', b'\t', b':', b'=', b'/', b'"', b'\\', b'{', b'}',
];

/// Numbers as text that often sit on a parser's edge.
const INTERESTING_NUMBERS: [&str; 24] = [
    "0",
    "-0",
    "1",
    "-1",
    "127",
    "128",
    "255",
    "256",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "1e309",
    "-1e309",
    "1.5",
    "NaN",
    "999999999999999999999999999999",
    "0x10",
];

/// 32-bit values for binary formats (sizes, rates, counts).
const INTERESTING_U32: [u32; 14] = [
    0,
    1,
    2,
    8,
    16,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0x8000,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];

/// Mutates corpus inputs for one target.
pub struct Mutator<'a> {
    pub rng: Rng,
    dict: &'a [&'a [u8]],
    max_len: usize,
}

impl<'a> Mutator<'a> {
    pub fn new(seed: u64, dict: &'a [&'a [u8]], max_len: usize) -> Self {
        Mutator {
            rng: Rng::new(seed),
            dict,
            max_len: max_len.max(1),
        }
    }

    /// A new input from `base`: 1 to 8 stacked mutations, `other` available for splicing.
    pub fn mutate(&mut self, base: &[u8], other: &[u8]) -> Vec<u8> {
        let mut data = base.to_vec();
        let most = if self.rng.one_in(4) { 16 } else { 4 };
        let rounds = 1 + self.rng.below(most);
        for _ in 0..rounds {
            self.mutate_once(&mut data, other);
        }
        data.truncate(self.max_len);
        data
    }

    fn token(&mut self) -> &'a [u8] {
        if self.dict.is_empty() || self.rng.one_in(4) {
            let n = INTERESTING_NUMBERS[self.rng.below(INTERESTING_NUMBERS.len())];
            n.as_bytes()
        } else {
            self.dict[self.rng.below(self.dict.len())]
        }
    }

    fn pos(&mut self, data: &[u8]) -> usize {
        self.rng.below(data.len() + 1)
    }

    fn mutate_once(&mut self, data: &mut Vec<u8>, other: &[u8]) {
        let r = &mut self.rng;
        match r.below(20) {
            // Bit flip.
            0 if !data.is_empty() => {
                let i = r.below(data.len());
                data[i] ^= 1 << r.below(8);
            }
            // Random byte.
            1 if !data.is_empty() => {
                let i = r.below(data.len());
                data[i] = r.next_u64() as u8;
            }
            // Interesting byte, overwritten or inserted.
            2 => {
                let b = INTERESTING_BYTES[r.below(INTERESTING_BYTES.len())];
                if !data.is_empty() && r.one_in(2) {
                    let i = r.below(data.len());
                    data[i] = b;
                } else {
                    let i = self.pos(data);
                    data.insert(i, b);
                }
            }
            // Small arithmetic on a byte.
            3 if !data.is_empty() => {
                let i = r.below(data.len());
                let d = 1 + r.below(35) as u8;
                data[i] = if r.one_in(2) {
                    data[i].wrapping_add(d)
                } else {
                    data[i].wrapping_sub(d)
                };
            }
            // Insert random bytes.
            4 => {
                let n = r.small_len(32);
                let i = self.pos(data);
                let bytes: Vec<u8> = (0..n).map(|_| self.rng.next_u64() as u8).collect();
                data.splice(i..i, bytes);
            }
            // Delete a range.
            5 if !data.is_empty() => {
                let i = r.below(data.len());
                let n = r.small_len(data.len() - i);
                data.drain(i..i + n.min(data.len() - i));
            }
            // Duplicate a range elsewhere.
            6 if !data.is_empty() => {
                let i = r.below(data.len());
                let n = r.small_len(64).min(data.len() - i);
                let chunk = data[i..i + n].to_vec();
                let j = self.pos(data);
                data.splice(j..j, chunk);
            }
            // Insert a dictionary token.
            7 | 8 => {
                let t = self.token();
                let i = self.pos(data);
                data.splice(i..i, t.iter().copied());
            }
            // Overwrite with a dictionary token.
            9 if !data.is_empty() => {
                let t = self.token();
                let i = self.rng.below(data.len());
                let end = (i + t.len()).min(data.len());
                data.splice(i..end, t.iter().copied());
            }
            // Insert a token at a line start (for line-based formats).
            10 => {
                let t = self.token();
                let starts = line_starts(data);
                let i = starts[self.rng.below(starts.len())];
                data.splice(i..i, t.iter().copied());
            }
            // Delete, duplicate or swap whole lines.
            11 => {
                let lines = split_lines(data);
                if lines.is_empty() {
                    return;
                }
                let mut lines: Vec<Vec<u8>> = lines.into_iter().map(<[u8]>::to_vec).collect();
                let i = self.rng.below(lines.len());
                match self.rng.below(3) {
                    0 => {
                        lines.remove(i);
                    }
                    1 => {
                        let l = lines[i].clone();
                        lines.insert(self.rng.below(lines.len() + 1), l);
                    }
                    _ => {
                        let j = self.rng.below(lines.len());
                        lines.swap(i, j);
                    }
                }
                *data = lines.concat();
            }
            // Splice with another input: prefix of this one, suffix of the other.
            12 if !other.is_empty() => {
                let i = self.pos(data);
                let j = self.rng.below(other.len());
                data.truncate(i);
                data.extend_from_slice(&other[j..]);
            }
            // A line of the other input inserted at a line start.
            13 if !other.is_empty() => {
                let lines = split_lines(other);
                let l = lines[self.rng.below(lines.len())].to_vec();
                let starts = line_starts(data);
                let i = starts[self.rng.below(starts.len())];
                data.splice(i..i, l);
            }
            // Repeat a chunk many times (finds quadratic behaviour and missing limits).
            14 if !data.is_empty() => {
                let i = r.below(data.len());
                let n = r.small_len(32).min(data.len() - i);
                let times = if r.one_in(4) {
                    1 + r.below(2000)
                } else {
                    2 + r.below(16)
                };
                let chunk = data[i..i + n].to_vec();
                let room = self.max_len.saturating_sub(data.len()) / n.max(1);
                let times = times.min(room);
                let mut rep = Vec::with_capacity(n * times);
                for _ in 0..times {
                    rep.extend_from_slice(&chunk);
                }
                data.splice(i..i, rep);
            }
            // Replace an ASCII number with an interesting one.
            15 => {
                let runs = digit_runs(data);
                if runs.is_empty() {
                    return;
                }
                let (s, e) = runs[r.below(runs.len())];
                let n = INTERESTING_NUMBERS[r.below(INTERESTING_NUMBERS.len())];
                data.splice(s..e, n.bytes());
            }
            // Binary integer (16 or 32 bit, either byte order) at a random offset.
            16 if data.len() >= 4 => {
                let v = if r.one_in(3) {
                    r.next_u64() as u32
                } else {
                    INTERESTING_U32[r.below(INTERESTING_U32.len())]
                };
                let wide = r.one_in(2);
                let be = r.one_in(4);
                let bytes: Vec<u8> = match (wide, be) {
                    (true, false) => v.to_le_bytes().to_vec(),
                    (true, true) => v.to_be_bytes().to_vec(),
                    (false, false) => (v as u16).to_le_bytes().to_vec(),
                    (false, true) => (v as u16).to_be_bytes().to_vec(),
                };
                let i = r.below(data.len() - bytes.len() + 1);
                data[i..i + bytes.len()].copy_from_slice(&bytes);
            }
            // Truncate.
            17 if !data.is_empty() => {
                let i = r.below(data.len());
                data.truncate(i);
            }
            // Flip ASCII case of a byte.
            18 if !data.is_empty() => {
                let i = r.below(data.len());
                if data[i].is_ascii_alphabetic() {
                    data[i] ^= 0x20;
                }
            }
            // Line endings: CRLF <-> LF, or a stray CR.
            19 => {
                let ending: &[u8] = match r.below(3) {
                    0 => b"\r\n",
                    1 => b"\n",
                    _ => b"\r",
                };
                let i = self.pos(data);
                data.splice(i..i, ending.iter().copied());
            }
            _ => {}
        }
    }
}

/// Offsets where lines start (always includes 0 and the end).
fn line_starts(data: &[u8]) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(
        data.iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .map(|(i, _)| i + 1),
    );
    if *v.last().unwrap_or(&0) != data.len() {
        v.push(data.len());
    }
    v
}

/// Lines including their `\n`.
fn split_lines(data: &[u8]) -> Vec<&[u8]> {
    data.split_inclusive(|&b| b == b'\n').collect()
}

/// `(start, end)` of each run of ASCII digits.
fn digit_runs(data: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, b) in data.iter().enumerate() {
        match (b.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, data.len()));
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_within_the_length_limit_and_are_reproducible() {
        let dict: &[&[u8]] = &[b"a=candidate:", b"m=audio"];
        let base = b"v=0\r\nm=audio 9 UDP 111\r\na=rtpmap:111 opus/48000/2\r\n";
        let mut a = Mutator::new(7, dict, 256);
        let mut b = Mutator::new(7, dict, 256);
        let mut changed = 0;
        for _ in 0..20_000 {
            let x = a.mutate(base, b"other\ninput 12\n");
            assert!(x.len() <= 256);
            assert_eq!(x, b.mutate(base, b"other\ninput 12\n"));
            changed += usize::from(x != base);
        }
        assert!(changed > 15_000, "{changed} of 20000 changed");
        // Empty inputs are fine too.
        for _ in 0..1000 {
            assert!(a.mutate(b"", b"").len() <= 256);
        }
    }
}
