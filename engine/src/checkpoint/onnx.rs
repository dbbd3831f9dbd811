//! A minimal ONNX (protobuf) reader: the graph's nodes (name, op type, inputs, outputs) and its initialisers
//! as f32 host tensors. Enough to lift weights out of exported models; it runs nothing.

use std::collections::BTreeMap;

use crate::error::{EngineError, Result};
use crate::tensor_file::RawTensor;

/// One graph node.
#[derive(Clone, Debug, Default)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

/// Nodes in graph order and initialisers by name.
#[derive(Debug, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub initializers: BTreeMap<String, RawTensor>,
}

fn err(m: impl Into<String>) -> EngineError {
    EngineError::Checkpoint(format!("onnx: {}", m.into()))
}

struct Reader<'a> {
    b: &'a [u8],
    p: usize,
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
    Fixed64,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Self {
        Self { b, p: 0 }
    }
    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.p).ok_or_else(|| err("truncated varint"))?;
            self.p += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(err("varint too long"))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.p.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| err("truncated field"))?;
        let s = &self.b[self.p..end];
        self.p = end;
        Ok(s)
    }
    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>> {
        if self.p >= self.b.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let f = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let n = self.varint()? as usize;
                Field::Bytes(self.take(n)?)
            }
            5 => Field::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().expect("4"))),
            w => return Err(err(format!("unsupported wire type {w}"))),
        };
        Ok(Some((key >> 3, f)))
    }
}

fn string(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn parse_node(b: &[u8]) -> Result<Node> {
    let mut n = Node::default();
    let mut r = Reader::new(b);
    while let Some((tag, f)) = r.next()? {
        if let Field::Bytes(s) = f {
            match tag {
                1 => n.inputs.push(string(s)),
                2 => n.outputs.push(string(s)),
                3 => n.name = string(s),
                4 => n.op_type = string(s),
                _ => {}
            }
        }
    }
    Ok(n)
}

fn parse_tensor(b: &[u8]) -> Result<(String, RawTensor)> {
    let mut r = Reader::new(b);
    let (mut name, mut dims, mut dtype, mut raw, mut floats) = (String::new(), Vec::new(), 0u64, None, Vec::new());
    while let Some((tag, f)) = r.next()? {
        match (tag, f) {
            (1, Field::Varint(v)) => dims.push(v as usize),
            (1, Field::Bytes(s)) => {
                let mut p = Reader::new(s);
                while p.p < s.len() {
                    dims.push(p.varint()? as usize);
                }
            }
            (2, Field::Varint(v)) => dtype = v,
            (4, Field::Bytes(s)) => {
                floats.extend(s.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4"))))
            }
            (4, Field::Fixed32(v)) => floats.push(f32::from_bits(v)),
            (8, Field::Bytes(s)) => name = string(s),
            (9, Field::Bytes(s)) => raw = Some(s),
            (14, Field::Varint(1)) => return Err(err(format!("{name}: external data is not supported"))),
            _ => {}
        }
    }
    let data = match (dtype, raw) {
        (1, Some(s)) => s.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4"))).collect(),
        (1, None) => floats,
        (10, Some(s)) => s.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        (11, Some(s)) => s.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8")) as f32).collect(),
        (7, Some(s)) => s.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8")) as f32).collect(),
        (6, Some(s)) => s.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4")) as f32).collect(),
        _ => Vec::new(), // other types (and typed non-float fields) are not weights we need
    };
    // a shape whose product overflows cannot match the data
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if n != Some(data.len()) {
        return Ok((name, RawTensor { shape: vec![0], data: Vec::new() }));
    }
    Ok((name, RawTensor { shape: dims, data }))
}

/// Parse an ONNX model file's bytes.
pub fn read_onnx(bytes: &[u8]) -> Result<Graph> {
    let mut r = Reader::new(bytes);
    let mut graph_bytes = None;
    while let Some((tag, f)) = r.next()? {
        if let (7, Field::Bytes(s)) = (tag, f) {
            graph_bytes = Some(s);
        }
    }
    let gb = graph_bytes.ok_or_else(|| err("no graph in model (not an ONNX file?)"))?;
    let mut g = Graph::default();
    let mut r = Reader::new(gb);
    while let Some((tag, f)) = r.next()? {
        match (tag, f) {
            (1, Field::Bytes(s)) => g.nodes.push(parse_node(s)?),
            (5, Field::Bytes(s)) => {
                let (name, t) = parse_tensor(s)?;
                if !t.data.is_empty() {
                    g.initializers.insert(name, t);
                }
            }
            _ => {}
        }
    }
    Ok(g)
}
