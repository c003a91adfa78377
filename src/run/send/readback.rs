//! The batch path's self-check: reads a sample of batched users back with portrait_get and
//! says whether the Nick and Image sent through multiaccount_import landed.

use crate::chat::accounts::{AccountEntry, BATCH};
use crate::chat::api::command::PORTRAIT_GET;
use crate::chat::api::ChatApi;
use crate::chat::portrait::{get_request, read_answer, UserRead};
use crate::chat::retry::Answer;
use crate::input::profile::{StandardField, Tag};

/// What reading a sample back showed.
#[derive(Debug)]
pub(super) enum ReadBack {
    /// Every sampled user holds the Nick and Image sent.
    Landed {
        calls: u64,
    },
    /// Some did not: how many, and one example in words.
    NotLanded {
        calls: u64,
        wrong: u64,
        example: String,
    },
    /// portrait_get could not tell (it failed, or answered something unreadable).
    Unknown {
        calls: u64,
        why: String,
    },
    Stopped {
        calls: u64,
    },
    Fatal {
        calls: u64,
        why: String,
    },
}

/// Reads `sample` back, up to 100 users a call, and compares.
pub(super) async fn read_back(api: &ChatApi, sample: &[AccountEntry]) -> ReadBack {
    let tags = [nick_tag(), image_tag()];
    let mut calls = 0;
    let (mut wrong, mut example) = (0u64, None);
    for chunk in sample.chunks(BATCH) {
        let users: Vec<&str> = chunk.iter().map(|e| e.user_id.as_str()).collect();
        let body = get_request(&users, &tags);
        calls += 1;
        let raw = match api.call(PORTRAIT_GET, body).await.0 {
            Answer::Ok(_, raw) => raw,
            Answer::Failed { code, message } => {
                let why = format!("portrait_get failed: {code} {message}");
                return ReadBack::Unknown { calls, why };
            }
            Answer::Fatal { why, .. } => return ReadBack::Fatal { calls, why },
            Answer::Stopped => return ReadBack::Stopped { calls },
        };
        let Ok(reads) = read_answer(&raw, &users) else {
            let why = "portrait_get answered something unreadable".to_string();
            return ReadBack::Unknown { calls, why };
        };
        for (entry, read) in chunk.iter().zip(&reads) {
            if let Some(difference) = difference(read, entry) {
                wrong += 1;
                example.get_or_insert(difference);
            }
        }
    }
    match example {
        None => ReadBack::Landed { calls },
        Some(example) => ReadBack::NotLanded {
            calls,
            wrong,
            example,
        },
    }
}

fn nick_tag() -> String {
    Tag::Standard(StandardField::Nick).name()
}

fn image_tag() -> String {
    Tag::Standard(StandardField::Image).name()
}

/// How the user's profile differs from what was sent, in words; None if it holds it.
fn difference(read: &UserRead, entry: &AccountEntry) -> Option<String> {
    let user = &entry.user_id;
    let held = match read {
        UserRead::Held(held) => held,
        UserRead::NotAnAccount => return Some(format!("portrait_get answered 40003 for {user}")),
        UserRead::Unread(why) => return Some(format!("{user}: {why}")),
    };
    let sent = [
        ("Nick", nick_tag(), &entry.nick),
        ("Image", image_tag(), &entry.face_url),
    ];
    for (name, tag, value) in sent {
        let Some(value) = value else { continue };
        // Chat leaves unset values out, so an empty string reads back as absent.
        let actual = held.get(tag.as_str()).map_or(Some(""), |v| v.as_str());
        if actual != Some(value.as_str()) {
            let actual = actual.map_or("(not a string)".to_string(), |a| format!("{:?}", clip(a)));
            return Some(format!(
                "{user}: {name} is {actual}, sent {:?}",
                clip(value)
            ));
        }
    }
    None
}

/// At most 40 characters of a value, for the summary.
fn clip(value: &str) -> String {
    match value.char_indices().nth(40) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_string(),
    }
}
