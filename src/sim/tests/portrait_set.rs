//! portrait_set: values written, Chat's item rules, nothing partial.

use super::*;

#[tokio::test]
async fn valid_request_applies_and_keeps_other_tags() {
    let sim = SimHandle::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let url = set_url(&sim);
    let first = json!({"From_Account": "alice", "ProfileItem": [
        {"Tag": "Tag_Profile_IM_Nick", "Value": "Alice"},
        {"Tag": "Tag_Profile_IM_Gender", "Value": "Gender_Type_Female"},
        {"Tag": "Tag_Profile_IM_BirthDay", "Value": 19900102},
        {"Tag": "Tag_Profile_IM_Level", "Value": 4294967295u64},
        {"Tag": "Tag_Profile_Custom_Hobby", "Value": "chess"},
    ]});
    assert_eq!(code_of(&client, &url, &first).await, 0);
    assert_eq!(code_of(&client, &url, &nick("alice", "Al")).await, 0);
    let profiles = sim.profiles();
    let alice = &profiles["alice"];
    assert_eq!(alice["Tag_Profile_IM_Nick"], "Al");
    assert_eq!(alice["Tag_Profile_IM_Gender"], "Gender_Type_Female");
    assert_eq!(alice["Tag_Profile_IM_BirthDay"], 19900102);
    assert_eq!(alice["Tag_Profile_IM_Level"], 4294967295u64);
    assert_eq!(alice["Tag_Profile_Custom_Hobby"], "chess");
    let stats = sim.stats();
    assert_eq!((stats.requests, stats.applied, stats.count("0")), (2, 2, 2));
    assert_eq!(stats.max_in_flight_per_user, 1);
    assert!(stats.to_string().contains("answers    0=2"), "{stats}");
}

