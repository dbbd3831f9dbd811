//! Seeded random numbers, boundary integers and the byte-level mutations every target uses.

/// SplitMix64: small, seeded, reproducible.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when n == 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Integers that break length and shape arithmetic.
pub(super) const INTERESTING: [u64; 16] = [
    0,
    1,
    2,
    7,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    1 << 60,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

pub(super) fn interesting(r: &mut Rng) -> u64 {
    if r.chance(0.8) { *r.pick(&INTERESTING) } else { r.next_u64() >> r.below(64) }
}

/// One byte-level mutation: truncate, flip bits, set bytes, insert/delete/duplicate a range, overwrite an integer
/// with a boundary value (LE/BE, 1-8 bytes), or splice in a piece of another seed.
pub fn mutate_bytes(r: &mut Rng, data: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut d = data.to_vec();
    let rounds = 1 + r.below(4);
    for _ in 0..rounds {
        let n = d.len();
        match r.below(9) {
            0 => {
                let keep = if r.chance(0.5) { r.below(n + 1) } else { n.saturating_sub(1 + r.below(16)) };
                d.truncate(keep);
            }
            1 if n > 0 => {
                for _ in 0..1 + r.below(8) {
                    let i = r.below(n);
                    d[i] ^= 1 << r.below(8);
                }
            }
            2 if n > 0 => {
                let i = r.below(n);
                d[i] = r.next_u64() as u8;
            }
            3 => {
                let i = r.below(n + 1);
                let k = 1 + r.below(32);
                let ins: Vec<u8> = (0..k).map(|_| r.next_u64() as u8).collect();
                d.splice(i..i, ins);
            }
            4 if n > 0 => {
                let i = r.below(n);
                let k = 1 + r.below((n - i).min(256));
                d.drain(i..i + k);
            }
            5 if n > 0 => {
                let i = r.below(n);
                let k = 1 + r.below((n - i).min(256));
                let piece = d[i..i + k].to_vec();
                let at = r.below(n + 1);
                d.splice(at..at, piece);
            }
            6 if n > 0 => {
                let width = *r.pick(&[1usize, 2, 4, 8]);
                let i = r.below(n);
                let v = interesting(r);
                let bytes = if r.chance(0.5) { v.to_le_bytes() } else { v.to_be_bytes() };
                let src = if r.chance(0.5) { &bytes[..width] } else { &bytes[8 - width..] };
                for (k, b) in src.iter().enumerate() {
                    if i + k < d.len() {
                        d[i + k] = *b;
                    }
                }
            }
            7 if !seeds.is_empty() => {
                let other = r.pick(seeds);
                if !other.is_empty() {
                    let a = r.below(other.len());
                    let b = a + r.below((other.len() - a).min(4096) + 1);
                    let at = r.below(n + 1);
                    let cut = at + r.below(n - at + 1);
                    d.splice(at..cut, other[a..b].iter().copied());
                }
            }
            _ => {
                // a run of one byte (long strings, zero fills)
                let i = r.below(n + 1);
                let k = 1 + r.below(512);
                let b = r.next_u64() as u8;
                d.splice(i..i, std::iter::repeat_n(b, k));
            }
        }
    }
    d
}
