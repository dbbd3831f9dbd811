//! The tEXt chunks of a PNG, read by hand (the tests check what the CLI writes without trusting a PNG library).

use std::path::Path;

/// The tEXt chunks of a PNG (keyword, text), read from the chunk layout directly.
pub fn png_text(path: &Path) -> Vec<(String, String)> {
    let b = std::fs::read(path).expect("png");
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n");
    let (mut i, mut out) = (8, Vec::new());
    while i + 8 <= b.len() {
        let len = u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let kind = &b[i + 4..i + 8];
        let data = &b[i + 8..i + 8 + len];
        if kind == b"tEXt" {
            let z = data.iter().position(|&c| c == 0).expect("keyword terminator");
            let latin1 = |s: &[u8]| s.iter().map(|&c| c as char).collect::<String>();
            out.push((latin1(&data[..z]), latin1(&data[z + 1..])));
        }
        i += 12 + len;
    }
    out
}