#[tokio::test]
async fn item_rules_match_chat_and_nothing_partial_is_written() {
    let mut cfg = config();
    cfg.accounts = Some(["alice".to_string()].into_iter().collect());
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let url = set_url(&sim);
    let item = |tag: &str, value: Value| {
        json!({"From_Account": "alice", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_Nick", "Value": "partial"},
            {"Tag": tag, "Value": value},
        ]})
    };
    let cases = [
        (item("Tag_Profile_IM_Nickname", json!("x")), 40009),
        (item("tag_profile_im_nick", json!("x")), 40009),
        (item("Tag_Profile_Custom_Pet", json!("x")), 40009),
        (item("Tag_Profile_IM_Level", json!("10")), 40610),
        (item("Tag_Profile_IM_Level", json!(-1)), 40605),
        (item("Tag_Profile_IM_Level", json!(4294967296u64)), 40605),
        (item("Tag_Profile_IM_BirthDay", json!("19900102")), 40610),
        (item("Tag_Profile_IM_Nick", json!("n".repeat(501))), 40601),
        (item("Tag_Profile_IM_Nick", json!(5)), 40610),
        (
            item("Tag_Profile_Custom_Hobby", json!("h".repeat(501))),
            40601,
        ),
        (
            item("Tag_Profile_IM_Location", json!("x".repeat(501))),
            40601,
        ),
        (item("Tag_Profile_IM_Gender", json!("male")), 40605),
        (
            item("Tag_Profile_IM_Gender", json!("gender_type_male")),
            40605,
        ),
        (item("Tag_Profile_IM_Gender", json!(1)), 40610),
        (
            json!({"From_Account": "mallory", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_Nick", "Value": "M"}]}),
            40003,
        ),
        (
            json!({"ProfileItem": [{"Tag": "Tag_Profile_IM_Nick", "Value": "M"}]}),
            40001,
        ),
        (json!({"From_Account": 7, "ProfileItem": []}), 40001),
        (json!({"From_Account": "alice", "ProfileItem": []}), 40001),
        (
            json!({"From_Account": "alice", "ProfileItem": [{"Tag": "Tag_Profile_IM_Nick"}]}),
            40001,
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(code_of(&client, &url, &body).await, expected, "{body}");
    }
    let not_json = client.post(&url).body("{not json").send().await.unwrap();
    let answer: Value = not_json.json().await.unwrap();
    assert_eq!(answer["ErrorCode"], 60003);
    assert!(sim.profiles().is_empty(), "{:?}", sim.profiles());
    assert_eq!(sim.stats().applied, 0);
    // The exact values still pass.
    let ok = item("Tag_Profile_IM_AllowType", json!("AllowType_Type_DenyAny"));
    assert_eq!(code_of(&client, &url, &ok).await, 0);
}

#[tokio::test]
async fn specific_rejections_from_the_brief() {
    let mut cfg = config();
    cfg.accounts = Some(["alice".to_string()].into_iter().collect());
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let url = set_url(&sim);
    let one = |user: &str, tag: &str, value: Value| json!({"From_Account": user, "ProfileItem": [{"Tag": tag, "Value": value}]});
    let cases = [
        (one("alice", "Tag_Profile_IM_Unknown", json!("x")), 40009),
        (one("alice", "Tag_Profile_IM_Level", json!("3")), 40610),
        (
            one("alice", "Tag_Profile_IM_Nick", json!("n".repeat(501))),
            40601,
        ),
        (one("alice", "Tag_Profile_IM_Gender", json!("male")), 40605),
        (one("nobody", "Tag_Profile_IM_Nick", json!("n")), 40003),
    ];
    for (body, expected) in cases {
        assert_eq!(code_of(&client, &url, &body).await, expected, "{body}");
    }
    let at_limit = one("alice", "Tag_Profile_IM_Nick", json!("n".repeat(500)));
    assert_eq!(code_of(&client, &url, &at_limit).await, 0);
}

/// Every standard tag of spec §3.2, written out, with a value of its kind that Chat takes and
/// values it refuses; misspellings of the tags are unknown (40009).
#[tokio::test]
async fn every_standard_tag_has_its_spec_spelling_kind_and_values() {
    let sim = SimHandle::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let url = set_url(&sim);
    let one = |tag: &str, value: Value| json!({"From_Account": "alice", "ProfileItem": [{"Tag": tag, "Value": value}]});
    let accepted = [
        ("Tag_Profile_IM_Nick", json!("n".repeat(500))),
        ("Tag_Profile_IM_Gender", json!("Gender_Type_Unknown")),
        ("Tag_Profile_IM_Gender", json!("Gender_Type_Male")),
        ("Tag_Profile_IM_Gender", json!("Gender_Type_Female")),
        ("Tag_Profile_IM_BirthDay", json!(19900102)),
        ("Tag_Profile_IM_Location", json!("l".repeat(500))),
        ("Tag_Profile_IM_SelfSignature", json!("s".repeat(500))),
        ("Tag_Profile_IM_AllowType", json!("AllowType_Type_AllowAny")),
        ("Tag_Profile_IM_AllowType", json!("AllowType_Type_DenyAny")),
        (
            "Tag_Profile_IM_AllowType",
            json!("AllowType_Type_NeedConfirm"),
        ),
        ("Tag_Profile_IM_Language", json!(0)),
        ("Tag_Profile_IM_Image", json!("https://example.com/a.png")),
        (
            "Tag_Profile_IM_AdminForbidType",
            json!("AdminForbid_Type_SendOut"),
        ),
        (
            "Tag_Profile_IM_AdminForbidType",
            json!("AdminForbid_Type_None"),
        ),
        ("Tag_Profile_IM_Level", json!(4294967295u64)),
        ("Tag_Profile_IM_Role", json!(7)),
        ("Tag_Profile_IM_MsgSettings", json!(1)),
    ];
    for (tag, value) in &accepted {
        let body = one(tag, value.clone());
        assert_eq!(code_of(&client, &url, &body).await, 0, "{body}");
    }
    let refused = [
        ("Tag_Profile_IM_Nick", json!("n".repeat(501)), 40601),
        ("Tag_Profile_IM_Nick", json!(5), 40610),
        ("Tag_Profile_IM_Gender", json!("Female"), 40605),
        ("Tag_Profile_IM_Gender", json!("Gender_Type_female"), 40605),
        ("Tag_Profile_IM_Gender", json!(1), 40610),
        ("Tag_Profile_IM_BirthDay", json!("19900102"), 40610),
        ("Tag_Profile_IM_BirthDay", json!(-1), 40605),
        ("Tag_Profile_IM_Location", json!("l".repeat(501)), 40601),
        (
            "Tag_Profile_IM_SelfSignature",
            json!("s".repeat(501)),
            40601,
        ),
        ("Tag_Profile_IM_SelfSignature", json!(["x"]), 40610),
        (
            "Tag_Profile_IM_AllowType",
            json!("AllowType_Type_Any"),
            40605,
        ),
        ("Tag_Profile_IM_Language", json!("1"), 40610),
        ("Tag_Profile_IM_Language", json!(4294967296u64), 40605),
        ("Tag_Profile_IM_Image", json!("i".repeat(501)), 40601),
        (
            "Tag_Profile_IM_AdminForbidType",
            json!("AdminForbid_Type_Sendout"),
            40605,
        ),
        ("Tag_Profile_IM_AdminForbidType", json!(0), 40610),
        ("Tag_Profile_IM_Level", json!(1.5), 40605),
        ("Tag_Profile_IM_Role", json!("7"), 40610),
        ("Tag_Profile_IM_MsgSettings", json!(true), 40610),
        ("Tag_Profile_IM_MessageSettings", json!(1), 40009),
        (
            "Tag_Profile_IM_AdminForbid",
            json!("AdminForbid_Type_None"),
            40009,
        ),
        ("Tag_Profile_IM_Signature", json!("s"), 40009),
        ("Tag_Profile_IM_Birthday", json!(19900102), 40009),
        ("Tag_Profile_IM_Language ", json!(1), 40009),
        ("Tag_Profile_Custom_", json!("x"), 40009),
        ("Tag_Profile_Custom_hobby", json!("x"), 40009),
        ("Tag_Profile_Custom_Hobby", json!(1), 40610),
    ];
    for (tag, value, expected) in refused {
        let body = one(tag, value);
        assert_eq!(code_of(&client, &url, &body).await, expected, "{body}");
    }
    // Each accepted value was written; the last one per tag is what Chat holds.
    let alice = &sim.profiles()["alice"];
    let mut last: BTreeMap<&str, Value> = BTreeMap::new();
    for (tag, value) in accepted {
        last.insert(tag, value);
    }
    assert_eq!(alice.len(), 12, "{alice:?}");
    for (tag, value) in last {
        assert_eq!(alice[tag], value, "{tag}");
    }
}

/// Spec §5.1's UserID rule: an account that breaks it cannot exist, so its profile cannot be
/// set, even when every valid UserID exists.
#[tokio::test]
async fn a_from_account_that_breaks_the_user_id_rule_does_not_exist() {
    let sim = SimHandle::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let url = set_url(&sim);
    let long = "u".repeat(33);
    for user in ["bad user!", "a.b", "名前", "", long.as_str()] {
        assert_eq!(
            code_of(&client, &url, &nick(user, "N")).await,
            40003,
            "{user:?}"
        );
    }
    assert_eq!(code_of(&client, &url, &nick("Good_user-1", "N")).await, 0);
    assert_eq!(sim.profiles().len(), 1);
}
