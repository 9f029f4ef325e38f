//! sha256 helpers: files, streams, and stable keys over canonical JSON.

use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

pub fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hashes a file by streaming it; returns (sha256 hex, size).
pub fn file_sha256(path: &Path) -> io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    reader_sha256(&mut file)
}

pub fn reader_sha256(reader: &mut impl Read) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let size = io::copy(reader, &mut hasher)?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// sha256 of a value's canonical JSON: serde_json's `Value` keeps object keys
/// sorted, so the bytes do not depend on field order, Rust version or platform.
pub fn canonical_sha256<T: serde::Serialize>(value: &T) -> String {
    let value = serde_json::to_value(value).expect("serializable to JSON");
    let bytes = serde_json::to_vec(&value).expect("JSON value serializes");
    hex_sha256(&bytes)
}

/// A writer that hashes what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    pub fn finish(self) -> (W, String, u64) {
        (
            self.inner,
            hex::encode(self.hasher.finalize()),
            self.written,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_hash_ignores_field_order() {
        #[derive(serde::Serialize)]
        struct A {
            x: u32,
            y: &'static str,
        }
        #[derive(serde::Serialize)]
        struct B {
            y: &'static str,
            x: u32,
        }
        assert_eq!(
            canonical_sha256(&A { x: 1, y: "a" }),
            canonical_sha256(&B { y: "a", x: 1 })
        );
        assert_ne!(
            canonical_sha256(&A { x: 1, y: "a" }),
            canonical_sha256(&A { x: 2, y: "a" })
        );
    }

    #[test]
    fn known_sha256() {
        assert_eq!(
            hex_sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn sha256_hex_shape() {
        assert!(is_sha256_hex(&hex_sha256(b"")));
        assert!(!is_sha256_hex("abc"));
        assert!(!is_sha256_hex(&"A".repeat(64)));
    }
}
