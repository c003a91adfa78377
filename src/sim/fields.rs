//! Chat's profile fields as the simulator checks them (kinds, limits, enum values, custom
//! keywords) and Chat's UserID rule.
//!
//! Everything here is written out from the spec (/work/shared/spec/tencent-chat-api.md,
//! sections named per entry), not taken from the importer's own tables (`input::profile`):
//! the simulator is the importer's test oracle, so a misspelt tag or enum value, a wrong
//! kind or limit on the importer's side must be refused here, not repeated.

use std::collections::HashSet;

use serde_json::Value;

use super::MAX_USER_ID_BYTES;

/// How Chat types one profile value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A JSON string of at most this many UTF-8 bytes (40601 above it).
    Text { max_bytes: usize },
    /// A JSON number in 0..=4294967295 (40605 outside it).
    Uint32,
    /// A JSON string that is exactly one of these values (40605 otherwise).
    Enum(&'static [&'static str]),
}

/// The longest string value Chat accepts, in UTF-8 bytes (spec §3.1, code 40601).
const MAX_STRING_BYTES: usize = 500;

/// The standard profile fields: tag, kind, limit (spec §3.2, table "Standard profile fields";
/// JSON types also in §7 gotcha 1).
pub(super) const STANDARD_FIELDS: [(&str, Kind); 12] = [
    // §3.2 Nick: string → JSON string, ≤ 500 bytes.
    ("Tag_Profile_IM_Nick", Kind::Text { max_bytes: 500 }),
    // §3.2 Gender: enum string.
    (
        "Tag_Profile_IM_Gender",
        Kind::Enum(&[
            "Gender_Type_Unknown",
            "Gender_Type_Female",
            "Gender_Type_Male",
        ]),
    ),
    // §3.2 BirthDay: uint32 → JSON number (YYYYMMDD is only the recommended format).
    ("Tag_Profile_IM_BirthDay", Kind::Uint32),
    // §3.2 Location: ≤ 16 bytes in the 2023 EN table; the newest CN page (2024-10-10) says
    // 500. The simulator follows the newest page, as Chat does today (issue 11, item 15).
    ("Tag_Profile_IM_Location", Kind::Text { max_bytes: 500 }),
    // §3.2 SelfSignature: string, ≤ 500 bytes.
    (
        "Tag_Profile_IM_SelfSignature",
        Kind::Text { max_bytes: 500 },
    ),
    // §3.2 AllowType: enum string.
    (
        "Tag_Profile_IM_AllowType",
        Kind::Enum(&[
            "AllowType_Type_NeedConfirm",
            "AllowType_Type_AllowAny",
            "AllowType_Type_DenyAny",
        ]),
    ),
    // §3.2 Language: uint32 → JSON number.
    ("Tag_Profile_IM_Language", Kind::Uint32),
    // §3.2 Image: string (a URL), ≤ 500 bytes.
    ("Tag_Profile_IM_Image", Kind::Text { max_bytes: 500 }),
    // §3.2 AdminForbidType: enum string.
    (
        "Tag_Profile_IM_AdminForbidType",
        Kind::Enum(&["AdminForbid_Type_None", "AdminForbid_Type_SendOut"]),
    ),
    // §3.2 Level: uint32 → JSON number.
    ("Tag_Profile_IM_Level", Kind::Uint32),
    // §3.2 Role: uint32 → JSON number.
    ("Tag_Profile_IM_Role", Kind::Uint32),
    // §3.2 MsgSettings: uint32 → JSON number; only in the older tables (§8 leaves open whether
    // Chat still accepts it). The simulator accepts it.
    ("Tag_Profile_IM_MsgSettings", Kind::Uint32),
];

/// §3.3: a custom tag is this prefix plus a keyword configured in the console.
const CUSTOM_TAG_PREFIX: &str = "Tag_Profile_Custom_";

/// §3.3: custom fields hold strings (uint32/uint64 are not supported for them), ≤ 500 bytes.
const CUSTOM_KIND: Kind = Kind::Text {
    max_bytes: MAX_STRING_BYTES,
};

/// §5.2: account_import writes `Nick` to this tag and `FaceUrl` to [`IMAGE_TAG`], and refuses
/// either over [`MAX_VALUE_BYTES`] with 40601.
pub(super) const NICK_TAG: &str = "Tag_Profile_IM_Nick";
pub(super) const IMAGE_TAG: &str = "Tag_Profile_IM_Image";
pub(super) const MAX_VALUE_BYTES: usize = MAX_STRING_BYTES;

/// The kind of a tag Chat knows (a standard field or one of the app's `custom` keywords).
/// Only the exact spellings of the spec are known.
pub(super) fn tag_kind(custom: &HashSet<String>, tag: &str) -> Option<Kind> {
    STANDARD_FIELDS
        .iter()
        .find(|(name, _)| *name == tag)
        .map(|(_, kind)| *kind)
        .or_else(|| {
            tag.strip_prefix(CUSTOM_TAG_PREFIX)
                .filter(|keyword| custom.contains(*keyword))
                .map(|_| CUSTOM_KIND)
        })
}

/// One item against Chat's rules (spec §2.4: 40009 unknown tag, 40610 wrong JSON type,
/// 40605 bad value, 40601 too long), for an app with the `custom` keywords.
pub(super) fn check_item(
    custom: &HashSet<String>,
    tag: &str,
    value: &Value,
) -> Result<(), (u32, String)> {
    let shown = clip(tag);
    let kind = tag_kind(custom, tag)
        .ok_or_else(|| (40009, format!("profile tag {shown} does not exist")))?;
    let wrong_type = || (40610, format!("{shown} has a value of the wrong JSON type"));
    match (kind, value) {
        (Kind::Uint32, Value::Number(n)) => match n.as_u64() {
            Some(n) if n <= u64::from(u32::MAX) => Ok(()),
            _ => Err((40605, format!("{shown}: {n} is not a uint32"))),
        },
        (Kind::Text { max_bytes }, Value::String(s)) if s.len() > max_bytes => Err((
            40601,
            format!("{shown} is {} bytes; at most {max_bytes} allowed", s.len()),
        )),
        (Kind::Text { .. }, Value::String(_)) => Ok(()),
        (Kind::Enum(allowed), Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
        (Kind::Enum(_), Value::String(s)) => Err((
            40605,
            format!("{shown}: {:?} is not an allowed value", clip(s)),
        )),
        _ => Err(wrong_type()),
    }
}

/// Chat's UserID rule (spec §5.1): 1 to 32 bytes of `A-Za-z0-9_-` (the official UserSig
/// libraries' wording; the Use Limits page says letters and digits, no special characters).
pub(super) fn valid_user_id(user: &str) -> bool {
    (1..=MAX_USER_ID_BYTES).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A value shortened to 40 characters for a message.
pub(super) fn clip(text: &str) -> String {
    const LIMIT: usize = 40;
    match text.char_indices().nth(LIMIT) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_rule_is_the_spec_pattern() {
        for good in ["a", "A9_-z", "user_0001", "u-1", &"x".repeat(32)] {
            assert!(valid_user_id(good), "{good:?}");
        }
        let too_long = "x".repeat(33);
        for bad in [
            "",
            &too_long,
            "bad user!",
            "a b",
            "a.b",
            "a@b",
            "a/b",
            "ü",
            "名前",
            "a\n",
            "a+b",
        ] {
            assert!(!valid_user_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn clip_keeps_short_text_and_cuts_long_text_on_a_character() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(41);
        assert_eq!(clip(&long), format!("{}…", "é".repeat(40)));
    }
}
