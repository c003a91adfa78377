//! Chat's profile fields: the tag table, and turning one cell into the exact `Value` Chat expects.
//!
//! This module is pure: no I/O, no CSV. It owns every per-value rule from the spec (§3) and the
//! Chat error code each violation corresponds to, so a local rejection reads like a server one.

use std::fmt;

/// The longest string value Chat accepts, in UTF-8 bytes (spec §3.1, code 40601).
pub const MAX_STRING_BYTES: usize = 500;
/// Location's limit as Chat's newest page (Chinese, updated 2024-10-10) gives it: 500 bytes.
/// The older English table says 16 (spec §3.2); refusing locally at 16 would make rows Chat
/// accepts impossible to import ("Kuala Lumpur, Malaysia" is 22 bytes), so the dry run only
/// warns above `LEGACY_LOCATION_BYTES` and Chat's own 40601 decides.
pub const MAX_LOCATION_BYTES: usize = 500;
/// Location's limit in Chat's older English docs, enforced with `--strict-location`.
pub const LEGACY_LOCATION_BYTES: usize = 16;
/// Custom keywords: letters only, at most 8 (spec §3.3).
pub const MAX_CUSTOM_KEYWORD_LEN: usize = 8;
/// Chat allows at most 20 custom profile fields per app (spec §3.3).
pub const MAX_CUSTOM_COLUMNS: usize = 20;
/// Prefix of every custom tag.
pub const CUSTOM_TAG_PREFIX: &str = "Tag_Profile_Custom_";

/// Chat's error codes that name the same problems our local rules catch (spec §2.4).
pub mod code {
    /// Unknown profile tag.
    pub const UNKNOWN_TAG: u32 = 40009;
    /// Value longer than the limit.
    pub const TOO_LONG: u32 = 40601;
    /// Bad value for a standard field (unknown enum, out of range, impossible date).
    pub const BAD_VALUE: u32 = 40605;
    /// Wrong JSON type for a standard field (text where a number is expected).
    pub const WRONG_TYPE: u32 = 40610;
    /// Incorrect request parameter; we use it for an invalid UserID.
    pub const BAD_PARAMETER: u32 = 40001;
}

/// The standard profile fields (spec §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StandardField {
    Nick,
    Gender,
    BirthDay,
    Location,
    SelfSignature,
    AllowType,
    Language,
    Image,
    AdminForbidType,
    Level,
    Role,
    MsgSettings,
}

/// How a field's value is typed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A JSON string of at most this many UTF-8 bytes.
    Text { max_bytes: usize },
    /// A JSON number in 0..=u32::MAX.
    Uint32,
    /// A uint32 holding YYYYMMDD; also accepts `YYYY-MM-DD`.
    Date,
    /// One of a fixed set of Chat strings.
    Enum(&'static EnumSpec),
}

/// An enum field: its exact Chat values, the friendly spellings of each, and what `--empty clear`
/// sends.
#[derive(Debug, PartialEq, Eq)]
pub struct EnumSpec {
    /// (exact Chat value, friendly forms accepted case-insensitively)
    pub values: &'static [(&'static str, &'static [&'static str])],
    /// The value sent for an empty cell under `--empty clear`: Chat's documented default.
    pub cleared: &'static str,
}

static GENDER: EnumSpec = EnumSpec {
    values: &[
        ("Gender_Type_Unknown", &["unknown", "u", "none", "unset"]),
        ("Gender_Type_Female", &["female", "f"]),
        ("Gender_Type_Male", &["male", "m"]),
    ],
    cleared: "Gender_Type_Unknown",
};

static ALLOW_TYPE: EnumSpec = EnumSpec {
    values: &[
        (
            "AllowType_Type_NeedConfirm",
            &["need_confirm", "needconfirm", "confirm"],
        ),
        (
            "AllowType_Type_AllowAny",
            &["allow_any", "allowany", "allow"],
        ),
        ("AllowType_Type_DenyAny", &["deny_any", "denyany", "deny"]),
    ],
    cleared: "AllowType_Type_NeedConfirm",
};

