//! A data-only reader for PyTorch's zip checkpoints (`torch.save`, pickle protocol 2+).
//!
//! The pickle stream is interpreted by a small stack machine that only builds values: globals are recorded
//! as names and never imported or called. `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter` and
//! `collections.OrderedDict` are recognised by name; anything else becomes an opaque value. Untrusted
//! files therefore cannot execute code.

use std::collections::HashMap;
use std::io::Read;

use crate::error::{EngineError, Result};
use crate::tensor_file::{RawTensor, TensorMap};

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
    Storage {
        dtype: String,
        key: String,
    },
    Tensor {
        storage: Box<Value>,
        offset: usize,
        size: Vec<usize>,
        stride: Vec<usize>,
    },
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
                if let Value::Tuple(a) = args
                    && let Some(t) = a.into_iter().next()
                {
                    return Ok(t);
                }
                return Err(err("bad _rebuild_parameter args"));
            }
            ("collections", "OrderedDict") | ("builtins", "dict") => return Ok(Value::Dict(Vec::new())),
            _ => {}
        }
    }
    Ok(Value::Opaque(Box::new(func), Box::new(args)))
}

/// Deepest nesting of containers a pickle may build (real checkpoints nest a handful of levels).
pub const MAX_DEPTH: u32 = 200;
/// Most values on the machine's stack at once (pickle batches SETITEMS / APPENDS by 1,000; real checkpoints stay
/// far below this).
pub const MAX_STACK: usize = 1 << 17;

/// A stack entry: the value, an upper bound of its nesting depth and of its size in bytes (both kept
/// incrementally, so nesting and memo copies are bounded without walking values).
#[derive(Clone)]
struct Slot {
    v: Value,
    depth: u32,
    size: usize,
}

