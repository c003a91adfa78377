//! The account commands: account_import, multiaccount_import, account_check.

use super::*;

#[tokio::test]
async fn account_import_adds_the_account_and_writes_nick_and_face_url() {
    let mut cfg = config();
    cfg.accounts = known(&["alice"]);
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let import = url(&sim, IMPORT);
    // Not imported yet: portrait_set refuses the account.
    assert_eq!(
        code(&client, &set_url(&sim), &nick("bob", "B")).await,
        40003
    );
    let body = json!({"UserID": "bob", "Nick": "Bob", "FaceUrl": "http://x/b.png"});
    let answer = call(&client, &import, &body).await;
    assert_eq!(
        answer,
        json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""})
    );
    let accounts = sim.accounts().unwrap();
    assert_eq!(
        accounts.iter().map(String::as_str).collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    let bob = &sim.profiles()["bob"];
    assert_eq!(bob["Tag_Profile_IM_Nick"], "Bob");
    assert_eq!(bob["Tag_Profile_IM_Image"], "http://x/b.png");
    // Idempotent; a re-import overwrites what it carries and keeps the rest.
    assert_eq!(code(&client, &import, &body).await, 0);
    let renamed = json!({"UserID": "bob", "Nick": "Robert"});
    assert_eq!(code(&client, &import, &renamed).await, 0);
    let bob = &sim.profiles()["bob"];
    assert_eq!(bob["Tag_Profile_IM_Nick"], "Robert");
    assert_eq!(bob["Tag_Profile_IM_Image"], "http://x/b.png");
    // Without Nick / FaceUrl only the account is created.
    assert_eq!(code(&client, &import, &json!({"UserID": "carol"})).await, 0);
    assert!(!sim.profiles().contains_key("carol"));
    assert_eq!(sim.accounts().unwrap().len(), 3);
    assert_eq!(code(&client, &set_url(&sim), &nick("bob", "B")).await, 0);
    // With `accounts: None` there is no set to report.
    let open = SimHandle::start(config()).await.unwrap();
    assert_eq!(
        code(&client, &url(&open, IMPORT), &json!({"UserID": "x"})).await,
        0
    );
    assert_eq!(open.accounts(), None);
    let stats = sim.stats();
    assert_eq!(stats.count_for("account_import", "0"), 4);
    assert_eq!(stats.applied, 1, "only portrait_set counts as applied");
}

#[tokio::test]
async fn account_import_error_codes() {
    let mut cfg = config();
    cfg.accounts = known(&[]);
    cfg.fail_import = ["doomed".to_string()].into_iter().collect();
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let import = url(&sim, IMPORT);
    let cases = [
        (json!({}), 70402),
        (json!({"UserID": ""}), 70402),
        (json!({"UserID": 7}), 70402),
        (json!(["alice"]), 70402),
        (json!({"UserID": "u".repeat(33)}), 70402),
        (json!({"UserID": "alice", "Nick": 5}), 70402),
        (json!({"UserID": "alice", "FaceUrl": null}), 70402),
        (json!({"UserID": "alice", "Nick": "n".repeat(501)}), 40601),
        (
            json!({"UserID": "alice", "FaceUrl": "f".repeat(501)}),
            40601,
        ),
        (json!({"UserID": "doomed"}), 70402),
    ];
    for (body, expected) in cases {
        assert_eq!(code(&client, &import, &body).await, expected, "{body}");
    }
    assert_eq!(sim.accounts().unwrap().len(), 0);
    assert!(sim.profiles().is_empty());
    let not_json = client.post(&import).body("{nope").send().await.unwrap();
    assert_eq!(not_json.json::<Value>().await.unwrap()["ErrorCode"], 60003);
    let bob = url_as(&sim, IMPORT, "bob");
    let refused = call(&client, &bob, &json!({"UserID": "bob"})).await;
    assert_eq!(refused["ErrorCode"], 70403);
    // The limits themselves pass.
    let at_limits = json!({"UserID": "u".repeat(32), "Nick": "n".repeat(500),
        "FaceUrl": "f".repeat(500)});
    assert_eq!(code(&client, &import, &at_limits).await, 0);
    assert_eq!(sim.accounts().unwrap().len(), 1);
}

