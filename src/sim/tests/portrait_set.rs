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
            item("Tag_Profile_IM_Location", json!("x".repeat(17))),
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
