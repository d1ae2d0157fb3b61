//! A small, safe interpreter for the pickle streams that `torch.save` writes (protocols 2 to 5).
//!
//! It never imports or runs anything: `GLOBAL` only records a class name, and calling an unknown class yields an
//! opaque [`Value::Object`]. The few PyTorch constructors that rebuild tensors are recognised by name, so a state
//! dict comes back as nested dicts whose leaves are [`Value::Tensor`] descriptions pointing into storages.
//! Containers live in an arena and the stack holds indices into it, so memoised containers that are filled after
//! being memoised (as the pickler does) are shared exactly as Python shares them.

use super::dtype::DType;

/// Where a tensor's elements live: a storage file inside the checkpoint archive, viewed with offset and strides
/// (in elements), as `torch._utils._rebuild_tensor_v2` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage_key: String,
    pub dtype: DType,
    pub storage_numel: usize,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
}

pub type ValueId = usize;

#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer beyond 64 bits; its value is never needed for tensors.
    BigInt,
    Float(f64),
    Str(String),
    Bytes(usize),
    List(Vec<ValueId>),
    Tuple(Vec<ValueId>),
    Dict(Vec<(ValueId, ValueId)>),
    Set,
    Global {
        module: String,
        name: String,
    },
    /// `persistent_load` result: a typed storage.
    Storage {
        key: String,
        dtype: DType,
        numel: usize,
    },
    Tensor(TensorRef),
    /// An instance of a class we do not interpret (counters, `_extra_state`, optimiser objects ...).
    Object {
        class: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    #[error("pickle stream ends inside opcode {opcode:#04x} at byte {at}")]
    Truncated { opcode: u8, at: usize },
    #[error("unknown pickle opcode {opcode:#04x} at byte {at}")]
    UnknownOpcode { opcode: u8, at: usize },
    #[error("unsupported pickle opcode {opcode:#04x} at byte {at}: {what}")]
    Unsupported {
        opcode: u8,
        at: usize,
        what: &'static str,
    },
    #[error("malformed pickle at byte {at}: {detail}")]
    Malformed { at: usize, detail: String },
    #[error("pickle stream has no STOP opcode")]
    NoStop,
}

/// The decoded object graph: an arena of values and the id of the root object.
#[derive(Debug)]
pub struct Pickle {
    pub values: Vec<Value>,
    pub root: ValueId,
}

impl Pickle {
    pub fn get(&self, id: ValueId) -> &Value {
        &self.values[id]
    }
}

/// Caps that stop a hostile stream from asking for absurd allocations.
const MAX_MEMO: usize = 1 << 24;
const MAX_VALUES: usize = 1 << 26;

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    values: Vec<Value>,
    stack: Vec<ValueId>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u32, ValueId>,
}

pub fn parse(data: &[u8]) -> Result<Pickle, PickleError> {
    let mut m = Machine {
        data,
        pos: 0,
        values: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: std::collections::HashMap::new(),
    };
    let root = m.run()?;
    Ok(Pickle {
        values: m.values,
        root,
    })
}

