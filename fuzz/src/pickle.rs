//! Pickle mutations (opcodes, lengths, dangerous callables, nesting, memo bombs) and the pickle target.

use crate::harness::Target;
use crate::mutate::{Rng, interesting, mutate_bytes};
use crate::torch_zip::{torch_zip, unzip_all};
use crate::{MIB, read};

/// Argument layout of a pickle opcode: bytes of its argument, or a length prefix, or a newline-terminated line.
pub(super) fn pickle_arg(op: u8) -> Option<PickleArg> {
    use PickleArg::*;
    Some(match op {
        b'(' | b'.' | b'0' | b'1' | b'2' | b'a' | b'b' | b'd' | b'e' | b'l' | b'N' | b'o' | b'Q' | b'R' | b's'
        | b't' | b'u' | b'}' | b']' | b')' | 0x81 | 0x85 | 0x86 | 0x87 | 0x88 | 0x89 | 0x91 | 0x92 | 0x93 | 0x94
        | 0x97 | 0x98 | 0x90 => Fixed(0),
        b'K' | b'h' | b'q' | 0x80 => Fixed(1),
        b'M' => Fixed(2),
        b'J' | b'j' | b'r' => Fixed(4),
        b'G' | 0x95 => Fixed(8),
        0x8c | b'C' | b'U' | 0x8a => Len1,
        b'X' | b'B' | b'T' | 0x8b => Len4,
        0x8d | 0x8e | 0x96 => Len8,
        b'c' | b'i' => Lines(2),
        b'I' | b'L' | b'F' | b'S' | b'V' | b'P' | b'g' | b'p' => Lines(1),
        _ => return None,
    })
}

#[derive(Clone, Copy)]
pub(super) enum PickleArg {
    Fixed(usize),
    Len1,
    Len4,
    Len8,
    Lines(usize),
}

/// Split a pickle stream into opcodes (each with its argument bytes); stops at the first unknown opcode.
pub fn pickle_ops(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut p = 0;
    while p < b.len() {
        let Some(a) = pickle_arg(b[p]) else { break };
        let start = p;
        p += 1;
        let len = match a {
            PickleArg::Fixed(n) => n,
            PickleArg::Len1 => b.get(p).map(|&n| 1 + n as usize).unwrap_or(1),
            PickleArg::Len4 => {
                b.get(p..p + 4).map(|s| 4 + u32::from_le_bytes(s.try_into().expect("4")) as usize).unwrap_or(4)
            }
            PickleArg::Len8 => b
                .get(p..p + 8)
                .map(|s| 8usize.saturating_add(u64::from_le_bytes(s.try_into().expect("8")) as usize))
                .unwrap_or(8),
            PickleArg::Lines(k) => {
                let mut q = p;
                for _ in 0..k {
                    while q < b.len() && b[q] != b'\n' {
                        q += 1;
                    }
                    q += 1;
                }
                q - p
            }
        };
        p = p.saturating_add(len).min(b.len());
        out.push((start, p));
        if b[start] == b'.' {
            break;
        }
    }
    out
}

