//! ed25519 signatures over a checkpoint's descriptor: who vouches for the
//! outputs a cache hands out.

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::error::CacheError;

/// A descriptor's signature and the public key that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// The signer's public key, hex.
    pub key: String,
    /// The signature over the descriptor's signed bytes, hex.
    pub signature: String,
}

#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub name: String,
    key: VerifyingKey,
}

fn key_bytes(hex_text: &str) -> Result<[u8; 32], CacheError> {
    let bytes =
        hex::decode(hex_text.trim()).map_err(|e| CacheError::Key(format!("not hex: {e}")))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| CacheError::Key(format!("expected 32 bytes, got {}", b.len())))
}

impl TrustedKey {
    pub fn parse(name: &str, hex_key: &str) -> Result<TrustedKey, CacheError> {
        let key = VerifyingKey::from_bytes(&key_bytes(hex_key)?)
            .map_err(|e| CacheError::Key(format!("not an ed25519 public key: {e}")))?;
        Ok(TrustedKey {
            name: name.to_string(),
            key,
        })
    }
}

/// Reads a signing key: 64 hex digits (the 32-byte secret), as `cache keygen` writes.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, CacheError> {
    let text = std::fs::read_to_string(path).map_err(CacheError::local(path))?;
    Ok(SigningKey::from_bytes(
        &key_bytes(&text).map_err(CacheError::local(path))?,
    ))
}

/// A new signing key from the kernel's random source.
pub fn generate() -> std::io::Result<SigningKey> {
    let mut secret = [0u8; 32];
    let mut random = std::fs::File::open("/dev/urandom")?;
    std::io::Read::read_exact(&mut random, &mut secret)?;
    Ok(SigningKey::from_bytes(&secret))
}

pub fn public_hex(key: &SigningKey) -> String {
    hex::encode(key.verifying_key().as_bytes())
}

pub fn sign(key: &SigningKey, bytes: &[u8]) -> Signed {
    Signed {
        key: public_hex(key),
        signature: hex::encode(key.sign(bytes).to_bytes()),
    }
}

/// Checks a descriptor against the trusted keys. With none listed, anything
/// is accepted (the cache is trusted as a whole); with some, only a valid
/// signature by one of them. Returns the signer's name.
pub fn check(
    trusted: &[TrustedKey],
    signed: Option<&Signed>,
    bytes: &[u8],
) -> Result<Option<String>, CacheError> {
    if trusted.is_empty() {
        return Ok(None);
    }
    let Some(signed) = signed else {
        return Err(CacheError::Key(
            "it is not signed, and the project trusts only signed checkpoints".into(),
        ));
    };
    let Some(signer) = trusted
        .iter()
        .find(|t| hex::encode(t.key.as_bytes()) == signed.key)
    else {
        return Err(CacheError::Key(format!(
            "it is signed by key {}, which the project's cache.yaml does not list",
            signed.key
        )));
    };
    let signature = hex::decode(&signed.signature)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| CacheError::Key("its signature is malformed".into()))?;
    signer.key.verify(bytes, &signature).map_err(|_| {
        CacheError::Key(format!(
            "its signature by {} does not match its contents",
            signer.name
        ))
    })?;
    Ok(Some(signer.name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_listed_key_with_a_matching_signature_is_accepted() {
        let alice = generate().unwrap();
        let mallory = generate().unwrap();
        let trusted = [TrustedKey::parse("alice", &public_hex(&alice)).unwrap()];
        let by_alice = sign(&alice, b"descriptor");
        assert_eq!(
            check(&trusted, Some(&by_alice), b"descriptor").unwrap(),
            Some("alice".to_string())
        );
        let key_error = |e: CacheError| match e {
            CacheError::Key(why) => why,
            other => panic!("not a key error: {other:?}"),
        };
        let e = key_error(check(&trusted, Some(&by_alice), b"descriptoR").unwrap_err());
        assert!(e.contains("does not match"), "{e}");
        let e = key_error(
            check(
                &trusted,
                Some(&sign(&mallory, b"descriptor")),
                b"descriptor",
            )
            .unwrap_err(),
        );
        assert!(e.contains("does not list"), "{e}");
        let e = key_error(check(&trusted, None, b"descriptor").unwrap_err());
        assert!(e.contains("not signed"), "{e}");
        assert_eq!(check(&[], None, b"descriptor").unwrap(), None);
    }
}