static ADMIN_FORBID_TYPE: EnumSpec = EnumSpec {
    values: &[
        ("AdminForbid_Type_None", &["none"]),
        ("AdminForbid_Type_SendOut", &["send_out", "sendout"]),
    ],
    cleared: "AdminForbid_Type_None",
};

impl StandardField {
    pub const ALL: [StandardField; 12] = [
        StandardField::Nick,
        StandardField::Gender,
        StandardField::BirthDay,
        StandardField::Location,
        StandardField::SelfSignature,
        StandardField::AllowType,
        StandardField::Language,
        StandardField::Image,
        StandardField::AdminForbidType,
        StandardField::Level,
        StandardField::Role,
        StandardField::MsgSettings,
    ];

    /// The short column name (also the part after `Tag_Profile_IM_`).
    pub fn short_name(self) -> &'static str {
        match self {
            StandardField::Nick => "Nick",
            StandardField::Gender => "Gender",
            StandardField::BirthDay => "BirthDay",
            StandardField::Location => "Location",
            StandardField::SelfSignature => "SelfSignature",
            StandardField::AllowType => "AllowType",
            StandardField::Language => "Language",
            StandardField::Image => "Image",
            StandardField::AdminForbidType => "AdminForbidType",
            StandardField::Level => "Level",
            StandardField::Role => "Role",
            StandardField::MsgSettings => "MsgSettings",
        }
    }

    /// The full Chat tag, e.g. `Tag_Profile_IM_Nick`.
    pub fn tag(self) -> &'static str {
        match self {
            StandardField::Nick => "Tag_Profile_IM_Nick",
            StandardField::Gender => "Tag_Profile_IM_Gender",
            StandardField::BirthDay => "Tag_Profile_IM_BirthDay",
            StandardField::Location => "Tag_Profile_IM_Location",
            StandardField::SelfSignature => "Tag_Profile_IM_SelfSignature",
            StandardField::AllowType => "Tag_Profile_IM_AllowType",
            StandardField::Language => "Tag_Profile_IM_Language",
            StandardField::Image => "Tag_Profile_IM_Image",
            StandardField::AdminForbidType => "Tag_Profile_IM_AdminForbidType",
            StandardField::Level => "Tag_Profile_IM_Level",
            StandardField::Role => "Tag_Profile_IM_Role",
            StandardField::MsgSettings => "Tag_Profile_IM_MsgSettings",
        }
    }

    pub fn kind(self) -> ValueKind {
        match self {
            StandardField::Nick | StandardField::SelfSignature | StandardField::Image => {
                ValueKind::Text {
                    max_bytes: MAX_STRING_BYTES,
                }
            }
            StandardField::Location => ValueKind::Text {
                max_bytes: MAX_LOCATION_BYTES,
            },
            StandardField::BirthDay => ValueKind::Date,
            StandardField::Language
            | StandardField::Level
            | StandardField::Role
            | StandardField::MsgSettings => ValueKind::Uint32,
            StandardField::Gender => ValueKind::Enum(&GENDER),
            StandardField::AllowType => ValueKind::Enum(&ALLOW_TYPE),
            StandardField::AdminForbidType => ValueKind::Enum(&ADMIN_FORBID_TYPE),
        }
    }

    /// Looks a field up by its full tag or its short name, case-insensitively.
    pub fn lookup(name: &str) -> Option<StandardField> {
        Self::ALL.into_iter().find(|field| {
            name.eq_ignore_ascii_case(field.short_name()) || name.eq_ignore_ascii_case(field.tag())
        })
    }
}

/// A profile tag: a standard field or a custom one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Tag {
    Standard(StandardField),
    /// The keyword after `Tag_Profile_Custom_`, spelled as in the header.
    Custom(String),
}

impl Tag {
    /// The full tag string sent to Chat.
    pub fn name(&self) -> String {
        match self {
            Tag::Standard(field) => field.tag().to_string(),
            Tag::Custom(keyword) => format!("{CUSTOM_TAG_PREFIX}{keyword}"),
        }
    }

