//! Identifiers: unguessable 128-bit ids, printed as 32 lowercase hex digits.

use std::fmt;
use std::str::FromStr;

/// A 128-bit identifier. The bytes come from the caller (the I/O crate draws them from the
/// operating system's CSPRNG); this type only formats and parses them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id128([u8; 16]);

/// Why a string is not an [`Id128`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an id is 32 lowercase hex digits")]
pub struct InvalidId;

impl Id128 {
    /// Wraps 16 random bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Id128(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for Id128 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Id128 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id128({self})")
    }
}

impl FromStr for Id128 {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.as_bytes();
        if digits.len() != 32 {
            return Err(InvalidId);
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(InvalidId),
        };
        let mut out = [0u8; 16];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Ok(Id128(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(bytes in any::<[u8; 16]>()) {
            let id = Id128::from_bytes(bytes);
            prop_assert_eq!(id.to_string().parse::<Id128>(), Ok(id));
        }

        #[test]
        fn parser_never_panics(s in ".{0,40}") {
            let _ = s.parse::<Id128>();
        }
    }

    #[test]
    fn rejects_uppercase_and_wrong_length() {
        assert!("AB".repeat(16).parse::<Id128>().is_err());
        assert!("ab".repeat(15).parse::<Id128>().is_err());
    }
}
