//! One key's signature check, with RustCrypto's key objects built once, when the key set is
//! parsed, and kept for every token after.
//!
//! Why not `jsonwebtoken::decode`: it keeps a JWK's raw components and rebuilds the key object at
//! each verification. For RSA that means `RsaPublicKey::new`, whose Montgomery precomputation (a
//! constant-time reduction modulo n, bit by bit) costs far more in wasm32 than the signature
//! check itself; for P-256 it means decoding and validating the point again. Here each key is
//! built once per plugin instance; a token costs only the verification.

use ed25519_dalek::VerifyingKey as Ed25519Key;
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::Algorithm;
use p256::ecdsa::VerifyingKey as P256Key;
use rsa::{BoxedUint, PublicKey as RsaPublicKey, pkcs1v15, pss};
use sha2::Sha256;
use signature::Verifier as _;

/// Length of an Ed25519 public key.
const ED25519_KEY_BYTES: usize = 32;

/// A key, ready to verify signatures.
pub(crate) enum Verifier {
    /// An RSA public key, for RS256 (PKCS#1 v1.5) and PS256 (PSS, salt as long as the hash).
    Rsa {
        pkcs1v15: pkcs1v15::VerifyingKey<Sha256>,
        pss: pss::VerifyingKey<Sha256>,
    },
    /// A P-256 public key, for ES256.
    P256(P256Key),
    /// An Ed25519 public key, for EdDSA.
    Ed25519(Ed25519Key),
    /// An HS256 secret, keyed once: each token clones the keyed state.
    Hmac(Hmac<Sha256>),
}

impl Verifier {
    /// An RSA key from its big-endian modulus and exponent. `rsa` refuses moduli over 4096 bits
    /// and exponents it cannot use.
    pub(crate) fn rsa(n: &[u8], e: &[u8]) -> Result<Self, String> {
        let key = RsaPublicKey::new(
            BoxedUint::from_be_slice_vartime(n),
            BoxedUint::from_be_slice_vartime(e),
        )
        .map_err(|e| format!("not a valid RSA public key: {e}"))?;
        Ok(Self::Rsa {
            pkcs1v15: pkcs1v15::VerifyingKey::new(key.clone()),
            pss: pss::VerifyingKey::new(key),
        })
    }

    /// A P-256 key from its uncompressed SEC1 point (`0x04 || x || y`); a point off the curve is
    /// refused.
    pub(crate) fn p256(point: &[u8]) -> Result<Self, String> {
        P256Key::from_sec1_bytes(point)
            .map(Self::P256)
            .map_err(|_| "not a valid public key: not a P-256 point".into())
    }

    /// An Ed25519 key from its 32 bytes; a non-point is refused.
    pub(crate) fn ed25519(bytes: &[u8]) -> Result<Self, String> {
        let bytes: &[u8; ED25519_KEY_BYTES] = bytes.try_into().map_err(|_| {
            format!(
                "not a valid public key: an Ed25519 key is {ED25519_KEY_BYTES} bytes, not {}",
                bytes.len()
            )
        })?;
        Ed25519Key::from_bytes(bytes)
            .map(Self::Ed25519)
            .map_err(|_| "not a valid public key: not an Ed25519 point".into())
    }

    /// An HS256 key from its secret.
    pub(crate) fn hmac(secret: &[u8]) -> Result<Self, String> {
        Hmac::<Sha256>::new_from_slice(secret)
            .map(Self::Hmac)
            .map_err(|e| format!("not a valid HMAC secret: {e}"))
    }

    /// Whether `signature` is this key's signature of `message` under `alg`. An algorithm the
    /// key is not for never verifies (the caller refuses it earlier, with a clearer answer).
    pub(crate) fn verifies(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        match (self, alg) {
            (Self::Rsa { pkcs1v15, .. }, Algorithm::RS256) => {
                pkcs1v15::Signature::try_from(signature)
                    .is_ok_and(|s| pkcs1v15.verify(message, &s).is_ok())
            }
            (Self::Rsa { pss, .. }, Algorithm::PS256) => {
                pss::Signature::try_from(signature).is_ok_and(|s| pss.verify(message, &s).is_ok())
            }
            // JOSE's ES256 signature is the fixed-size r || s (RFC 7518 §3.4), never DER.
            (Self::P256(key), Algorithm::ES256) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify(message, &s).is_ok()),
            (Self::Ed25519(key), Algorithm::EdDSA) => {
                ed25519_dalek::Signature::from_slice(signature)
                    .is_ok_and(|s| key.verify(message, &s).is_ok())
            }
            (Self::Hmac(keyed), Algorithm::HS256) => {
                let mut mac = keyed.clone();
                mac.update(message);
                // Constant-time: the comparison must not tell how much of a forgery was right.
                mac.verify_slice(signature).is_ok()
            }
            _ => false,
        }
    }
}