#[tokio::test]
async fn multiaccount_import_both_forms_and_fail_accounts() {
    let mut cfg = config();
    cfg.accounts = known(&["alice"]);
    cfg.fail_import = ["doomed".to_string()].into_iter().collect();
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let multi = url(&sim, MULTI);
    let long = "u".repeat(33);
    let old = json!({"Accounts": ["bob", "", "doomed", &long, "carol", "doomed", "alice"]});
    let answer = call(&client, &multi, &old).await;
    assert_eq!(
        answer,
        json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "",
            "FailAccounts": ["", "doomed", long]})
    );
    let accounts: Vec<String> = sim.accounts().unwrap().into_iter().collect();
    assert_eq!(accounts, ["alice", "bob", "carol"]);
    assert!(sim.profiles().is_empty(), "the old form writes no profile");
    // Nothing failed: FailAccounts is still there, empty.
    let answer = call(&client, &multi, &json!({"Accounts": ["dave"]})).await;
    assert_eq!(answer["FailAccounts"], json!([]));
    // The new form writes Nick / FaceUrl, also for accounts that already exist.
    let new = json!({"AccountList": [
        {"UserID": "alice", "Nick": "Alice", "FaceUrl": "http://x/a.png"},
        {"UserID": "erin"},
        {"UserID": "frank", "Nick": "n".repeat(501)},
        {"UserID": "doomed", "Nick": "D"},
    ]});
    let answer = call(&client, &multi, &new).await;
    assert_eq!(answer["ErrorCode"], 0);
    assert_eq!(answer["FailAccounts"], json!(["frank", "doomed"]));
    let profiles = sim.profiles();
    assert_eq!(profiles["alice"]["Tag_Profile_IM_Nick"], "Alice");
    assert_eq!(profiles["alice"]["Tag_Profile_IM_Image"], "http://x/a.png");
    assert!(!profiles.contains_key("frank") && !profiles.contains_key("doomed"));
    let accounts = sim.accounts().unwrap();
    assert!(accounts.contains("erin") && !accounts.contains("frank"));
    assert!(!accounts.contains("doomed"));
    let update = json!({"AccountList": [{"UserID": "alice", "Nick": "Al"}]});
    assert_eq!(code(&client, &multi, &update).await, 0);
    assert_eq!(sim.profiles()["alice"]["Tag_Profile_IM_Nick"], "Al");
    assert_eq!(
        sim.profiles()["alice"]["Tag_Profile_IM_Image"],
        "http://x/a.png"
    );
}

#[tokio::test]
async fn account_list_can_be_told_to_ignore_existing_accounts() {
    let mut cfg = config();
    cfg.accounts = known(&["alice"]);
    cfg.faults.account_list_ignores_existing = true;
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let multi = url(&sim, MULTI);
    let list = json!({"AccountList": [
        {"UserID": "alice", "Nick": "Alice", "FaceUrl": "http://x/a.png"},
        {"UserID": "bob", "Nick": "Bob", "FaceUrl": "http://x/b.png"},
    ]});
    let answer = call(&client, &multi, &list).await;
    assert_eq!(answer["ErrorCode"], 0);
    assert_eq!(answer["FailAccounts"], json!([]));
    let profiles = sim.profiles();
    assert!(
        !profiles.contains_key("alice"),
        "an existing account keeps its profile: {profiles:?}"
    );
    assert_eq!(profiles["bob"]["Tag_Profile_IM_Nick"], "Bob");
    assert_eq!(profiles["bob"]["Tag_Profile_IM_Image"], "http://x/b.png");
    // bob exists now, so a second import leaves his profile too.
    let again = json!({"AccountList": [{"UserID": "bob", "Nick": "Robert"}]});
    assert_eq!(code(&client, &multi, &again).await, 0);
    assert_eq!(sim.profiles()["bob"]["Tag_Profile_IM_Nick"], "Bob");
    // Switched off at run time, existing accounts are updated as the page says.
    sim.set_faults(Faults::default());
    assert_eq!(code(&client, &multi, &again).await, 0);
    assert_eq!(sim.profiles()["bob"]["Tag_Profile_IM_Nick"], "Robert");
}

#[tokio::test]
async fn multiaccount_import_error_codes_and_the_100_limit() {
    let mut cfg = config();
    cfg.accounts = known(&[]);
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let multi = url(&sim, MULTI);
    let hundred = names("u", 100);
    let too_many = names("v", 101);
    let list = |users: &[String]| -> Value { users.iter().map(|u| json!({"UserID": u})).collect() };
    let cases = [
        (json!({}), 70402),
        (json!({"Accounts": "alice"}), 70402),
        (json!({"Accounts": null}), 70402),
        (json!({"Accounts": ["a", 7]}), 70402),
        (
            json!({"Accounts": ["a"], "AccountList": [{"UserID": "b"}]}),
            70402,
        ),
        (json!({"AccountList": [{"Nick": "no id"}]}), 70402),
        (json!({"AccountList": ["a"]}), 70402),
        (json!({"AccountList": [{"UserID": "a", "Nick": 1}]}), 70402),
        (json!({"Accounts": []}), 70206),
        (json!({"AccountList": []}), 70206),
        (json!({"Accounts": too_many}), 70206),
        (json!({"AccountList": list(&too_many)}), 70206),
    ];
    for (body, expected) in cases {
        assert_eq!(code(&client, &multi, &body).await, expected, "{body}");
    }
    assert!(sim.accounts().unwrap().is_empty());
    let refused = call(
        &client,
        &url_as(&sim, MULTI, "bob"),
        &json!({"Accounts": ["a"]}),
    )
    .await;
    assert_eq!(refused["ErrorCode"], 70403);
    // Exactly 100 is fine, in either form.
    let answer = call(&client, &multi, &json!({"Accounts": hundred})).await;
    assert_eq!(answer["FailAccounts"], json!([]));
    let answer = call(
        &client,
        &multi,
        &json!({"AccountList": list(&names("w", 100))}),
    )
    .await;
    assert_eq!(answer["FailAccounts"], json!([]));
    assert_eq!(sim.accounts().unwrap().len(), 200);
}