    pub fn kind(&self) -> ValueKind {
        match self {
            Tag::Standard(field) => field.kind(),
            Tag::Custom(_) => ValueKind::Text {
                max_bytes: MAX_STRING_BYTES,
            },
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Checks a custom keyword against Chat's rule: letters only, 1 to 8 of them.
pub fn check_custom_keyword(keyword: &str) -> Result<(), String> {
    if keyword.is_empty() {
        return Err("the custom keyword is empty".into());
    }
    if !keyword.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!(
            "custom keyword \"{keyword}\" must be letters only (A-Z, a-z)"
        ));
    }
    if keyword.len() > MAX_CUSTOM_KEYWORD_LEN {
        return Err(format!(
            "custom keyword \"{keyword}\" is {} letters; at most {MAX_CUSTOM_KEYWORD_LEN} allowed",
            keyword.len()
        ));
    }
    Ok(())
}

/// A value ready for the wire, borrowed from the cell (or a static Chat enum string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Text(&'a str),
    Number(u32),
}

impl serde::Serialize for Value<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Text(text) => serializer.serialize_str(text),
            Value::Number(number) => serializer.serialize_u32(*number),
        }
    }
}

/// One broken rule for one value: the Chat code that names it and a human sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    pub code: u32,
    /// A short, stable name for the rule, used to group counts in the summary.
    pub rule: &'static str,
    pub message: String,
}

impl ValueError {
    fn new(code: u32, rule: &'static str, message: String) -> Self {
        ValueError {
            code,
            rule,
            message,
        }
    }
}

/// What an empty cell means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmptyPolicy {
    /// Leave the tag out of the request, so the user's existing value stays.
    #[default]
    Skip,
    /// Send the field's cleared value: "" for text, 0 for numbers, the default for enums.
    Clear,
}

/// Turns one cell into the value Chat expects, or says which rule it breaks.
///
/// `Ok(None)` means the cell is empty and the policy is to leave the tag out.
#[inline]
pub fn normalize(
    kind: ValueKind,
    cell: &str,
    empty: EmptyPolicy,
) -> Result<Option<Value<'_>>, ValueError> {
    // Blank means empty or ASCII white space only; other Unicode spaces are content.
    let trimmed = cell.trim_ascii();
    if trimmed.is_empty() {
        return Ok(match empty {
            EmptyPolicy::Skip => None,
            EmptyPolicy::Clear => Some(cleared_value(kind)),
        });
    }
    match kind {
        // Text keeps its spaces: they are part of the value the user wrote.
        ValueKind::Text { max_bytes } => normalize_text(cell, max_bytes).map(Some),
        ValueKind::Uint32 => parse_uint32(trimmed).map(|n| Some(Value::Number(n))),
        ValueKind::Date => parse_birthday(trimmed).map(|n| Some(Value::Number(n))),
        ValueKind::Enum(spec) => normalize_enum(spec, trimmed).map(Some),
    }
}

/// The value `--empty clear` sends for each kind.
pub fn cleared_value(kind: ValueKind) -> Value<'static> {
    match kind {
        ValueKind::Text { .. } => Value::Text(""),
        ValueKind::Uint32 | ValueKind::Date => Value::Number(0),
        ValueKind::Enum(spec) => Value::Text(spec.cleared),
    }
}

fn normalize_text(cell: &str, max_bytes: usize) -> Result<Value<'_>, ValueError> {
    let bytes = cell.len();
    if bytes > max_bytes {
        return Err(ValueError::new(
            code::TOO_LONG,
            "too long",
            format!(
                "is {bytes} bytes of UTF-8 ({} characters); at most {max_bytes} bytes allowed",
                cell.chars().count()
            ),
        ));
    }
    Ok(Value::Text(cell))
}

