//! A data-only reader for PyTorch's zip checkpoints (`torch.save`, pickle protocol 2+).
//!
//! The pickle stream is interpreted by a small stack machine that only builds values: globals are recorded
//! as names and never imported or called. `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter` and
//! `collections.OrderedDict` are recognised by name; anything else becomes an opaque value. Untrusted
//! files therefore cannot execute code.

use std::collections::HashMap;
use std::io::Read;

use crate::error::{EngineError, Result};
use crate::raw::{RawTensor, TensorMap};

/// A value of the pickle machine.
#[derive(Clone, Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    /// A call we do not interpret: callable and arguments.
    Opaque(Box<Value>, Box<Value>),
    /// Persistent id of a storage: (dtype name, key, numel)
    Storage { dtype: String, key: String },
    Tensor { storage: Box<Value>, offset: usize, size: Vec<usize>, stride: Vec<usize> },
    Mark,
}

fn err(m: impl Into<String>) -> EngineError {
    EngineError::Checkpoint(format!("torch pickle: {}", m.into()))
}

fn as_usize_list(v: &Value) -> Result<Vec<usize>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|x| match x {
                Value::Int(i) if *i >= 0 => Ok(*i as usize),
                other => Err(err(format!("expected a non-negative int, got {other:?}"))),
            })
            .collect(),
        other => Err(err(format!("expected a tuple of ints, got {other:?}"))),
    }
}

fn call(func: Value, args: Value) -> Result<Value> {
    if let Value::Global(m, n) = &func {
        match (m.as_str(), n.as_str()) {
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                let Value::Tuple(a) = args else { return Err(err("bad _rebuild_tensor args")) };
                if a.len() < 4 {
                    return Err(err("short _rebuild_tensor args"));
                }
                let offset = match &a[1] {
                    Value::Int(i) if *i >= 0 => *i as usize,
                    _ => return Err(err("bad storage offset")),
                };
                return Ok(Value::Tensor {
                    storage: Box::new(a[0].clone()),
                    offset,
                    size: as_usize_list(&a[2])?,
                    stride: as_usize_list(&a[3])?,
                });
            }
            ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
                if let Value::Tuple(a) = args {
                    if let Some(t) = a.into_iter().next() {
                        return Ok(t);
                    }
                }
                return Err(err("bad _rebuild_parameter args"));
            }
            ("collections", "OrderedDict") | ("builtins", "dict") => return Ok(Value::Dict(Vec::new())),
            _ => {}
        }
    }
    Ok(Value::Opaque(Box::new(func), Box::new(args)))
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u64, Value>,
}