#[tokio::test]
async fn account_check_reports_import_status() {
    let mut cfg = config();
    cfg.accounts = known(&["alice"]);
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let check = url(&sim, CHECK);
    let body = json!({"CheckItem": [{"UserID": "alice"}, {"UserID": "bob"}, {"UserID": ""}]});
    let answer = call(&client, &check, &body).await;
    assert_eq!(answer["ErrorCode"], 0);
    let items = answer["ResultItem"].as_array().unwrap();
    assert_eq!(
        items[..2],
        [
            json!({"UserID": "alice", "ResultCode": 0, "ResultInfo": "",
                "AccountStatus": "Imported"}),
            json!({"UserID": "bob", "ResultCode": 0, "ResultInfo": "",
                "AccountStatus": "NotImported"}),
        ]
    );
    assert_eq!(items[2]["ResultCode"], 70402);
    assert_eq!(items[2]["AccountStatus"], "NotImported");
    // An import changes the answer.
    let import = url(&sim, IMPORT);
    assert_eq!(code(&client, &import, &json!({"UserID": "bob"})).await, 0);
    let answer = call(&client, &check, &json!({"CheckItem": [{"UserID": "bob"}]})).await;
    assert_eq!(answer["ResultItem"][0]["AccountStatus"], "Imported");
    // With `accounts: None` every account exists.
    let open = SimHandle::start(config()).await.unwrap();
    let answer = call(
        &client,
        &url(&open, CHECK),
        &json!({"CheckItem": [{"UserID": "zed"}]}),
    )
    .await;
    assert_eq!(answer["ResultItem"][0]["AccountStatus"], "Imported");
}

#[tokio::test]
async fn account_check_error_codes_and_the_100_limit() {
    let sim = SimHandle::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let check = url(&sim, CHECK);
    let items =
        |n: usize| -> Value { names("u", n).iter().map(|u| json!({"UserID": u})).collect() };
    let cases = [
        (json!({}), 70402),
        (json!({"CheckItem": "alice"}), 70402),
        (json!({"CheckItem": [{"User": "alice"}]}), 70402),
        (json!({"CheckItem": ["alice"]}), 70402),
        (json!({"CheckItem": []}), 70206),
        (json!({"CheckItem": items(101)}), 70206),
    ];
    for (body, expected) in cases {
        assert_eq!(code(&client, &check, &body).await, expected, "{body}");
    }
    let answer = call(&client, &check, &json!({"CheckItem": items(100)})).await;
    assert_eq!(answer["ResultItem"].as_array().unwrap().len(), 100);
    let refused = call(
        &client,
        &url_as(&sim, CHECK, "bob"),
        &json!({"CheckItem": items(1)}),
    )
    .await;
    assert_eq!(refused["ErrorCode"], 70403);
}

/// Spec §5.1: 1 to 32 bytes of letters, digits, `_` and `-`; the length alone is not enough.
#[tokio::test]
async fn user_ids_follow_the_spec_rule_not_just_the_length() {
    let mut cfg = config();
    cfg.accounts = known(&[]);
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let import = url(&sim, IMPORT);
    for bad in ["bad user!", "a.b", "a@b", "名前", "tab\there"] {
        let body = json!({"UserID": bad});
        assert_eq!(code(&client, &import, &body).await, 70402, "{bad:?}");
    }
    let good = ["A-Za-z_0-9", &"x".repeat(32)].map(str::to_string);
    for user in &good {
        assert_eq!(code(&client, &import, &json!({"UserID": user})).await, 0);
    }
    let answer = call(
        &client,
        &url(&sim, MULTI),
        &json!({"Accounts": ["ok_1", "not ok", "ok-2", "semi;colon"]}),
    )
    .await;
    assert_eq!(answer["FailAccounts"], json!(["not ok", "semi;colon"]));
    let imported: Vec<String> = sim.accounts().unwrap().into_iter().collect();
    assert_eq!(imported, ["A-Za-z_0-9", "ok-2", "ok_1", &good[1]]);
    let answer = call(
        &client,
        &url(&sim, CHECK),
        &json!({"CheckItem": [{"UserID": "ok_1"}, {"UserID": "not ok"}]}),
    )
    .await;
    let items = &answer["ResultItem"];
    assert_eq!(items[0]["AccountStatus"], "Imported");
    assert_eq!(items[1]["ResultCode"], 70402);
    assert_eq!(items[1]["AccountStatus"], "NotImported");
}
