//! The flags of the benchmark examples (`--name value`, any order), read without an argument-parser dependency.

/// The command line after the program name.
pub struct Flags(Vec<String>);

impl Flags {
    pub fn from_env() -> Self {
        Self(std::env::args().skip(1).collect())
    }

    /// Whether `flag` was given.
    pub fn has(&self, flag: &str) -> bool {
        self.0.iter().any(|a| a == flag)
    }

    /// The value after `flag`, else `default`.
    pub fn get(&self, flag: &str, default: &str) -> String {
        self.0
            .iter()
            .position(|a| a == flag)
            .and_then(|i| self.0.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_owned())
    }

    /// `T,H,W` after `flag` (else `default`) as three sizes; the error names the flag.
    pub fn dims3(&self, flag: &str, default: &str) -> Result<[usize; 3], String> {
        let value = self.get(flag, default);
        let dims: Vec<usize> = value
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{flag} {value}: {e}"))?;
        dims.try_into()
            .map_err(|_| format!("{flag} {value}: expected T,H,W"))
    }
}
