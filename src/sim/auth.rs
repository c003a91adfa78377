//! The simulator's own UserSig check (spec §4.2, read backwards), written apart from the
//! importer's `usersig` module so that a mistake there cannot pass here: reverse Chat's base64
//! character map, base64-decode, zlib-inflate, read the JSON as a generic value, recompute the
//! HMAC-SHA256 over the documented content string and compare, then check the expiry.

use std::io::Read;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use flate2::read::ZlibDecoder;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::chat::usersig::SecretKey;

/// A decoded document bigger than this is not a UserSig (a real one is about 200 bytes).
const MAX_DOCUMENT_BYTES: u64 = 16 * 1024;

/// Why a UserSig is refused: Chat's code (spec §1.6) and a message.
pub(super) type Refusal = (u32, &'static str);

/// The lifetime of a UserSig that passed the check: `TLS.time` and `TLS.expire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lifetime {
    pub(super) time: u64,
    pub(super) expire: u64,
}

/// Checks `usersig` for a request by `identifier` to `sdkappid` at Unix time `now`, as Chat
/// would: 70002 empty, 70003 undecodable, 70014 other SDKAppID, 70013 other identifier, 70009
/// signature not made with `key`, 70001 expired.
pub(super) fn check_usersig(
    usersig: &str,
    key: &SecretKey,
    sdkappid: u64,
    identifier: &str,
    now: u64,
) -> Result<Lifetime, Refusal> {
    if usersig.is_empty() {
        return Err((70002, "UserSig is empty"));
    }
    let undecodable = (70003, "UserSig cannot be decoded");
    let document = decode_document(usersig).ok_or(undecodable)?;
    let fields = SigFields::read(&document).ok_or(undecodable)?;
    if fields.sdkappid != sdkappid {
        return Err((70014, "UserSig was made for another SDKAppID"));
    }
    if fields.identifier != identifier {
        return Err((70013, "UserSig was made for another identifier"));
    }
    if !fields.signed_with(key) {
        return Err((70009, "UserSig signature does not match the key"));
    }
    // The official verifier: expired when now > time + expire (spec §4.1).
    if now > fields.time.saturating_add(fields.expire) {
        return Err((70001, "UserSig has expired"));
    }
    Ok(Lifetime {
        time: fields.time,
        expire: fields.expire,
    })
}

/// Steps 5, 4 and 3 of spec §4.2 undone: the JSON document inside a UserSig, as a generic
/// JSON object. None if any step fails.
pub(super) fn decode_document(usersig: &str) -> Option<Map<String, Value>> {
    let standard: String = usersig
        .chars()
        .map(|c| match c {
            '*' => '+',
            '-' => '/',
            '_' => '=',
            c => c,
        })
        .collect();
    let compressed = STANDARD.decode(standard).ok()?;
    let mut json = Vec::new();
    ZlibDecoder::new(compressed.as_slice())
        .take(MAX_DOCUMENT_BYTES)
        .read_to_end(&mut json)
        .ok()?;
    match serde_json::from_slice(&json).ok()? {
        Value::Object(document) => Some(document),
        _ => None,
    }
}

/// The fields of spec §4.2 step 3, each with its documented JSON type.
struct SigFields<'a> {
    identifier: &'a str,
    sdkappid: u64,
    time: u64,
    expire: u64,
    /// The standard-base64 HMAC.
    sig: &'a str,
}