fn leaf(v: Value) -> Slot {
    let size = 32
        + match &v {
            Value::Str(s) => s.len(),
            Value::Bytes(b) => b.len(),
            Value::Global(a, b) => a.len() + b.len(),
            _ => 0,
        };
    Slot { v, depth: 0, size }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Slot>,
    memo: HashMap<u64, Slot>,
    /// Bytes that memo copies may still create (a "billion laughs" pickle copies one value into itself).
    copy_budget: usize,
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
    fn push(&mut self, v: Value) -> Result<()> {
        if self.stack.len() >= MAX_STACK {
            return Err(err(format!("more than {MAX_STACK} values on the stack")));
        }
        self.stack.push(leaf(v));
        Ok(())
    }
    /// Push a container made of `parts` (depth and size from theirs).
    fn push_container(&mut self, v: Value, parts: &[(u32, usize)]) -> Result<()> {
        let depth = 1 + parts.iter().map(|p| p.0).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(err(format!("containers nested deeper than {MAX_DEPTH}")));
        }
        let size = parts.iter().fold(48usize, |a, p| a.saturating_add(p.1));
        self.stack.push(Slot { v, depth, size });
        Ok(())
    }
    fn pop_slot(&mut self) -> Result<Slot> {
        self.stack.pop().ok_or_else(|| err("stack underflow"))
    }
    fn pop(&mut self) -> Result<Value> {
        Ok(self.pop_slot()?.v)
    }
    fn pop_mark(&mut self) -> Result<Vec<Slot>> {
        let pos = self.stack.iter().rposition(|s| matches!(s.v, Value::Mark)).ok_or_else(|| err("no mark"))?;
        let items = self.stack.split_off(pos + 1);
        self.stack.pop();
        Ok(items)
    }
    fn top(&mut self) -> Result<&mut Slot> {
        self.stack.last_mut().ok_or_else(|| err("stack underflow"))
    }
    /// Grow the top container by `parts` (depth and size bounds updated; deeper than MAX_DEPTH is refused).
    fn grow_top(&mut self, parts: &[(u32, usize)]) -> Result<&mut Value> {
        let top = self.top()?;
        let d = 1 + parts.iter().map(|p| p.0).max().unwrap_or(0);
        if d > MAX_DEPTH {
            return Err(err(format!("containers nested deeper than {MAX_DEPTH}")));
        }
        top.depth = top.depth.max(d);
        top.size = parts.iter().fold(top.size, |a, p| a.saturating_add(p.1));
        Ok(&mut top.v)
    }
    fn memo_put(&mut self, i: u64) -> Result<()> {
        let s = self.top()?.clone_bounded()?;
        if s.size > self.copy_budget {
            return Err(err("memo copies grow beyond the file (a recursive 'billion laughs' pickle?)"));
        }
        self.copy_budget -= s.size;
        self.memo.insert(i, s);
        Ok(())
    }
    fn memo_get(&mut self, i: u64) -> Result<()> {
        let s = self.memo.get(&i).ok_or_else(|| err("bad memo get"))?;
        if s.size > self.copy_budget {
            return Err(err("memo copies grow beyond the file (a recursive 'billion laughs' pickle?)"));
        }
        self.copy_budget -= s.size;
        let s = s.clone();
        if self.stack.len() >= MAX_STACK {
            return Err(err(format!("more than {MAX_STACK} values on the stack")));
        }
        self.stack.push(s);
        Ok(())
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
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b']' => self.push(Value::List(Vec::new()))?,
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b'(' => self.push(Value::Mark)?,
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'K' => {
                    let v = self.byte()? as i64;
                    self.push(Value::Int(v))?;
                }
                b'M' => {
                    let b = self.take(2)?;
                    self.push(Value::Int(u16::from_le_bytes([b[0], b[1]]) as i64))?;
                }
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.push(Value::Int(v))?;
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
                    self.push(Value::Int(v))?;
                }
                b'G' => {
                    let b = self.take(8)?;
                    self.push(Value::Float(f64::from_be_bytes(b.try_into().expect("8"))))?;
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).to_string();
                    self.push(Value::Str(s))?;
                }
                0x8c => {
                    let n = self.byte()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).to_string();
                    self.push(Value::Str(s))?;
                }
                b'C' => {
                    let n = self.byte()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))?;
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))?;
                }
                b'c' => {
                    let m = self.line()?;
                    let n = self.line()?;
                    self.push(Value::Global(m, n))?;
                }
                0x93 => {
                    let n = self.pop()?;
                    let m = self.pop()?;
                    match (m, n) {
                        (Value::Str(m), Value::Str(n)) => self.push(Value::Global(m, n))?,
                        _ => return Err(err("bad STACK_GLOBAL")),
                    }
                }
                b'q' => {
                    let i = self.byte()? as u64;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()? as u64;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u64;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.byte()? as u64;
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = self.u32()? as u64;
                    self.memo_get(i)?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let parts: Vec<(u32, usize)> = items.iter().map(|s| (s.depth, s.size)).collect();
                    self.push_container(Value::Tuple(items.into_iter().map(|s| s.v).collect()), &parts)?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(err("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let parts: Vec<(u32, usize)> = items.iter().map(|s| (s.depth, s.size)).collect();
                    self.push_container(Value::Tuple(items.into_iter().map(|s| s.v).collect()), &parts)?;
                }
                b'a' => {
                    let v = self.pop_slot()?;
                    if let Value::List(l) = self.grow_top(&[(v.depth, v.size)])? {
                        l.push(v.v);
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let parts: Vec<(u32, usize)> = items.iter().map(|s| (s.depth, s.size)).collect();
                    if let Value::List(l) = self.grow_top(&parts)? {
                        l.extend(items.into_iter().map(|s| s.v));
                    }
                }
                b's' => {
                    let v = self.pop_slot()?;
                    let k = self.pop_slot()?;
                    if let Value::Dict(d) = self.grow_top(&[(v.depth, v.size), (k.depth, k.size)])? {
                        d.push((k.v, v.v));
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(err("odd SETITEMS"));
                    }
                    let parts: Vec<(u32, usize)> = items.iter().map(|s| (s.depth, s.size)).collect();
                    if let Value::Dict(d) = self.grow_top(&parts)? {
                        let mut it = items.into_iter();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            d.push((k.v, v.v));
                        }
                    }
                }
                b'R' | 0x81 => {
                    // REDUCE / NEWOBJ: only the known data constructors are interpreted; nothing is called
                    let args = self.pop_slot()?;
                    let f = self.pop_slot()?;
                    let parts = [(args.depth, args.size), (f.depth, f.size)];
                    let v = call(f.v, args.v)?;
                    self.push_container(v, &parts)?;
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
                    self.push(Value::Storage { dtype: ty, key })?;
                }
                other => return Err(err(format!("unsupported opcode 0x{other:02x} at byte {}", self.pos - 1))),
            }
        }
    }
}

impl Slot {
    /// A copy for the memo, refused when it would be huge (a memo entry is copied in full).
    fn clone_bounded(&self) -> Result<Slot> {
        if self.size > 1 << 28 {
            return Err(err("memoised value too large"));
        }
        Ok(self.clone())
    }
}

/// Parse a pickle stream into a value (data only).
pub fn unpickle(data: &[u8]) -> Result<Value> {
    let copy_budget = data.len().saturating_mul(4).saturating_add(16 << 20);
    Machine { data, pos: 0, stack: Vec::new(), memo: HashMap::new(), copy_budget }.run()
}

/// Reads one stored element as f32.
type ReadElement = fn(&[u8]) -> f32;

