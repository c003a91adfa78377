//! UserSig (TLSSigAPIv2, spec §4): generating one for the admin, decoding one, and verifying it
//! the way Chat does (the importer's checks; the simulator has its own, in `sim::auth`).
//!
//! The secret key lives in [`SecretKey`], whose `Debug` and `Display` never show it.

use std::fmt;
use std::io::{Read, Write};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The app's secret key. Never printed.
#[derive(Clone)]
pub struct SecretKey(String);

impl SecretKey {
    pub fn new(key: impl Into<String>) -> SecretKey {
        SecretKey(key.into())
    }

    /// The key's bytes, for HMAC. The key is used as the bytes of its text, not hex-decoded.
    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The key text, for code that must search outputs for it (tests).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// The JSON document inside a UserSig.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigDocument {
    #[serde(rename = "TLS.ver")]
    pub ver: String,
    #[serde(rename = "TLS.identifier")]
    pub identifier: String,
    #[serde(rename = "TLS.sdkappid")]
    pub sdkappid: u64,
    #[serde(rename = "TLS.expire")]
    pub expire: u64,
    #[serde(rename = "TLS.time")]
    pub time: u64,
    #[serde(rename = "TLS.sig")]
    pub sig: String,
}

/// The standard-base64 HMAC-SHA256 over the documented content string.
pub fn signature(
    key: &SecretKey,
    identifier: &str,
    sdkappid: u64,
    time: u64,
    expire: u64,
) -> String {
    let content = format!(
        "TLS.identifier:{identifier}\nTLS.sdkappid:{sdkappid}\nTLS.time:{time}\nTLS.expire:{expire}\n"
    );
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.bytes()).expect("HMAC takes keys of any length");
    mac.update(content.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Generates a UserSig for `identifier`, valid for `expire` seconds from `time` (Unix seconds).
pub fn generate(
    key: &SecretKey,
    sdkappid: u64,
    identifier: &str,
    time: u64,
    expire: u64,
) -> String {
    let document = SigDocument {
        ver: "2.0".into(),
        identifier: identifier.into(),
        sdkappid,
        expire,
        time,
        sig: signature(key, identifier, sdkappid, time, expire),
    };
    let json = serde_json::to_vec(&document).unwrap_or_default();
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::default());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(&json);
    let compressed = encoder.finish().unwrap_or_default();
    to_chat_base64(&STANDARD.encode(compressed))
}

/// Chat's base64 variant: standard base64 with `+`→`*`, `/`→`-`, `=`→`_` (not RFC base64url).
fn to_chat_base64(standard: &str) -> String {
    standard
        .chars()
        .map(|c| match c {
            '+' => '*',
            '/' => '-',
            '=' => '_',
            c => c,
        })
        .collect()
}

fn from_chat_base64(chat: &str) -> String {
    chat.chars()
        .map(|c| match c {
            '*' => '+',
            '-' => '/',
            '_' => '=',
            c => c,
        })
        .collect()
}

/// Why a UserSig was refused, with the Chat code that says so (spec §1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("UserSig is empty")]
    Empty,
    #[error("UserSig cannot be decoded")]
    Undecodable,
    #[error("UserSig has expired")]
    Expired,
    #[error("UserSig signature does not match the key")]
    BadSignature,
    #[error("UserSig was made for another identifier")]
    IdentifierMismatch,
    #[error("UserSig was made for another SDKAppID")]
    SdkAppIdMismatch,
}

impl SigError {
    /// The ErrorCode Chat answers with.
    pub fn chat_code(self) -> u32 {
        match self {
            SigError::Empty => 70002,
            SigError::Undecodable => 70003,
            SigError::Expired => 70001,
            SigError::BadSignature => 70009,
            SigError::IdentifierMismatch => 70013,
            SigError::SdkAppIdMismatch => 70014,
        }
    }
}