impl<'a> Machine<'a> {
    fn byte(&mut self) -> Result<u8> {
        let b = *self.data.get(self.pos).ok_or_else(|| err("truncated stream"))?;
        self.pos += 1;
        Ok(b)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(|| err("length overflow"))?;
        let s = self.data.get(self.pos..end).ok_or_else(|| err("truncated stream"))?;
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn line(&mut self) -> Result<String> {
        let start = self.pos;
        while self.byte()? != b'\n' {}
        Ok(String::from_utf8_lossy(&self.data[start..self.pos - 1]).to_string())
    }
    fn pop(&mut self) -> Result<Value> {
        self.stack.pop().ok_or_else(|| err("stack underflow"))
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let pos = self.stack.iter().rposition(|v| matches!(v, Value::Mark)).ok_or_else(|| err("no mark"))?;
        let items = self.stack.split_off(pos + 1);
        self.stack.pop();
        Ok(items)
    }
    fn top_mut(&mut self) -> Result<&mut Value> {
        self.stack.last_mut().ok_or_else(|| err("stack underflow"))
    }

    fn run(mut self) -> Result<Value> {
        loop {
            let op = self.byte()?;
            match op {
                0x80 => {
                    self.byte()?;
                } // PROTO
                0x95 => {
                    self.take(8)?;
                } // FRAME
                b'.' => return self.pop(),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b'(' => self.stack.push(Value::Mark),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.byte()? as i64;
                    self.stack.push(Value::Int(v));
                }
                b'M' => {
                    let b = self.take(2)?;
                    self.stack.push(Value::Int(u16::from_le_bytes([b[0], b[1]]) as i64));
                }
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.stack.push(Value::Int(v));
                }
                0x8a => {
                    // LONG1
                    let n = self.byte()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err(err("integer too large"));
                    }
                    let mut v: i64 = 0;
                    for (i, &x) in b.iter().enumerate() {
                        v |= (x as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(v));
                }
                b'G' => {
                    let b = self.take(8)?;
                    self.stack.push(Value::Float(f64::from_be_bytes(b.try_into().expect("8"))));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).to_string();
                    self.stack.push(Value::Str(s));
                }
                0x8c => {
                    let n = self.byte()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).to_string();
                    self.stack.push(Value::Str(s));
                }
                b'C' => {
                    let n = self.byte()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b));
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b));
                }
                b'c' => {
                    let m = self.line()?;
                    let n = self.line()?;
                    self.stack.push(Value::Global(m, n));
                }
                0x93 => {
                    let n = self.pop()?;
                    let m = self.pop()?;
                    match (m, n) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => return Err(err("bad STACK_GLOBAL")),
                    }
                }
                b'q' => {
                    let i = self.byte()? as u64;
                    let v = self.top_mut()?.clone();
                    self.memo.insert(i, v);
                }
                b'r' => {
                    let i = self.u32()? as u64;
                    let v = self.top_mut()?.clone();
                    self.memo.insert(i, v);
                }
                0x94 => {
                    let i = self.memo.len() as u64;
                    let v = self.top_mut()?.clone();
                    self.memo.insert(i, v);
                }
                b'h' => {
                    let i = self.byte()? as u64;
                    let v = self.memo.get(&i).cloned().ok_or_else(|| err("bad memo get"))?;
                    self.stack.push(v);
                }
                b'j' => {
                    let i = self.u32()? as u64;
                    let v = self.memo.get(&i).cloned().ok_or_else(|| err("bad memo get"))?;
                    self.stack.push(v);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85 => {
                    let a = self.pop()?;
                    self.stack.push(Value::Tuple(vec![a]));
                }
                0x86 => {
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.stack.push(Value::Tuple(vec![a, b]));
                }
                0x87 => {
                    let c = self.pop()?;
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.stack.push(Value::Tuple(vec![a, b, c]));
                }
                b'a' => {
                    let v = self.pop()?;
                    if let Value::List(l) = self.top_mut()? {
                        l.push(v);
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    if let Value::List(l) = self.top_mut()? {
                        l.extend(items);
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    if let Value::Dict(d) = self.top_mut()? {
                        d.push((k, v));
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(err("odd SETITEMS"));
                    }
                    if let Value::Dict(d) = self.top_mut()? {
                        let mut it = items.into_iter();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            d.push((k, v));
                        }
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = call(f, args)?;
                    self.stack.push(v);
                }
                0x81 => {
                    // NEWOBJ
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let v = call(cls, args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    // BUILD: state is ignored (object attributes such as OrderedDict._metadata).
                    self.pop()?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let Value::Tuple(p) = pid else { return Err(err("bad persistent id")) };
                    // ('storage', storage_type, key, location, numel)
                    let (ty, key) = match (p.get(1), p.get(2)) {
                        (Some(Value::Global(_, n)), Some(Value::Str(k))) => (n.clone(), k.clone()),
                        _ => return Err(err("bad storage persistent id")),
                    };
                    self.stack.push(Value::Storage { dtype: ty, key });
                }
                other => return Err(err(format!("unsupported opcode 0x{other:02x} at byte {}", self.pos - 1))),
            }
        }
    }
}

/// Parse a pickle stream into a value (data only).
pub fn unpickle(data: &[u8]) -> Result<Value> {
    Machine { data, pos: 0, stack: Vec::new(), memo: HashMap::new() }.run()
}