fn element_size(dtype: &str) -> Result<(usize, ReadElement)> {
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

/// Read one archive entry, never more than `limit` bytes nor more than `budget` (what is left of the archive's
/// own length: stored entries cannot hold more than the file, so entries that would are overlapping copies of
/// one range or compressed bombs).
fn read_entry(zip: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>, name: &str, budget: &mut usize) -> Result<Vec<u8>> {
    let f = zip.by_name(name).map_err(|e| err(format!("{name}: {e}")))?;
    let claimed = f.size();
    if claimed > *budget as u64 {
        return Err(err(format!(
            "{name} claims {claimed} bytes, more than the archive holds ({} bytes left to read): a zip bomb or a corrupt file",
            *budget
        )));
    }
    let mut buf = Vec::with_capacity(claimed as usize);
    f.take(*budget as u64 + 1).read_to_end(&mut buf).map_err(|e| err(format!("{name}: {e}")))?;
    if buf.len() > *budget {
        return Err(err(format!("{name} inflates beyond the size of the archive: a zip bomb or a corrupt file")));
    }
    *budget -= buf.len();
    Ok(buf)
}

/// Elements a tensor view reads: `offset + sum((size_i - 1) * stride_i) + 1` (0 for an empty tensor), or None on
/// overflow.
fn view_extent(offset: usize, size: &[usize], stride: &[usize]) -> Option<usize> {
    if size.contains(&0) {
        return Some(0);
    }
    size.iter()
        .zip(stride)
        .try_fold(offset, |acc, (&n, &s)| (n - 1).checked_mul(s).and_then(|x| acc.checked_add(x)))?
        .checked_add(1)
}

/// Read every tensor of a torch zip checkpoint (nested dicts flattened with `.`). Nothing is read beyond the
/// archive's length, and the tensors it makes, as f32, hold at most `max_bytes`.
pub fn read_torch_zip(bytes: &[u8], max_bytes: u64) -> Result<TensorMap> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| {
        EngineError::Checkpoint(format!(
            "not a torch zip checkpoint ({e}); legacy (non-zip) .pth files are not supported"
        ))
    })?;
    let pkl_name = (0..zip.len())
        .filter_map(|i| zip.by_index_raw(i).ok().map(|f| f.name().to_string()))
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| err("no data.pkl in archive"))?;
    let root = pkl_name.trim_end_matches("data.pkl").to_string();
    let mut budget = bytes.len();
    let pkl = read_entry(&mut zip, &pkl_name, &mut budget)?;
    let value = unpickle(&pkl)?;
    let mut leaves = Vec::new();
    flatten(&value, "", &mut leaves);
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = TensorMap::new();
    // every tensor becomes f32: at most the memory budget in all
    let max_values = (max_bytes / 4) as usize;
    let mut values = 0usize;
    for (name, t) in leaves {
        let Value::Tensor { storage, offset, size, stride } = t else { continue };
        let Value::Storage { dtype, key } = *storage else {
            return Err(err(format!("{name}: tensor without storage")));
        };
        let (es, conv) = element_size(&dtype)?;
        if stride.len() != size.len() {
            return Err(err(format!("{name}: stride/size rank mismatch")));
        }
        let numel = size
            .iter()
            .try_fold(1usize, |a, &n| a.checked_mul(n))
            .ok_or_else(|| err(format!("{name}: size {size:?} overflows")))?;
        values = values.saturating_add(numel);
        if values > max_values {
            return Err(err(format!("{name}: the tensors need more than the memory budget ({} values)", max_values)));
        }
        if !storages.contains_key(&key) {
            let buf = read_entry(&mut zip, &format!("{root}data/{key}"), &mut budget)
                .map_err(|e| err(format!("{name}: storage {key}: {e}")))?;
            storages.insert(key.clone(), buf);
        }
        let buf = &storages[&key];
        let extent =
            view_extent(offset, &size, &stride).ok_or_else(|| err(format!("{name}: offset/stride overflow")))?;
        if extent.checked_mul(es).is_none_or(|b| b > buf.len()) {
            return Err(err(format!("{name}: storage {key} too short (truncated file?)")));
        }
        if numel > buf.len() / es {
            // an overlapping view (stride 0) would make more values than the file holds
            return Err(err(format!(
                "{name}: {numel} values from a storage of {} (overlapping strides are not supported)",
                buf.len() / es
            )));
        }
        let mut data = Vec::with_capacity(numel);
        let mut idx = vec![0usize; size.len()];
        for _ in 0..numel {
            // in range: every index is below its size, so the sum is at most extent - 1
            let lin = offset + idx.iter().zip(&stride).map(|(i, s)| i * s).sum::<usize>();
            data.push(conv(&buf[lin * es..(lin + 1) * es]));
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