/// Decodes a UserSig into its JSON document (no verification).
pub fn decode(usersig: &str) -> Result<SigDocument, SigError> {
    if usersig.is_empty() {
        return Err(SigError::Empty);
    }
    let compressed = STANDARD
        .decode(from_chat_base64(usersig))
        .map_err(|_| SigError::Undecodable)?;
    let mut json = Vec::new();
    ZlibDecoder::new(compressed.as_slice())
        .take(64 * 1024)
        .read_to_end(&mut json)
        .map_err(|_| SigError::Undecodable)?;
    serde_json::from_slice(&json).map_err(|_| SigError::Undecodable)
}

/// Verifies a UserSig as Chat would for a request made by `identifier` to `sdkappid` at `now`.
pub fn verify(
    usersig: &str,
    key: &SecretKey,
    sdkappid: u64,
    identifier: &str,
    now: u64,
) -> Result<SigDocument, SigError> {
    let document = decode(usersig)?;
    if document.sdkappid != sdkappid {
        return Err(SigError::SdkAppIdMismatch);
    }
    if document.identifier != identifier {
        return Err(SigError::IdentifierMismatch);
    }
    let expected = signature(
        key,
        &document.identifier,
        document.sdkappid,
        document.time,
        document.expire,
    );
    if expected != document.sig {
        return Err(SigError::BadSignature);
    }
    if now > document.time.saturating_add(document.expire) {
        return Err(SigError::Expired);
    }
    Ok(document)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE_KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";

    #[test]
    fn known_hmac_vector_from_the_spec() {
        let key = SecretKey::new(SAMPLE_KEY);
        assert_eq!(
            signature(&key, "xiaojun", 1_400_000_000, 1_700_000_000, 86_400),
            "SNF4FmVCPucoXsBOpbVF3fFCf57JPm0ezZ1jeVILlVc="
        );
    }

    #[test]
    fn generated_usersig_decodes_and_its_hmac_recomputes() {
        let key = SecretKey::new(SAMPLE_KEY);
        let sig = generate(&key, 1_400_000_000, "xiaojun", 1_700_000_000, 86_400);
        assert!(sig
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "*-_".contains(c)));
        let doc = decode(&sig).unwrap();
        assert_eq!(doc.ver, "2.0");
        assert_eq!(doc.identifier, "xiaojun");
        assert_eq!(doc.sdkappid, 1_400_000_000);
        assert_eq!((doc.time, doc.expire), (1_700_000_000, 86_400));
        assert_eq!(doc.sig, "SNF4FmVCPucoXsBOpbVF3fFCf57JPm0ezZ1jeVILlVc=");
        assert!(verify(&sig, &key, 1_400_000_000, "xiaojun", 1_700_000_100).is_ok());
    }

    #[test]
    fn verify_reports_chat_codes() {
        let key = SecretKey::new("k1");
        let sig = generate(&key, 1400000001, "admin", 1000, 100);
        let check = |sig: &str, key: &str, app: u64, id: &str, now: u64| {
            verify(sig, &SecretKey::new(key), app, id, now)
                .map(|_| 0)
                .unwrap_or_else(|e| e.chat_code())
        };
        assert_eq!(check(&sig, "k1", 1400000001, "admin", 1100), 0);
        assert_eq!(check(&sig, "k1", 1400000001, "admin", 1101), 70001);
        assert_eq!(check(&sig, "k2", 1400000001, "admin", 1000), 70009);
        assert_eq!(check(&sig, "k1", 1400000001, "other", 1000), 70013);
        assert_eq!(check(&sig, "k1", 1400000002, "admin", 1000), 70014);
        assert_eq!(check("", "k1", 1400000001, "admin", 1000), 70002);
        assert_eq!(check("not-a-sig", "k1", 1400000001, "admin", 1000), 70003);
    }

    #[test]
    fn secret_key_is_never_printed() {
        let key = SecretKey::new("sentinel-secret");
        assert!(!format!("{key:?}").contains("sentinel"));
    }
}