/// Pickle fragments an attacker would write, and structure that stresses the machine.
pub(super) fn pickle_fragment(r: &mut Rng) -> Vec<u8> {
    let callables: [(&str, &str); 8] = [
        ("os", "system"),
        ("posix", "system"),
        ("subprocess", "Popen"),
        ("subprocess", "check_output"),
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("__builtin__", "eval"),
        ("builtins", "__import__"),
    ];
    let (m, n) = *r.pick(&callables);
    let cmd = b"touch /tmp/dino-sae-pwned";
    let mut f = Vec::new();
    match r.below(10) {
        0 => {
            // GLOBAL + REDUCE
            f.extend(format!("c{m}\n{n}\n").bytes());
            f.push(b'(');
            f.push(0x8c);
            f.push(cmd.len() as u8);
            f.extend(cmd);
            f.extend(b"tR");
        }
        1 => {
            // STACK_GLOBAL + NEWOBJ + BUILD
            for s in [m, n] {
                f.push(0x8c);
                f.push(s.len() as u8);
                f.extend(s.bytes());
            }
            f.push(0x93);
            f.extend(b")\x81}b");
        }
        2 => {
            // INST
            f.extend(format!("(i{m}\n{n}\n").bytes());
        }
        3 => {
            // deep nesting: ]]]...aaa
            let k = 1 + r.below(20000);
            f.extend(std::iter::repeat_n(b']', k));
            f.extend(std::iter::repeat_n(b'a', k - 1));
        }
        4 => {
            // a memo bomb: x = [x, x] thirty times
            f.extend(b"]\x94");
            for i in 0..30u32 {
                f.push(b'j');
                f.extend(i.to_le_bytes());
                f.push(b'j');
                f.extend(i.to_le_bytes());
                f.push(0x86);
                f.push(0x94);
            }
        }
        5 => {
            // marks without ends, tuples of everything
            f.extend(std::iter::repeat_n(b'(', 1 + r.below(1000)));
            f.push(b't');
        }
        6 => {
            // a length that claims more than there is
            f.push(*r.pick(&[b'X', b'B', 0x8d, 0x8e, 0x96]));
            f.extend(interesting(r).to_le_bytes());
        }
        7 => {
            // a persistent id with a huge / odd storage
            f.extend(b"(\x8c\x07storagectorch\nFloatStorage\n\x8c\x010\x8c\x03cpu");
            f.push(0x8a);
            f.push(8);
            f.extend(interesting(r).to_le_bytes());
            f.extend(b"tQ");
        }
        8 => {
            // _rebuild_tensor_v2 with boundary sizes / strides
            f.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
            f.extend(b"(\x8c\x07storagectorch\nFloatStorage\n\x8c\x010\x8c\x03cpuK\x04tQ");
            f.extend(b"K\x00(");
            for _ in 0..1 + r.below(3) {
                f.push(0x8a);
                f.push(8);
                f.extend(interesting(r).to_le_bytes());
            }
            f.extend(b"t(K\x01tK\x00\x89tR");
        }
        _ => {
            f.push(*r.pick(&[
                b'h', b'j', b'g', b'p', b'I', b'L', b'F', b'S', b'V', 0x8a, 0x8b, b'0', b'1', b'2', 0x97, 0x98, 0x91,
                0x92,
            ]));
            f.extend((0..r.below(9)).map(|_| r.next_u64() as u8));
            if r.chance(0.5) {
                f.push(b'\n');
            }
        }
    }
    f
}

/// Opcode-aware pickle mutation: insert attack fragments, rewrite an integer or a length, delete / duplicate /
/// swap opcodes, change the protocol; else byte-level.
pub fn mutate_pickle(r: &mut Rng, data: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let ops = pickle_ops(data);
    if ops.is_empty() || r.chance(0.2) {
        return mutate_bytes(r, data, seeds);
    }
    let mut d = data.to_vec();
    let (s, e) = *r.pick(&ops);
    match r.below(7) {
        0 | 1 => {
            let f = pickle_fragment(r);
            let at = if r.chance(0.5) { s } else { e };
            d.splice(at..at, f);
        }
        2 => {
            // rewrite the argument bytes with a boundary integer
            if e > s + 1 {
                let v = interesting(r).to_le_bytes();
                for (k, b) in (s + 1..e).zip(v.iter().cycle()) {
                    d[k] = *b;
                }
            }
        }
        3 => {
            d.drain(s..e);
        }
        4 => {
            let piece = d[s..e].to_vec();
            for _ in 0..1 + r.below(4) {
                d.splice(e..e, piece.iter().copied());
            }
        }
        5 => {
            if d.len() >= 2 && d[0] == 0x80 {
                d[1] = r.below(7) as u8;
            }
        }
        _ => {
            let (s2, e2) = *r.pick(&ops);
            if s2 >= e {
                let a = d[s..e].to_vec();
                let b = d[s2..e2].to_vec();
                d.splice(s2..e2, a);
                d.splice(s..e, b);
            }
        }
    }
    d
}

pub(super) fn first_pickle(zip: &[u8]) -> Vec<u8> {
    unzip_all(zip)
        .and_then(|e| e.into_iter().find(|(n, _)| n.ends_with("data.pkl")).map(|(_, b)| b))
        .unwrap_or_default()
}

pub(super) fn pickle_target() -> Target {
    let fixture = first_pickle(&read("tests/fixtures/dinosae-setA/dinov3/official/model.pth"));
    let mut seeds = vec![fixture];
    for proto in [2u8, 4, 5] {
        seeds.push(first_pickle(&torch_zip(
            &[("a.weight", vec![2, 3], vec![1.0; 6]), ("b", vec![3], vec![2.0; 3])],
            proto,
        )));
    }
    // protocol 2 pickle of plain data: a dict of a list (int, float, None, bools, bytes, a LONG1), memo reuse
    seeds.push(b"\x80\x02}q\x00(X\x03\x00\x00\x00keyq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00N\x88\x89C\x02abM\x00\x01\x8a\x02\xff\x7feh\x01h\x02u.".to_vec());
    Target {
        name: "pickle",
        seeds: seeds.into_iter().filter(|s| !s.is_empty()).collect(),
        mutate: Box::new(mutate_pickle),
        run: Box::new(|b| engine::checkpoint::pickle::unpickle(b).map(|_| ())),
        cap: |n| 64 * MIB + 64 * n,
    }
}