/// Parses a uint32: ASCII digits only (leading zeros allowed), at most 4294967295.
pub fn parse_uint32(text: &str) -> Result<u32, ValueError> {
    // One pass: the value saturates just above the maximum, so any length of digits is safe.
    let mut number: u64 = 0;
    for &b in text.as_bytes() {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return Err(not_a_uint32(text));
        }
        number = (number * 10 + u64::from(digit)).min(u64::from(u32::MAX) + 1);
    }
    if text.is_empty() {
        return Err(not_a_uint32(text));
    }
    u32::try_from(number).map_err(|_| {
        ValueError::new(
            code::BAD_VALUE,
            "not a uint32",
            format!("{} is above the uint32 maximum 4294967295", clip(text)),
        )
    })
}

/// Why `text`, which holds something other than digits, is not a uint32.
#[cold]
fn not_a_uint32(text: &str) -> ValueError {
    let looks_numeric = text
        .strip_prefix(['-', '+'])
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()));
    if looks_numeric {
        ValueError::new(
            code::BAD_VALUE,
            "not a uint32",
            format!("\"{text}\" must be a whole number from 0 to 4294967295 without a sign"),
        )
    } else {
        ValueError::new(
            code::WRONG_TYPE,
            "not a number",
            format!("\"{}\" is not a whole number (digits 0-9 only)", clip(text)),
        )
    }
}

/// BirthDay: `YYYYMMDD` or `YYYY-MM-DD`, a real calendar date, sent as the integer YYYYMMDD.
/// A plain `0` is accepted too, since it is how Chat represents "not set".
pub fn parse_birthday(text: &str) -> Result<u32, ValueError> {
    let not_a_date = || {
        ValueError::new(
            code::WRONG_TYPE,
            "not a number",
            format!(
                "\"{}\" is not a date; use YYYYMMDD or YYYY-MM-DD",
                clip(text)
            ),
        )
    };
    let bad_date = || {
        ValueError::new(
            code::BAD_VALUE,
            "not a date",
            format!("\"{}\" is not a real calendar date (YYYYMMDD)", clip(text)),
        )
    };
    // The common shapes are split into year, month and day without any division.
    let bytes = text.as_bytes();
    let parts = match bytes.len() {
        10 if bytes[4] == b'-' && bytes[7] == b'-' => {
            Some((&bytes[..4], &bytes[5..7], &bytes[8..]))
        }
        8 => Some((&bytes[..4], &bytes[4..6], &bytes[6..])),
        _ => None,
    };
    if let Some((year, month, day)) = parts {
        match (digits(year), digits(month), digits(day)) {
            (Some(0), Some(0), Some(0)) => return Ok(0),
            (Some(year), Some(month), Some(day)) if is_real_date(year, month, day) => {
                return Ok(year * 10_000 + month * 100 + day)
            }
            (Some(_), Some(_), Some(_)) => return Err(bad_date()),
            _ if bytes.len() == 10 => return Err(not_a_date()),
            // Eight characters that are not all digits: judged as a number below.
            _ => {}
        }
    }
    // Any other length: a plain number, where only 0 ("not set") is a valid date.
    let number = parse_uint32(text).map_err(|err| {
        if err.code == code::WRONG_TYPE {
            not_a_date()
        } else {
            err
        }
    })?;
    if number == 0 {
        return Ok(0);
    }
    Err(bad_date())
}

/// The value of a short run of ASCII digits, or None if any byte is not a digit.
fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |number, &b| {
        let digit = b.wrapping_sub(b'0');
        (digit < 10).then(|| number * 10 + u32::from(digit))
    })
}

fn is_real_date(year: u32, month: u32, day: u32) -> bool {
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    year >= 1 && (1..=days_in_month).contains(&day)
}

fn normalize_enum(spec: &EnumSpec, text: &str) -> Result<Value<'static>, ValueError> {
    for (exact, friendly) in spec.values {
        if text.eq_ignore_ascii_case(exact) || friendly.iter().any(|f| text.eq_ignore_ascii_case(f))
        {
            return Ok(Value::Text(exact));
        }
    }
    let accepted: Vec<String> = spec
        .values
        .iter()
        .map(|(exact, friendly)| format!("{exact} ({})", friendly.join("/")))
        .collect();
    Err(ValueError::new(
        code::BAD_VALUE,
        "not an allowed value",
        format!("\"{}\" is not one of: {}", clip(text), accepted.join(", ")),
    ))
}

