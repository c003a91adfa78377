//! portrait_get: the tags asked for, unknown accounts, the 100 limit.

use super::*;

#[tokio::test]
async fn portrait_get_returns_only_set_tags_and_flags_unknown_accounts() {
    let mut cfg = config();
    cfg.accounts = known(&["alice", "bob"]);
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let set = json!({"From_Account": "alice", "ProfileItem": [
        {"Tag": "Tag_Profile_IM_Nick", "Value": "Alice"},
        {"Tag": "Tag_Profile_IM_Level", "Value": 7},
        {"Tag": "Tag_Profile_Custom_Hobby", "Value": "chess"},
    ]});
    assert_eq!(code(&client, &set_url(&sim), &set).await, 0);
    let get = url(&sim, GET);
    let tags = [
        "Tag_Profile_Custom_Hobby",
        "Tag_Profile_IM_Gender",
        "Tag_Profile_IM_Level",
        "Tag_Profile_IM_Nick",
        "Tag_Profile_IM_Level",
    ];
    let body = json!({"To_Account": ["alice", "bob"], "TagList": tags});
    let answer = call(&client, &get, &body).await;
    assert_eq!(
        answer,
        json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "", "ErrorDisplay": "",
        "UserProfileItem": [
            {"To_Account": "alice", "ResultCode": 0, "ResultInfo": "", "ProfileItem": [
                {"Tag": "Tag_Profile_Custom_Hobby", "Value": "chess"},
                {"Tag": "Tag_Profile_IM_Level", "Value": 7},
                {"Tag": "Tag_Profile_IM_Nick", "Value": "Alice"},
            ]},
            {"To_Account": "bob", "ResultCode": 0, "ResultInfo": "", "ProfileItem": []},
        ]})
    );
    // An unknown account fails on its own: 40003 in its item, listed in Fail_Account.
    let body = json!({"To_Account": ["mallory", "alice"], "TagList": ["Tag_Profile_IM_Nick"]});
    let answer = call(&client, &get, &body).await;
    assert_eq!(answer["ErrorCode"], 0);
    assert_eq!(answer["Fail_Account"], json!(["mallory"]));
    let mallory = &answer["UserProfileItem"][0];
    assert_eq!(mallory["To_Account"], "mallory");
    assert_eq!(mallory["ResultCode"], 40003);
    assert!(mallory.get("ProfileItem").is_none(), "{mallory}");
    assert_eq!(
        answer["UserProfileItem"][1]["ProfileItem"],
        json!([{"Tag": "Tag_Profile_IM_Nick", "Value": "Alice"}])
    );
    // Imported accounts become readable.
    let import = url(&sim, IMPORT);
    let body = json!({"UserID": "mallory", "Nick": "M"});
    assert_eq!(code(&client, &import, &body).await, 0);
    let body = json!({"To_Account": ["mallory"], "TagList": ["Tag_Profile_IM_Nick", "Tag_Profile_IM_Image"]});
    let answer = call(&client, &get, &body).await;
    assert!(answer.get("Fail_Account").is_none(), "{answer}");
    assert_eq!(
        answer["UserProfileItem"][0]["ProfileItem"],
        json!([{"Tag": "Tag_Profile_IM_Nick", "Value": "M"}])
    );
}

#[tokio::test]
async fn portrait_get_error_codes_and_the_100_limit() {
    let sim = SimHandle::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let get = url(&sim, GET);
    let nick_tag = json!(["Tag_Profile_IM_Nick"]);
    let cases = [
        (json!({"TagList": nick_tag}), 40002),
        (json!({"To_Account": null, "TagList": nick_tag}), 40002),
        (json!({"To_Account": [], "TagList": nick_tag}), 40002),
        (json!({"To_Account": "alice", "TagList": nick_tag}), 40001),
        (
            json!({"To_Account": ["alice", 7], "TagList": nick_tag}),
            40001,
        ),
        (
            json!({"To_Account": names("u", 101), "TagList": nick_tag}),
            40001,
        ),
        (json!({"To_Account": ["alice"]}), 40001),
        (json!({"To_Account": ["alice"], "TagList": []}), 40001),
        (json!({"To_Account": ["alice"], "TagList": [1]}), 40001),
        (
            json!({"To_Account": ["alice"], "TagList": ["Tag_Profile_IM_Nick", "Tag_Profile_IM_Nickname"]}),
            40009,
        ),
        (
            json!({"To_Account": ["alice"], "TagList": ["Tag_Profile_Custom_Pet"]}),
            40009,
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(code(&client, &get, &body).await, expected, "{body}");
    }
    let body = json!({"To_Account": names("u", 100), "TagList": nick_tag});
    let answer = call(&client, &get, &body).await;
    assert_eq!(answer["UserProfileItem"].as_array().unwrap().len(), 100);
    let refused = call(&client, &url_as(&sim, GET, "bob"), &body).await;
    assert_eq!(refused["ErrorCode"], 40004);
}

#[tokio::test]
async fn another_writer_s_values_are_read_back_and_reads_count_their_users() {
    let sim = SimHandle::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    sim.write_profile(
        "carol",
        [
            ("Tag_Profile_IM_Nick", json!("Carol")),
            ("Tag_Profile_IM_Level", json!(3)),
        ],
    );
    // `null` unsets a tag, as a writer clearing it would.
    sim.write_profile("carol", [("Tag_Profile_IM_Level", Value::Null)]);
    let body = json!({"To_Account": ["carol", "dave", "erin"],
                      "TagList": ["Tag_Profile_IM_Nick", "Tag_Profile_IM_Level"]});
    let answer = call(&client, &url(&sim, GET), &body).await;
    assert_eq!(
        answer["UserProfileItem"][0]["ProfileItem"],
        json!([{"Tag": "Tag_Profile_IM_Nick", "Value": "Carol"}])
    );
    let stats = sim.stats();
    assert_eq!(stats.users_read, 3);
    assert_eq!(stats.by_command["portrait_get"], 1);
    assert_eq!(stats.max_in_any_window_by_command["portrait_get"], 1);
    assert_eq!(stats.applied, 0, "the other writer's values are no request");
    assert!(stats.to_string().contains("read       3 users"), "{stats}");
}