impl<'a> Machine<'a> {
    fn malformed(&self, detail: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            at: self.pos,
            detail: detail.into(),
        }
    }

    fn take(&mut self, n: usize, opcode: u8) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(PickleError::Truncated {
                opcode,
                at: self.pos,
            })?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn take_array<const N: usize>(&mut self, opcode: u8) -> Result<[u8; N], PickleError> {
        let bytes = self.take(N, opcode)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn take_line(&mut self, opcode: u8) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated {
                opcode,
                at: self.pos,
            })?;
        let line = &rest[..len];
        self.pos += len + 1;
        std::str::from_utf8(line).map_err(|_| self.malformed("text argument is not UTF-8"))
    }

    fn take_len(&mut self, width: usize, opcode: u8) -> Result<usize, PickleError> {
        let n = match width {
            1 => self.take_array::<1>(opcode)?[0] as u64,
            4 => u32::from_le_bytes(self.take_array::<4>(opcode)?) as u64,
            _ => u64::from_le_bytes(self.take_array::<8>(opcode)?),
        };
        let n = usize::try_from(n).map_err(|_| self.malformed("length overflows"))?;
        if n > self.data.len() - self.pos {
            return Err(PickleError::Truncated {
                opcode,
                at: self.pos,
            });
        }
        Ok(n)
    }

    fn alloc(&mut self, value: Value) -> Result<ValueId, PickleError> {
        if self.values.len() >= MAX_VALUES {
            return Err(self.malformed("too many objects"));
        }
        self.values.push(value);
        Ok(self.values.len() - 1)
    }

    fn push(&mut self, value: Value) -> Result<(), PickleError> {
        let id = self.alloc(value)?;
        self.stack.push(id);
        Ok(())
    }

    fn pop(&mut self) -> Result<ValueId, PickleError> {
        match self.stack.pop() {
            Some(id) => Ok(id),
            None => Err(self.malformed("stack underflow")),
        }
    }

    fn top(&self) -> Result<ValueId, PickleError> {
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.malformed("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<ValueId>, PickleError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.malformed("no MARK on the stack"))?;
        if mark > self.stack.len() {
            return Err(self.malformed("MARK above the stack"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn memo_put(&mut self, index: u32) -> Result<(), PickleError> {
        let top = self.top()?;
        if self.memo.len() >= MAX_MEMO {
            return Err(self.malformed("memo too large"));
        }
        self.memo.insert(index, top);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> Result<(), PickleError> {
        let id = *self
            .memo
            .get(&index)
            .ok_or_else(|| self.malformed(format!("memo entry {index} was never stored")))?;
        self.stack.push(id);
        Ok(())
    }

    fn run(&mut self) -> Result<ValueId, PickleError> {
        while self.pos < self.data.len() {
            let at = self.pos;
            let op = self.data[self.pos];
            self.pos += 1;
            match op {
                0x80 => {
                    let proto = self.take_array::<1>(op)?[0];
                    if proto > 5 {
                        return Err(
                            self.malformed(format!("pickle protocol {proto} is newer than 5"))
                        );
                    }
                }
                0x95 => {
                    self.take(8, op)?;
                }
                b'.' => return self.pop(),
                b'(' => {
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    self.stack
                        .pop()
                        .ok_or_else(|| self.malformed("POP on an empty stack"))?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?;
                    self.stack.push(top);
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = i32::from_le_bytes(self.take_array::<4>(op)?);
                    self.push(Value::Int(v as i64))?
                }
                b'K' => {
                    let v = self.take_array::<1>(op)?[0];
                    self.push(Value::Int(v as i64))?
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.take_array::<2>(op)?);
                    self.push(Value::Int(v as i64))?
                }
                0x8a | 0x8b => {
                    let n = self.take_len(if op == 0x8a { 1 } else { 4 }, op)?;
                    let bytes = self.take(n, op)?;
                    let value = long_from_le(bytes);
                    self.push(value)?
                }
                b'I' | b'L' => {
                    let line = self.take_line(op)?.trim_end_matches('L');
                    let value = match line {
                        "01" => Value::Bool(true),
                        "00" => Value::Bool(false),
                        s => s.parse::<i64>().map(Value::Int).unwrap_or(Value::BigInt),
                    };
                    self.push(value)?
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take_array::<8>(op)?);
                    self.push(Value::Float(v))?
                }
                b'F' => {
                    let line = self.take_line(op)?;
                    let v = line
                        .parse::<f64>()
                        .map_err(|_| self.malformed("bad FLOAT literal"))?;
                    self.push(Value::Float(v))?
                }
                b'X' | 0x8c | 0x8d => {
                    let width = match op {
                        b'X' => 4,
                        0x8c => 1,
                        _ => 8,
                    };
                    let n = self.take_len(width, op)?;
                    let bytes = self.take(n, op)?;
                    let s = std::str::from_utf8(bytes)
                        .map_err(|_| self.malformed("string is not UTF-8"))?
                        .to_owned();
                    self.push(Value::Str(s))?
                }
                b'V' => {
                    let s = self.take_line(op)?.to_owned();
                    self.push(Value::Str(s))?
                }
                b'T' | b'U' => {
                    let n = self.take_len(if op == b'U' { 1 } else { 4 }, op)?;
                    let bytes = self.take(n, op)?;
                    self.push(Value::Str(String::from_utf8_lossy(bytes).into_owned()))?
                }
                b'S' => {
                    let s = self.take_line(op)?.trim_matches(|c| c == '\'' || c == '"');
                    let s = s.to_owned();
                    self.push(Value::Str(s))?
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let width = match op {
                        b'C' => 1,
                        b'B' => 4,
                        _ => 8,
                    };
                    let n = self.take_len(width, op)?;
                    self.take(n, op)?;
                    self.push(Value::Bytes(n))?
                }
                0x98 => {}
                0x97 => {
                    return Err(PickleError::Unsupported {
                        opcode: op,
                        at,
                        what: "out-of-band buffers",
                    })
                }
                b']' => self.push(Value::List(Vec::new()))?,
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b')' => self.push(Value::Tuple(Vec::new()))?,
                0x8f => self.push(Value::Set)?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items))?
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))?
                }
                0x91 => {
                    self.pop_mark()?;
                    self.push(Value::Set)?
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(&items)
                        .ok_or_else(|| self.malformed("DICT with an odd number of items"))?;
                    self.push(Value::Dict(pairs))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(self.malformed("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Value::Tuple(items))?
                }
                b'a' => {
                    let item = self.pop()?;
                    let list = self.top()?;
                    self.extend_list(list, vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.extend_list(list, items)?;
                }
                0x90 => {
                    self.pop_mark()?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    let dict = self.top()?;
                    self.extend_dict(dict, vec![(key, value)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(&items)
                        .ok_or_else(|| self.malformed("SETITEMS with an odd number of items"))?;
                    let dict = self.top()?;
                    self.extend_dict(dict, pairs)?;
                }
                b'p' => {
                    let index = self
                        .take_line(op)?
                        .parse::<u32>()
                        .map_err(|_| self.malformed("bad PUT index"))?;
                    self.memo_put(index)?
                }
                b'q' => {
                    let index = self.take_array::<1>(op)?[0] as u32;
                    self.memo_put(index)?
                }
                b'r' => {
                    let index = u32::from_le_bytes(self.take_array::<4>(op)?);
                    self.memo_put(index)?
                }
                0x94 => {
                    let index = self.memo.len() as u32;
                    self.memo_put(index)?
                }
                b'g' => {
                    let index = self
                        .take_line(op)?
                        .parse::<u32>()
                        .map_err(|_| self.malformed("bad GET index"))?;
                    self.memo_get(index)?
                }
                b'h' => {
                    let index = self.take_array::<1>(op)?[0] as u32;
                    self.memo_get(index)?
                }
                b'j' => {
                    let index = u32::from_le_bytes(self.take_array::<4>(op)?);
                    self.memo_get(index)?
                }
                b'c' => {
                    let module = self.take_line(op)?.to_owned();
                    let name = self.take_line(op)?.to_owned();
                    self.push(Value::Global { module, name })?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (&self.values[module], &self.values[name]) {
                        (Value::Str(module), Value::Str(name)) => {
                            let (module, name) = (module.clone(), name.clone());
                            self.push(Value::Global { module, name })?
                        }
                        _ => return Err(self.malformed("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let value = self.call(callable, args)?;
                    self.push(value)?
                }
                0x81 => {
                    let _args = self.pop()?;
                    let class = self.pop()?;
                    let class = self.class_name(class);
                    self.push(Value::Object { class })?
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let _args = self.pop()?;
                    let class = self.pop()?;
                    let class = self.class_name(class);
                    self.push(Value::Object { class })?
                }
                b'b' => {
                    // BUILD sets an object's state; for the containers we keep (OrderedDict) the state is empty,
                    // and for opaque objects it is irrelevant.
                    self.pop()?;
                    self.top()?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let value = self.persistent_load(pid)?;
                    self.push(value)?
                }
                b'P' => {
                    return Err(PickleError::Unsupported {
                        opcode: op,
                        at,
                        what: "text persistent ids",
                    })
                }
                b'i' | b'o' | 0x82..=0x84 => {
                    return Err(PickleError::Unsupported {
                        opcode: op,
                        at,
                        what: "old-style instances and extension codes",
                    })
                }
                _ => return Err(PickleError::UnknownOpcode { opcode: op, at }),
            }
        }
        Err(PickleError::NoStop)
    }

    fn extend_list(&mut self, list: ValueId, items: Vec<ValueId>) -> Result<(), PickleError> {
        match &mut self.values[list] {
            Value::List(v) => {
                v.extend(items);
                Ok(())
            }
            // Appending to an opaque object (e.g. a custom list subclass) is harmless to ignore.
            Value::Object { .. } => Ok(()),
            _ => Err(self.malformed("APPEND to something that is not a list")),
        }
    }

    fn extend_dict(
        &mut self,
        dict: ValueId,
        items: Vec<(ValueId, ValueId)>,
    ) -> Result<(), PickleError> {
        match &mut self.values[dict] {
            Value::Dict(v) => {
                v.extend(items);
                Ok(())
            }
            Value::Object { .. } => Ok(()),
            _ => Err(self.malformed("SETITEM on something that is not a dict")),
        }
    }

    fn class_name(&self, id: ValueId) -> String {
        match &self.values[id] {
            Value::Global { module, name } => format!("{module}.{name}"),
            other => format!("{other:?}"),
        }
    }

    fn tuple_items(&self, id: ValueId) -> Result<Vec<ValueId>, PickleError> {
        match &self.values[id] {
            Value::Tuple(items) | Value::List(items) => Ok(items.clone()),
            _ => Err(self.malformed("expected a tuple of arguments")),
        }
    }

    fn int_arg(&self, id: ValueId, what: &str) -> Result<usize, PickleError> {
        match self.values[id] {
            Value::Int(v) if v >= 0 => Ok(v as usize),
            _ => Err(self.malformed(format!("{what} must be a non-negative integer"))),
        }
    }

    fn usize_tuple(&self, id: ValueId, what: &str) -> Result<Vec<usize>, PickleError> {
        self.tuple_items(id)?
            .into_iter()
            .map(|item| self.int_arg(item, what))
            .collect()
    }

    /// REDUCE: the only callables we interpret are the ones that rebuild tensors and ordered dicts.
    fn call(&mut self, callable: ValueId, args: ValueId) -> Result<Value, PickleError> {
        let (module, name) = match &self.values[callable] {
            Value::Global { module, name } => (module.clone(), name.clone()),
            _ => {
                return Ok(Value::Object {
                    class: "<call>".into(),
                })
            }
        };
        match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                let args = self.tuple_items(args)?;
                if args.len() < 4 {
                    return Err(self.malformed(format!("{name} takes at least 4 arguments")));
                }
                let (key, dtype, numel) = match &self.values[args[0]] {
                    Value::Storage { key, dtype, numel } => (key.clone(), *dtype, *numel),
                    _ => {
                        return Err(
                            self.malformed(format!("{name}: first argument is not a storage"))
                        )
                    }
                };
                let offset = self.int_arg(args[1], "storage offset")?;
                let shape = self.usize_tuple(args[2], "tensor size")?;
                let strides = self.usize_tuple(args[3], "tensor stride")?;
                if shape.len() != strides.len() {
                    return Err(self.malformed("tensor size and stride have different ranks"));
                }
                Ok(Value::Tensor(TensorRef {
                    storage_key: key,
                    dtype,
                    storage_numel: numel,
                    offset,
                    shape,
                    strides,
                }))
            }
            ("torch._utils", "_rebuild_parameter")
            | ("torch._utils", "_rebuild_parameter_with_state") => {
                let args = self.tuple_items(args)?;
                match args.first().map(|&id| &self.values[id]) {
                    Some(Value::Tensor(t)) => Ok(Value::Tensor(t.clone())),
                    _ => Err(self.malformed("_rebuild_parameter without a tensor")),
                }
            }
            ("torch._tensor", "_rebuild_from_type_v2") => {
                // (func, type, args, state): apply `func` to `args`, ignore the subclass type.
                let args = self.tuple_items(args)?;
                if args.len() < 3 {
                    return Err(self.malformed("_rebuild_from_type_v2 takes 4 arguments"));
                }
                self.call(args[0], args[2])
            }
            _ => Ok(Value::Object {
                class: format!("{module}.{name}"),
            }),
        }
    }

    /// BINPERSID with `('storage', StorageClass, key, location, numel)`, as `torch.save` writes it.
    fn persistent_load(&mut self, pid: ValueId) -> Result<Value, PickleError> {
        let items = self.tuple_items(pid)?;
        let is_storage = matches!(items.first().map(|&id| &self.values[id]), Some(Value::Str(s)) if s == "storage");
        if !is_storage || items.len() < 5 {
            return Err(self.malformed("persistent id is not a ('storage', ...) tuple"));
        }
        let dtype = match &self.values[items[1]] {
            Value::Global { module, name } if module == "torch" => DType::from_torch_storage(name)
                .ok_or_else(|| self.malformed(format!("unsupported storage type torch.{name}")))?,
            other => return Err(self.malformed(format!("unexpected storage type {other:?}"))),
        };
        let key = match &self.values[items[2]] {
            Value::Str(s) => s.clone(),
            _ => return Err(self.malformed("storage key is not a string")),
        };
        let numel = self.int_arg(items[4], "storage size")?;
        Ok(Value::Storage { key, dtype, numel })
    }
}

fn pairs(items: &[ValueId]) -> Option<Vec<(ValueId, ValueId)>> {
    if !items.len().is_multiple_of(2) {
        return None;
    }
    Some(items.chunks_exact(2).map(|c| (c[0], c[1])).collect())
}

fn long_from_le(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() > 8 {
        return Value::BigInt;
    }
    let negative = bytes[bytes.len() - 1] & 0x80 != 0;
    let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
    buf[..bytes.len()].copy_from_slice(bytes);
    Value::Int(i64::from_le_bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_small_dict_with_ints_and_strings() {
        // pickle.dumps({'a': 1, 'b': 'x'}, protocol=2)
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02X\x01\x00\x00\x00xq\x03u.";
        let p = parse(data).unwrap();
        let Value::Dict(items) = p.get(p.root) else {
            panic!("root is not a dict")
        };
        assert_eq!(items.len(), 2);
        assert!(matches!(p.get(items[0].1), Value::Int(1)));
        assert!(matches!(p.get(items[1].1), Value::Str(s) if s == "x"));
    }

    #[test]
    fn long1_handles_sign() {
        assert!(matches!(long_from_le(&[0xff]), Value::Int(-1)));
        assert!(matches!(long_from_le(&[0x00, 0x01]), Value::Int(256)));
        assert!(matches!(long_from_le(&[0; 9]), Value::BigInt));
    }

    #[test]
    fn truncated_and_garbage_streams_are_errors() {
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02X\x01\x00\x00\x00xq\x03u.";
        for cut in 0..data.len() {
            assert!(parse(&data[..cut]).is_err(), "prefix of {cut} bytes parsed");
        }
        assert!(parse(b"\xff\xfe").is_err());
        assert!(parse(b"h\x05.").is_err());
        assert!(parse(b"u.").is_err());
    }
}