impl<'a> SigFields<'a> {
    fn read(document: &'a Map<String, Value>) -> Option<SigFields<'a>> {
        if document.get("TLS.ver")?.as_str()? != "2.0" {
            return None;
        }
        Some(SigFields {
            identifier: document.get("TLS.identifier")?.as_str()?,
            sdkappid: document.get("TLS.sdkappid")?.as_u64()?,
            time: document.get("TLS.time")?.as_u64()?,
            expire: document.get("TLS.expire")?.as_u64()?,
            sig: document.get("TLS.sig")?.as_str()?,
        })
    }

    /// Steps 1 and 2 of spec §4.2: the HMAC-SHA256, keyed with the key's text as bytes, over
    /// the four `TLS.*:value\n` lines, compared in constant time with `TLS.sig`.
    fn signed_with(&self, key: &SecretKey) -> bool {
        let Ok(claimed) = STANDARD.decode(self.sig) else {
            return false;
        };
        let content = format!(
            "TLS.identifier:{}\nTLS.sdkappid:{}\nTLS.time:{}\nTLS.expire:{}\n",
            self.identifier, self.sdkappid, self.time, self.expire
        );
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()) else {
            return false;
        };
        mac.update(content.as_bytes());
        mac.verify_slice(&claimed).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::ZlibEncoder;
    use flate2::Compression;
    use serde_json::json;

    use super::*;
    use crate::chat::usersig;

    /// The sample key and values of spec §4.3.
    const SAMPLE_KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";

    /// The document spec §4.3 shows for the official Node library's UserSig, as written there.
    fn spec_document() -> Value {
        json!({"TLS.ver":"2.0","TLS.identifier":"xiaojun","TLS.sdkappid":1400000000,
            "TLS.time":1700000000,"TLS.expire":86400,
            "TLS.sig":"SNF4FmVCPucoXsBOpbVF3fFCf57JPm0ezZ1jeVILlVc="})
    }

    /// Packs a JSON text as spec §4.2 steps 4 and 5 say, at a given zlib level.
    fn pack(json_text: &str, level: Compression) -> String {
        let mut encoder = ZlibEncoder::new(Vec::new(), level);
        encoder.write_all(json_text.as_bytes()).unwrap();
        STANDARD
            .encode(encoder.finish().unwrap())
            .replace('+', "*")
            .replace('/', "-")
            .replace('=', "_")
    }

    #[test]
    fn a_generated_usersig_decoded_by_hand_has_the_json_shape_of_spec_4_3() {
        let sig = usersig::generate(
            &SecretKey::new(SAMPLE_KEY),
            1_400_000_000,
            "xiaojun",
            1_700_000_000,
            86_400,
        );
        // Step by step, as spec §4.3 describes the check of the Node library's output.
        let standard = sig.replace('*', "+").replace('-', "/").replace('_', "=");
        let compressed = STANDARD.decode(standard).expect("standard base64");
        let mut text = String::new();
        ZlibDecoder::new(compressed.as_slice())
            .read_to_string(&mut text)
            .expect("a zlib stream of UTF-8");
        let by_hand: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(by_hand, spec_document(), "{text}");
        // The simulator's decoder reads the same document.
        let decoded = decode_document(&sig).expect("the simulator decodes it");
        assert_eq!(Value::Object(decoded), spec_document());
        assert_eq!(
            check_usersig(
                &sig,
                &SecretKey::new(SAMPLE_KEY),
                1_400_000_000,
                "xiaojun",
                1_700_086_400
            ),
            Ok(Lifetime {
                time: 1_700_000_000,
                expire: 86_400
            })
        );
    }

    #[test]
    fn key_order_whitespace_and_zlib_level_do_not_matter() {
        let key = SecretKey::new(SAMPLE_KEY);
        // Python's json.dumps order and spacing, stored uncompressed as TLS-go does.
        let python = r#"{"TLS.ver": "2.0", "TLS.identifier": "xiaojun", "TLS.sdkappid": 1400000000, "TLS.expire": 86400, "TLS.time": 1700000000, "TLS.sig": "SNF4FmVCPucoXsBOpbVF3fFCf57JPm0ezZ1jeVILlVc="}"#;
        for level in [Compression::none(), Compression::best()] {
            let sig = pack(python, level);
            assert_eq!(
                check_usersig(&sig, &key, 1_400_000_000, "xiaojun", 1_700_000_001).map(|_| ()),
                Ok(())
            );
        }
    }

    #[test]
    fn each_refusal_has_its_chat_code() {
        let key = SecretKey::new("k1");
        let sig = usersig::generate(&key, 1_400_000_001, "admin", 1000, 100);
        let code = |sig: &str, key: &str, app: u64, id: &str, now: u64| {
            check_usersig(sig, &SecretKey::new(key), app, id, now).map_or_else(|(c, _)| c, |_| 0)
        };
        assert_eq!(code(&sig, "k1", 1_400_000_001, "admin", 1100), 0);
        assert_eq!(code(&sig, "k1", 1_400_000_001, "admin", 1101), 70001);
        assert_eq!(code(&sig, "k2", 1_400_000_001, "admin", 1000), 70009);
        assert_eq!(code(&sig, "k1", 1_400_000_001, "other", 1000), 70013);
        assert_eq!(code(&sig, "k1", 1_400_000_002, "admin", 1000), 70014);
        assert_eq!(code("", "k1", 1_400_000_001, "admin", 1000), 70002);
        assert_eq!(code("not-a-sig", "k1", 1_400_000_001, "admin", 1000), 70003);
        // Valid base64 and zlib, but not the documented fields and types.
        let doc = |value: Value| pack(&value.to_string(), Compression::default());
        let good = json!({"TLS.ver": "2.0", "TLS.identifier": "admin",
            "TLS.sdkappid": 1_400_000_001u64, "TLS.time": 1000, "TLS.expire": 100,
            "TLS.sig": usersig::signature(&key, "admin", 1_400_000_001, 1000, 100)});
        assert_eq!(
            code(&doc(good.clone()), "k1", 1_400_000_001, "admin", 1000),
            0
        );
        for (field, wrong) in [
            ("TLS.ver", json!("1.0")),
            ("TLS.sdkappid", json!("1400000001")),
            ("TLS.time", json!("1000")),
            ("TLS.expire", json!(-1)),
            ("TLS.identifier", json!(7)),
            ("TLS.sig", json!(null)),
        ] {
            let mut bad = good.clone();
            bad[field] = wrong;
            assert_eq!(
                code(&doc(bad), "k1", 1_400_000_001, "admin", 1000),
                70003,
                "{field}"
            );
        }
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("TLS.time");
        assert_eq!(
            code(&doc(missing), "k1", 1_400_000_001, "admin", 1000),
            70003
        );
        assert_eq!(
            code(&doc(json!([1, 2])), "k1", 1_400_000_001, "admin", 1000),
            70003
        );
        // A signature that is not base64, or signs other content, does not match the key.
        let mut forged = good.clone();
        forged["TLS.sig"] = json!("not base64!");
        assert_eq!(
            code(&doc(forged), "k1", 1_400_000_001, "admin", 1000),
            70009
        );
        let mut longer = good;
        longer["TLS.expire"] = json!(1_000_000);
        assert_eq!(
            code(&doc(longer), "k1", 1_400_000_001, "admin", 1000),
            70009
        );
    }
}
