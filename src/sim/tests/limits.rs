//! The per-command sliding rate limit and the window statistics.

use super::*;

#[tokio::test]
async fn rate_limit_answers_60007_and_stats_count_the_window() {
    let mut cfg = config();
    cfg.limit_per_sec = 5;
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let url = set_url(&sim);
    let mut codes = Vec::new();
    for i in 0..10 {
        codes.push(code_of(&client, &url, &nick(&format!("u{i}"), "n")).await);
    }
    assert_eq!(codes, [0, 0, 0, 0, 0, 60007, 60007, 60007, 60007, 60007]);
    let stats = sim.stats();
    assert_eq!(stats.requests, 10);
    assert_eq!(stats.max_in_any_window, 10);
    assert_eq!((stats.count("0"), stats.count("60007")), (5, 5));
    assert_eq!(stats.applied, 5);
    assert!(stats.mean_rate > 10.0, "{stats}");
}

#[tokio::test]
async fn each_command_has_its_own_limiter() {
    let mut cfg = config();
    cfg.limit_per_sec = 4;
    cfg.limit_batch_per_sec = 2;
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let check = json!({"CheckItem": [{"UserID": "a"}]});
    let multi = json!({"Accounts": ["a"]});
    let get = json!({"To_Account": ["a"], "TagList": ["Tag_Profile_IM_Nick"]});
    let import = json!({"UserID": "a"});
    let mut seen = BTreeMap::new();
    for (path, body, n) in [
        (CHECK, &check, 3),
        (MULTI, &multi, 3),
        (IMPORT, &import, 5),
        (GET, &get, 5),
    ] {
        let url = url(&sim, path);
        let mut codes = Vec::new();
        for _ in 0..n {
            codes.push(code(&client, &url, body).await);
        }
        seen.insert(path, codes);
    }
    let set = set_url(&sim);
    let mut codes = Vec::new();
    for i in 0..5 {
        codes.push(code(&client, &set, &nick(&format!("u{i}"), "n")).await);
    }
    assert_eq!(seen[CHECK], [0, 0, 60007]);
    assert_eq!(seen[MULTI], [0, 0, 60007]);
    assert_eq!(seen[IMPORT], [0, 0, 0, 0, 60007]);
    assert_eq!(seen[GET], [0, 0, 0, 0, 60007]);
    assert_eq!(
        codes,
        [0, 0, 0, 0, 60007],
        "portrait_set keeps its own budget"
    );
    let stats = sim.stats();
    assert_eq!(stats.requests, 21);
    assert_eq!(stats.max_in_any_window, 5, "portrait_set only: {stats}");
    let by_command: Vec<(&str, u64)> = stats
        .by_command
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        by_command,
        [
            ("account_check", 3),
            ("account_import", 5),
            ("multiaccount_import", 3),
            ("portrait_get", 5),
            ("portrait_set", 5),
        ]
    );
    assert_eq!(stats.max_in_any_window_by_command["account_check"], 3);
    assert_eq!(stats.count_for("account_check", "60007"), 1);
    assert_eq!(stats.count_for("portrait_set", "0"), 4);
    assert_eq!((stats.count("0"), stats.count("60007")), (16, 5));
    assert!(
        stats
            .to_string()
            .contains("account_check=3 (at most 3 in 1 s)"),
        "{stats}"
    );
}

#[tokio::test]
async fn zero_limit_per_sec_turns_every_limiter_off() {
    let mut cfg = config();
    cfg.limit_per_sec = 0;
    cfg.limit_batch_per_sec = 1;
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let check = url(&sim, CHECK);
    for _ in 0..5 {
        let body = json!({"CheckItem": [{"UserID": "a"}]});
        assert_eq!(code(&client, &check, &body).await, 0);
    }
}

#[tokio::test]
async fn the_limit_changes_while_running_and_forced_throttles_are_counted() {
    let mut cfg = config();
    cfg.limit_per_sec = 4;
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let url = set_url(&sim);
    let mut codes = Vec::new();
    for i in 0..3 {
        codes.push(code_of(&client, &url, &nick(&format!("u{i}"), "n")).await);
    }
    // Three admitted in this second: a limit of 2 refuses, a limit of 5 admits two more.
    sim.set_limit(2);
    codes.push(code_of(&client, &url, &nick("u3", "n")).await);
    sim.set_limit(5);
    for i in 4..7 {
        codes.push(code_of(&client, &url, &nick(&format!("u{i}"), "n")).await);
    }
    assert_eq!(codes, [0, 0, 0, 60007, 0, 0, 60007]);
    // 0 turns the limiter off; forced throttles refuse exactly the next n requests.
    sim.set_limit(0);
    sim.throttle_next(2);
    let mut codes = Vec::new();
    for i in 7..17 {
        codes.push(code_of(&client, &url, &nick(&format!("u{i}"), "n")).await);
    }
    assert_eq!(codes, [60007, 60007, 0, 0, 0, 0, 0, 0, 0, 0]);
    let stats = sim.stats();
    assert_eq!((stats.count("0"), stats.count("60007")), (13, 4), "{stats}");
}