/// How strictly UserIDs are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserIdRule {
    /// 1-32 bytes of `A-Za-z0-9_-` (the official libraries' rule, spec §5.1).
    #[default]
    Strict,
    /// 1-32 bytes of printable ASCII (0x20-0x7e), the client SDK's looser rule.
    PrintableAscii,
}

/// The bytes each UserID rule allows, indexed by byte value.
static STRICT_USER_ID_BYTES: [bool; 256] = user_id_bytes(UserIdRule::Strict);
static PRINTABLE_USER_ID_BYTES: [bool; 256] = user_id_bytes(UserIdRule::PrintableAscii);

const fn user_id_bytes(rule: UserIdRule) -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = match rule {
            UserIdRule::Strict => b.is_ascii_alphanumeric() || b == b'_' || b == b'-',
            UserIdRule::PrintableAscii => b >= 0x20 && b <= 0x7e,
        };
        i += 1;
    }
    table
}

/// Checks a UserID.
pub fn check_user_id(user_id: &str, rule: UserIdRule) -> Result<(), ValueError> {
    let bad = |message: String| ValueError::new(code::BAD_PARAMETER, "bad UserID", message);
    if user_id.is_empty() {
        return Err(bad("is empty; every row needs a UserID".into()));
    }
    if user_id.len() > 32 {
        return Err(bad(format!(
            "\"{}\" is {} bytes; at most 32 allowed",
            clip(user_id),
            user_id.len()
        )));
    }
    let allowed = |b: u8| match rule {
        UserIdRule::Strict => b.is_ascii_alphanumeric() || b == b'_' || b == b'-',
        UserIdRule::PrintableAscii => (0x20..=0x7e).contains(&b),
    };
    // Every row passes here, so the common case is one table lookup per byte; only a bad ID
    // is decoded to name the offending character.
    let table = match rule {
        UserIdRule::Strict => &STRICT_USER_ID_BYTES,
        UserIdRule::PrintableAscii => &PRINTABLE_USER_ID_BYTES,
    };
    if user_id.bytes().all(|b| table[usize::from(b)]) {
        return Ok(());
    }
    if let Some(c) = user_id
        .chars()
        .find(|c| !c.is_ascii() || !allowed(*c as u8))
    {
        let allowed_text = match rule {
            UserIdRule::Strict => "letters, digits, '_' and '-'",
            UserIdRule::PrintableAscii => "printable ASCII",
        };
        return Err(bad(format!(
            "\"{}\" contains {c:?}; only {allowed_text} are allowed",
            clip(user_id)
        )));
    }
    Ok(())
}