fn element_size(dtype: &str) -> Result<(usize, fn(&[u8]) -> f32)> {
    fn f32le(b: &[u8]) -> f32 {
        f32::from_le_bytes(b.try_into().expect("4"))
    }
    fn f64le(b: &[u8]) -> f32 {
        f64::from_le_bytes(b.try_into().expect("8")) as f32
    }
    fn f16le(b: &[u8]) -> f32 {
        half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()
    }
    fn bf16le(b: &[u8]) -> f32 {
        half::bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()
    }
    fn i64le(b: &[u8]) -> f32 {
        i64::from_le_bytes(b.try_into().expect("8")) as f32
    }
    fn i32le(b: &[u8]) -> f32 {
        i32::from_le_bytes(b.try_into().expect("4")) as f32
    }
    fn u8v(b: &[u8]) -> f32 {
        b[0] as f32
    }
    Ok(match dtype {
        "FloatStorage" => (4, f32le),
        "DoubleStorage" => (8, f64le),
        "HalfStorage" => (2, f16le),
        "BFloat16Storage" => (2, bf16le),
        "LongStorage" => (8, i64le),
        "IntStorage" => (4, i32le),
        "ByteStorage" | "BoolStorage" => (1, u8v),
        other => return Err(err(format!("unsupported storage type {other}"))),
    })
}

/// Flatten nested dicts of tensors into `a.b.c` names. Non-tensor leaves are skipped.
fn flatten(v: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Dict(items) => {
            for (k, val) in items {
                let key = match k {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                let name = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
                flatten(val, &name, out);
            }
        }
        Value::Tensor { .. } => out.push((prefix.to_string(), v.clone())),
        _ => {}
    }
}

/// Read every tensor of a torch zip checkpoint (nested dicts flattened with `.`).
pub fn read_torch_zip(bytes: &[u8]) -> Result<TensorMap> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| EngineError::Checkpoint(format!("not a torch zip checkpoint ({e}); legacy (non-zip) .pth files are not supported")))?;
    let pkl_name = (0..zip.len())
        .filter_map(|i| zip.by_index(i).ok().map(|f| f.name().to_string()))
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| err("no data.pkl in archive"))?;
    let root = pkl_name.trim_end_matches("data.pkl").to_string();
    let mut pkl = Vec::new();
    zip.by_name(&pkl_name)
        .map_err(|e| err(e.to_string()))?
        .read_to_end(&mut pkl)
        .map_err(|e| err(e.to_string()))?;
    let value = unpickle(&pkl)?;
    let mut leaves = Vec::new();
    flatten(&value, "", &mut leaves);
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = TensorMap::new();
    for (name, t) in leaves {
        let Value::Tensor { storage, offset, size, stride } = t else { continue };
        let Value::Storage { dtype, key } = *storage else { return Err(err(format!("{name}: tensor without storage"))) };
        if !storages.contains_key(&key) {
            let mut buf = Vec::new();
            zip.by_name(&format!("{root}data/{key}"))
                .map_err(|e| err(format!("{name}: storage {key}: {e}")))?
                .read_to_end(&mut buf)
                .map_err(|e| err(format!("{name}: storage {key}: {e}")))?;
            storages.insert(key.clone(), buf);
        }
        let buf = &storages[&key];
        let (es, conv) = element_size(&dtype)?;
        let numel: usize = size.iter().product();
        if stride.len() != size.len() {
            return Err(err(format!("{name}: stride/size rank mismatch")));
        }
        let mut data = Vec::with_capacity(numel);
        let mut idx = vec![0usize; size.len()];
        for _ in 0..numel {
            let lin = offset + idx.iter().zip(&stride).map(|(i, s)| i * s).sum::<usize>();
            let b = buf
                .get(lin * es..(lin + 1) * es)
                .ok_or_else(|| err(format!("{name}: storage {key} too short (truncated file?)")))?;
            data.push(conv(b));
            for d in (0..size.len()).rev() {
                idx[d] += 1;
                if idx[d] < size[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        out.insert(name, RawTensor::new(size, data)?);
    }
    Ok(out)
}
