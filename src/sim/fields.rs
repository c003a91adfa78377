//! Chat's profile fields as the simulator checks them (kinds, limits, enum values, custom
//! keywords) and its UserID rule.

use serde_json::Value;

use super::state::Sim;
use super::MAX_USER_ID_BYTES;
use crate::profile::{StandardField, ValueKind, CUSTOM_TAG_PREFIX, MAX_STRING_BYTES};

impl Sim {
    /// The value kind of a tag Chat knows (a standard field or a configured custom keyword).
    /// Only the exact spellings Chat uses are accepted.
    pub(super) fn tag_kind(&self, tag: &str) -> Option<ValueKind> {
        StandardField::ALL
            .into_iter()
            .find(|field| field.tag() == tag)
            .map(StandardField::kind)
            .or_else(|| {
                tag.strip_prefix(CUSTOM_TAG_PREFIX)
                    .filter(|keyword| self.custom_fields.contains(*keyword))
                    .map(|_| ValueKind::Text {
                        max_bytes: MAX_STRING_BYTES,
                    })
            })
    }

    /// One item against Chat's rules.
    pub(super) fn check_item(&self, tag: &str, value: &Value) -> Result<(), (u32, String)> {
        let shown = clip(tag);
        let kind = self
            .tag_kind(tag)
            .ok_or_else(|| (40009, format!("profile tag {shown} does not exist")))?;
        let wrong_type = || (40610, format!("{shown} has a value of the wrong JSON type"));
        match kind {
            ValueKind::Uint32 | ValueKind::Date => match value {
                Value::Number(n) if n.as_u64().is_some_and(|n| n <= u64::from(u32::MAX)) => Ok(()),
                Value::Number(n) => Err((40605, format!("{shown}: {n} is not a uint32"))),
                _ => Err(wrong_type()),
            },
            ValueKind::Text { max_bytes } => match value {
                Value::String(s) if s.len() > max_bytes => Err((
                    40601,
                    format!("{shown} is {} bytes; at most {max_bytes} allowed", s.len()),
                )),
                Value::String(_) => Ok(()),
                _ => Err(wrong_type()),
            },
            ValueKind::Enum(spec) => match value {
                Value::String(s) if spec.values.iter().any(|(exact, _)| exact == s) => Ok(()),
                Value::String(s) => Err((
                    40605,
                    format!("{shown}: {:?} is not an allowed value", clip(s)),
                )),
                _ => Err(wrong_type()),
            },
        }
    }
}

/// The profile tags account_import writes Nick and FaceUrl to.
pub(super) const NICK_TAG: &str = "Tag_Profile_IM_Nick";
pub(super) const IMAGE_TAG: &str = "Tag_Profile_IM_Image";
/// The longest Nick / FaceUrl account_import accepts.
pub(super) const MAX_VALUE_BYTES: usize = MAX_STRING_BYTES;

pub(super) fn valid_user_id(user: &str) -> bool {
    !user.is_empty() && user.len() <= MAX_USER_ID_BYTES
}

/// A value shortened for a message.
pub(super) fn clip(text: &str) -> String {
    crate::profile::clip(text)
}