/// Shortens a value for an error message so a 10 MB cell never floods a terminal.
pub fn clip(text: &str) -> String {
    const LIMIT: usize = 40;
    if text.chars().count() <= LIMIT {
        return text.to_string();
    }
    let head: String = text.chars().take(LIMIT).collect();
    format!("{head}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(kind: ValueKind, cell: &str) -> Result<Option<Value<'_>>, ValueError> {
        normalize(kind, cell, EmptyPolicy::Skip)
    }

    #[test]
    fn text_limit_counts_utf8_bytes_not_characters() {
        let nick = StandardField::Nick.kind();
        // 166 CJK characters = 498 bytes, plus "ab" = 500 bytes.
        let at_limit = format!("{}ab", "中".repeat(166));
        assert_eq!(at_limit.len(), 500);
        assert!(text(nick, &at_limit).is_ok());
        let over = format!("{}abc", "中".repeat(166));
        assert_eq!(over.len(), 501);
        let err = text(nick, &over).unwrap_err();
        assert_eq!(err.code, 40601);
        assert!(err.message.contains("501 bytes"), "{}", err.message);
        // 125 four-byte emoji = 500 bytes; 126 = 504 bytes.
        assert!(text(nick, &"😀".repeat(125)).is_ok());
        assert_eq!(text(nick, &"😀".repeat(126)).unwrap_err().code, 40601);
        // 167 CJK characters are only 167 characters but 501 bytes.
        assert_eq!(text(nick, &"中".repeat(167)).unwrap_err().code, 40601);
    }

    #[test]
    fn location_follows_the_newest_500_byte_limit() {
        let location = StandardField::Location.kind();
        assert!(text(location, "Kuala Lumpur, Malaysia").is_ok());
        assert!(text(location, "深圳市南山区").is_ok());
        assert!(text(location, &"a".repeat(500)).is_ok());
        assert_eq!(text(location, &"a".repeat(501)).unwrap_err().code, 40601);
    }

    #[test]
    fn uint32_boundaries() {
        let level = StandardField::Level.kind();
        assert_eq!(
            text(level, "4294967295").unwrap(),
            Some(Value::Number(u32::MAX))
        );
        let over = text(level, "4294967296").unwrap_err();
        assert_eq!(over.code, 40605);
        assert_eq!(text(level, "0").unwrap(), Some(Value::Number(0)));
        assert_eq!(text(level, "007").unwrap(), Some(Value::Number(7)));
        assert_eq!(text(level, " 12 ").unwrap(), Some(Value::Number(12)));
        assert_eq!(text(level, "-1").unwrap_err().code, 40605);
        assert_eq!(text(level, "+1").unwrap_err().code, 40605);
        assert_eq!(text(level, "1 2").unwrap_err().code, 40610);
        assert_eq!(text(level, "12.5").unwrap_err().code, 40610);
        assert_eq!(text(level, "ten").unwrap_err().code, 40610);
        assert_eq!(
            text(level, "99999999999999999999999").unwrap_err().code,
            40605
        );
        assert_eq!(
            text(level, "0000000000004294967295").unwrap(),
            Some(Value::Number(u32::MAX))
        );
        assert_eq!(
            text(level, "99999999999999999999x").unwrap_err().code,
            40610
        );
    }

    #[test]
    fn birthday_is_a_real_date_sent_as_yyyymmdd() {
        let birthday = StandardField::BirthDay.kind();
        assert_eq!(
            text(birthday, "20200229").unwrap(),
            Some(Value::Number(20200229))
        );
        assert_eq!(text(birthday, "20190229").unwrap_err().code, 40605);
        assert_eq!(
            text(birthday, "2020-02-29").unwrap(),
            Some(Value::Number(20200229))
        );
        assert_eq!(text(birthday, "2019-02-29").unwrap_err().code, 40605);
        assert_eq!(text(birthday, "20001301").unwrap_err().code, 40605);
        assert_eq!(text(birthday, "20000431").unwrap_err().code, 40605);
        assert_eq!(text(birthday, "19000229").unwrap_err().code, 40605);
        assert_eq!(
            text(birthday, "20000229").unwrap(),
            Some(Value::Number(20000229))
        );
        assert_eq!(text(birthday, "2000229").unwrap_err().code, 40605);
        assert_eq!(text(birthday, "1990/01/02").unwrap_err().code, 40610);
        assert_eq!(text(birthday, "0").unwrap(), Some(Value::Number(0)));
        // The shapes the fast path splits without parsing a number, and their neighbours.
        for (cell, expected) in [
            ("00000000", Ok(0)),
            ("0000-00-00", Ok(0)),
            ("1990-1-02x", Err(40610)),
            ("1990-00-10", Err(40605)),
            ("-1990010", Err(40605)),
            ("1990010x", Err(40610)),
            ("000019900102", Err(40605)),
        ] {
            let got = text(birthday, cell).map_err(|err| err.code);
            assert_eq!(got, expected.map(|n| Some(Value::Number(n))), "{cell}");
        }
    }

    /// The last day of every month is a real date, and the day after it is not, in leap and
    /// common years alike.
    #[test]
    fn the_last_day_of_each_month_is_a_real_date_and_the_next_is_not() {
        let birthday = StandardField::BirthDay.kind();
        for (year, month, last) in [
            (2023, 1, 31),
            (2023, 2, 28),
            (2024, 2, 29),
            (2000, 2, 29),
            (1900, 2, 28),
            (2023, 3, 31),
            (2023, 4, 30),
            (2023, 5, 31),
            (2023, 6, 30),
            (2023, 7, 31),
            (2023, 8, 31),
            (2023, 9, 30),
            (2023, 10, 31),
            (2023, 11, 30),
            (2023, 12, 31),
        ] {
            let date = year * 10_000 + month * 100 + last;
            for cell in [format!("{date}"), format!("{year:04}-{month:02}-{last:02}")] {
                assert_eq!(
                    text(birthday, &cell),
                    Ok(Some(Value::Number(date))),
                    "{cell}"
                );
            }
            let after = format!("{}", date + 1);
            assert_eq!(text(birthday, &after).unwrap_err().code, 40605, "{after}");
        }
    }

    /// A date whose separators are not both dashes, or with a character just past '9' in it,
    /// is not a date at all (40610), never read as one.
    #[test]
    fn a_date_with_a_stray_character_is_not_a_date() {
        let birthday = StandardField::BirthDay.kind();
        for cell in [
            "1990-01x15",
            "1990x01-15",
            "1990-01/15",
            "19900:15",
            "1990-0:-15",
        ] {
            assert_eq!(text(birthday, cell).unwrap_err().code, 40610, "{cell}");
        }
    }

    /// A sign with digits is a number out of range (40605); a sign alone is not a number (40610).
    #[test]
    fn a_sign_alone_is_not_a_number() {
        let level = StandardField::Level.kind();
        for cell in ["-", "+", "-x", "+-1"] {
            let err = text(level, cell).unwrap_err();
            assert_eq!(err.code, 40610, "{cell}");
            assert_eq!(err.rule, "not a number", "{cell}");
        }
        let err = text(level, "-5").unwrap_err();
        assert_eq!((err.code, err.rule), (40605, "not a uint32"));
    }

    #[test]
    fn enums_accept_exact_and_friendly_forms_and_send_the_exact_value() {
        let gender = StandardField::Gender.kind();
        for (input, sent) in [
            ("Gender_Type_Male", "Gender_Type_Male"),
            ("gender_type_male", "Gender_Type_Male"),
            ("male", "Gender_Type_Male"),
            ("M", "Gender_Type_Male"),
            ("Female", "Gender_Type_Female"),
            ("f", "Gender_Type_Female"),
            ("unknown", "Gender_Type_Unknown"),
            ("Gender_Type_Unknown", "Gender_Type_Unknown"),
        ] {
            assert_eq!(
                text(gender, input).unwrap(),
                Some(Value::Text(sent)),
                "{input}"
            );
        }
        assert_eq!(text(gender, "yes").unwrap_err().code, 40605);

        let allow = StandardField::AllowType.kind();
        for (input, sent) in [
            ("need_confirm", "AllowType_Type_NeedConfirm"),
            ("ALLOW_ANY", "AllowType_Type_AllowAny"),
            ("deny_any", "AllowType_Type_DenyAny"),
            ("AllowType_Type_DenyAny", "AllowType_Type_DenyAny"),
        ] {
            assert_eq!(text(allow, input).unwrap(), Some(Value::Text(sent)));
        }
        let forbid = StandardField::AdminForbidType.kind();
        for (input, sent) in [
            ("none", "AdminForbid_Type_None"),
            ("Send_Out", "AdminForbid_Type_SendOut"),
            ("AdminForbid_Type_SendOut", "AdminForbid_Type_SendOut"),
        ] {
            assert_eq!(text(forbid, input).unwrap(), Some(Value::Text(sent)));
        }
        assert_eq!(text(forbid, "blocked").unwrap_err().code, 40605);
    }

    #[test]
    fn custom_keyword_rules() {
        assert!(check_custom_keyword("Hobby").is_ok());
        assert!(check_custom_keyword("Abcdefgh").is_ok());
        assert!(check_custom_keyword("Abcdefghi").is_err());
        assert!(check_custom_keyword("Hob_by").is_err());
        assert!(check_custom_keyword("Level2").is_err());
        assert!(check_custom_keyword("").is_err());
    }

    #[test]
    fn empty_cells_follow_the_policy() {
        for field in StandardField::ALL {
            assert_eq!(normalize(field.kind(), "", EmptyPolicy::Skip), Ok(None));
            assert!(normalize(field.kind(), "  ", EmptyPolicy::Clear)
                .unwrap()
                .is_some());
        }
        assert_eq!(
            normalize(StandardField::Level.kind(), "", EmptyPolicy::Clear),
            Ok(Some(Value::Number(0)))
        );
        assert_eq!(
            normalize(StandardField::Gender.kind(), "", EmptyPolicy::Clear),
            Ok(Some(Value::Text("Gender_Type_Unknown")))
        );
        assert_eq!(
            normalize(StandardField::Nick.kind(), "", EmptyPolicy::Clear),
            Ok(Some(Value::Text("")))
        );
    }

    #[test]
    fn user_id_rules() {
        assert!(check_user_id("user_01-A", UserIdRule::Strict).is_ok());
        assert!(check_user_id(&"a".repeat(32), UserIdRule::Strict).is_ok());
        assert!(check_user_id(&"a".repeat(33), UserIdRule::Strict).is_err());
        assert!(check_user_id("", UserIdRule::Strict).is_err());
        assert!(check_user_id("a b", UserIdRule::Strict).is_err());
        assert!(check_user_id("a b", UserIdRule::PrintableAscii).is_ok());
        assert!(check_user_id("a@b.c", UserIdRule::PrintableAscii).is_ok());
        assert!(check_user_id("用户", UserIdRule::PrintableAscii).is_err());
        assert_eq!(
            check_user_id("a.b", UserIdRule::Strict).unwrap_err().code,
            40001
        );
    }

    /// A refused UserID's message names the character at fault, and the looser rule still
    /// refuses control characters and DEL.
    #[test]
    fn a_refused_user_id_names_the_character_at_fault() {
        let strict = check_user_id("ann smith", UserIdRule::Strict).unwrap_err();
        assert!(
            strict.message.contains("contains ' '"),
            "{}",
            strict.message
        );
        let accented = check_user_id("zoé", UserIdRule::Strict).unwrap_err();
        assert!(
            accented.message.contains("contains 'é'"),
            "{}",
            accented.message
        );
        for id in ["a\tb", "a\u{7f}", "\u{1}\u{2}", "\t"] {
            let err = check_user_id(id, UserIdRule::PrintableAscii).unwrap_err();
            assert_eq!(err.code, 40001, "{id:?}");
        }
        assert!(check_user_id(" ~!", UserIdRule::PrintableAscii).is_ok());
        // The character named is the first one the rule refuses, not an allowed '_' or '-'
        // before it.
        let after_allowed = check_user_id("ann_smith-jr x", UserIdRule::Strict).unwrap_err();
        assert!(
            after_allowed.message.contains("contains ' '"),
            "{}",
            after_allowed.message
        );
    }

    /// Every row's UserID is checked against a byte table first; a byte the table wrongly
    /// refused would send every such row down the slow path that names the bad character.
    /// The tables hold exactly what each rule allows (letters, digits, '_' and '-';
    /// or printable ASCII).
    #[test]
    fn the_user_id_byte_tables_hold_exactly_what_each_rule_allows() {
        for byte in 0..=255u8 {
            let strict = byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-';
            let printable = (0x20..=0x7e).contains(&byte);
            assert_eq!(
                STRICT_USER_ID_BYTES[usize::from(byte)],
                strict,
                "{byte:#04x}"
            );
            assert_eq!(
                PRINTABLE_USER_ID_BYTES[usize::from(byte)],
                printable,
                "{byte:#04x}"
            );
        }
    }

    #[test]
    fn lookup_by_short_name_or_tag_case_insensitively() {
        assert_eq!(StandardField::lookup("nick"), Some(StandardField::Nick));
        assert_eq!(
            StandardField::lookup("TAG_PROFILE_IM_BIRTHDAY"),
            Some(StandardField::BirthDay)
        );
        assert_eq!(StandardField::lookup("Nickname"), None);
    }
}
