use std::fmt;

/// Element types a checkpoint may hold. Wider than candle's set so that `inspect` and `convert` handle
/// every tensor a PyTorch or safetensors file can contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    Bool,
    U8,
    I8,
    I16,
    I32,
    I64,
    F16,
    BF16,
    F32,
    F64,
}

impl DType {
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::F32 => 4,
            DType::I64 | DType::F64 => 8,
        }
    }

    /// PyTorch's spelling, as `tensor.dtype` prints it (without the `torch.` prefix).
    pub fn torch_name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }

    /// The storage class name `torch.save` pickles for this element type (`torch.BFloat16Storage`, ...).
    pub(crate) fn from_torch_storage(class: &str) -> Option<Self> {
        Some(match class {
            "BoolStorage" => DType::Bool,
            "ByteStorage" => DType::U8,
            "CharStorage" => DType::I8,
            "ShortStorage" => DType::I16,
            "IntStorage" => DType::I32,
            "LongStorage" => DType::I64,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "FloatStorage" => DType::F32,
            "DoubleStorage" => DType::F64,
            _ => return None,
        })
    }

    pub(crate) fn from_safetensors(dtype: safetensors::Dtype) -> Option<Self> {
        use safetensors::Dtype as S;
        Some(match dtype {
            S::BOOL => DType::Bool,
            S::U8 => DType::U8,
            S::I8 => DType::I8,
            S::I16 => DType::I16,
            S::I32 => DType::I32,
            S::I64 => DType::I64,
            S::F16 => DType::F16,
            S::BF16 => DType::BF16,
            S::F32 => DType::F32,
            S::F64 => DType::F64,
            _ => return None,
        })
    }

    pub(crate) fn to_safetensors(self) -> safetensors::Dtype {
        use safetensors::Dtype as S;
        match self {
            DType::Bool => S::BOOL,
            DType::U8 => S::U8,
            DType::I8 => S::I8,
            DType::I16 => S::I16,
            DType::I32 => S::I32,
            DType::I64 => S::I64,
            DType::F16 => S::F16,
            DType::BF16 => S::BF16,
            DType::F32 => S::F32,
            DType::F64 => S::F64,
        }
    }

    /// The candle element type holding this dtype without loss, if candle has one.
    pub fn to_candle(self) -> Option<candle_core::DType> {
        use candle_core::DType as C;
        Some(match self {
            DType::U8 | DType::Bool => C::U8,
            DType::I16 => C::I16,
            DType::I32 => C::I32,
            DType::I64 => C::I64,
            DType::F16 => C::F16,
            DType::BF16 => C::BF16,
            DType::F32 => C::F32,
            DType::F64 => C::F64,
            DType::I8 => return None,
        })
    }

    /// The checkpoint element type of a candle type, where checkpoints have one.
    pub fn from_candle(dtype: candle_core::DType) -> Option<Self> {
        use candle_core::DType as C;
        Some(match dtype {
            C::U8 => DType::U8,
            C::I16 => DType::I16,
            C::I32 => DType::I32,
            C::I64 => DType::I64,
            C::F16 => DType::F16,
            C::BF16 => DType::BF16,
            C::F32 => DType::F32,
            C::F64 => DType::F64,
            _ => return None,
        })
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.torch_name())
    }
}
