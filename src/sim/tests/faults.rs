//! Injected faults: resets, 502, 40006 streaks, slow answers, the seed.

use super::*;

#[tokio::test]
async fn reset_fault_closes_the_connection_without_an_answer() {
    let mut cfg = config();
    cfg.faults.p_reset = 1.0;
    let sim = SimHandle::start(cfg).await.unwrap();
    let err = post_alice(&sim).await.unwrap_err();
    let chain = format!("{err:?}");
    assert!(chain.contains("IncompleteMessage"), "{chain}");
    assert_eq!(sim.stats().count("reset"), 1);
    assert!(sim.profiles().is_empty());
}

#[tokio::test]
async fn bad_gateway_fault_is_http_502() {
    let mut cfg = config();
    cfg.faults.p_502 = 1.0;
    let sim = SimHandle::start(cfg).await.unwrap();
    let response = post_alice(&sim).await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(sim.stats().count("http_502"), 1);
    assert!(sim.profiles().is_empty());
}

#[tokio::test]
async fn always_code_answers_every_request() {
    let mut cfg = config();
    cfg.faults.always_code = Some(70009);
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    assert_eq!(
        code_of(&client, &set_url(&sim), &nick("a", "A")).await,
        70009
    );
    let other = format!("{}/v4/nothing/here", sim.url());
    assert_eq!(code_of(&client, &other, &json!({})).await, 70009);
    assert_eq!(sim.stats().count("70009"), 2);
}

#[tokio::test]
async fn fault_streaks_are_capped_per_user_and_faults_can_be_turned_off() {
    let mut cfg = config();
    cfg.faults.p_40006 = 1.0;
    cfg.faults.max_streak_per_user = 2;
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let url = set_url(&sim);
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(code_of(&client, &url, &nick("alice", "A")).await);
    }
    assert_eq!(codes, [40006, 40006, 0, 40006, 40006, 0]);
    // Another user's streak is its own.
    assert_eq!(code_of(&client, &url, &nick("bob", "B")).await, 40006);
    sim.set_faults(Faults::default());
    assert_eq!(code_of(&client, &url, &nick("bob", "B")).await, 0);
    assert_eq!(sim.stats().applied, 3);
}

#[tokio::test]
async fn same_seed_same_faults() {
    let run = || async {
        let mut cfg = config();
        cfg.faults.p_40006 = 0.5;
        cfg.seed = 42;
        let sim = SimHandle::start(cfg).await.unwrap();
        let client = reqwest::Client::new();
        let url = set_url(&sim);
        let mut codes = Vec::new();
        for i in 0..20 {
            codes.push(code_of(&client, &url, &nick(&format!("u{i}"), "n")).await);
        }
        codes
    };
    let first = run().await;
    assert_eq!(first, run().await);
    assert!(first.contains(&0) && first.contains(&40006), "{first:?}");
}

#[tokio::test]
async fn slow_fault_applies_then_answers_late() {
    let mut cfg = config();
    cfg.faults.p_slow = 1.0;
    cfg.faults.slow = Duration::from_millis(300);
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let url = set_url(&sim);
    let timed_out = client
        .post(&url)
        .json(&nick("alice", "late"))
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(timed_out.is_err());
    // Answered (late) only after the update was applied.
    until(&sim, "alice's request is answered", |state| {
        state.codes.contains_key("0")
    })
    .await;
    assert_eq!(sim.profiles()["alice"]["Tag_Profile_IM_Nick"], "late");
    let started = Instant::now();
    assert_eq!(code_of(&client, &url, &nick("bob", "B")).await, 0);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn faults_apply_to_the_new_commands_with_their_own_streaks() {
    let mut cfg = config();
    cfg.accounts = known(&[]);
    cfg.faults.p_40006 = 1.0;
    cfg.faults.max_streak_per_user = 2;
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let multi = url(&sim, MULTI);
    let body = json!({"Accounts": ["alice", "bob"]});
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(code(&client, &multi, &body).await);
        if codes.len() < 3 {
            assert!(
                sim.accounts().unwrap().is_empty(),
                "a 40006 imports nothing"
            );
        }
    }
    assert_eq!(codes, [40006, 40006, 0]);
    assert_eq!(sim.accounts().unwrap().len(), 2);
    // account_check starting with alice, and portrait_set for alice, have their own streaks.
    let check = url(&sim, CHECK);
    let body = json!({"CheckItem": [{"UserID": "alice"}]});
    assert_eq!(code(&client, &check, &body).await, 40006);
    assert_eq!(
        code(&client, &set_url(&sim), &nick("alice", "A")).await,
        40006
    );
    let mut faults = Faults {
        p_502: 1.0,
        ..Faults::default()
    };
    sim.set_faults(faults.clone());
    let response = client
        .post(url(&sim, IMPORT))
        .json(&json!({"UserID": "carol"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    faults.p_502 = 0.0;
    faults.p_reset = 1.0;
    sim.set_faults(faults);
    let get = json!({"To_Account": ["alice"], "TagList": ["Tag_Profile_IM_Nick"]});
    assert!(client.post(url(&sim, GET)).json(&get).send().await.is_err());
    assert!(!sim.accounts().unwrap().contains("carol"));
    let stats = sim.stats();
    assert_eq!(stats.count_for("multiaccount_import", "40006"), 2);
    assert_eq!(stats.count_for("account_import", "http_502"), 1);
    assert_eq!(stats.count_for("portrait_get", "reset"), 1);
}

#[tokio::test]
async fn slow_fault_imports_then_answers_late() {
    let mut cfg = config();
    cfg.accounts = known(&[]);
    cfg.faults.p_slow = 1.0;
    cfg.faults.slow = Duration::from_millis(300);
    let sim = SimHandle::start(cfg).await.unwrap();
    let timed_out = reqwest::Client::new()
        .post(url(&sim, IMPORT))
        .json(&json!({"UserID": "late"}))
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(timed_out.is_err());
    until(&sim, "the import is answered", |state| {
        state.codes.contains_key("0")
    })
    .await;
    assert!(sim.accounts().unwrap().contains("late"));
}

#[tokio::test]
async fn any_code_status_proxy_page_or_unreadable_ok_can_be_injected_and_writes_nothing() {
    let inject = |injected: Injected| Faults {
        p_inject: 1.0,
        inject: Some(injected),
        ..Faults::default()
    };
    let mut cfg = config();
    cfg.faults = inject(Injected::Code(70052));
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let url = set_url(&sim);
    assert_eq!(code_of(&client, &url, &nick("alice", "A")).await, 70052);
    for (status, expected) in [(429, 429), (408, 408), (403, 403), (200, 502), (42, 502)] {
        sim.set_faults(inject(Injected::Http(status)));
        let response = client.post(&url).json(&nick("alice", "A")).send().await;
        let response = response.unwrap();
        assert_eq!(response.status(), expected, "{status}");
        assert!(response.text().await.unwrap().starts_with("<html>"));
    }
    sim.set_faults(inject(Injected::ProxyPage));
    let response = client.post(&url).json(&nick("alice", "A")).send().await;
    let response = response.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/html");
    let page = response.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&page).is_err(), "{page}");
    assert!(page.contains("usersig="), "the page echoes the URL: {page}");
    // An OK that cannot be read: the field it carries, and nothing written.
    let garbled = Injected::OkWith("FailAccounts".into(), json!("garbled"));
    sim.set_faults(inject(garbled));
    let answer = call(&client, &url, &nick("alice", "not written")).await;
    assert_eq!(answer["ErrorCode"], 0, "{answer}");
    assert_eq!(answer["FailAccounts"], "garbled", "{answer}");
    // An injection with nothing to inject is no fault.
    sim.set_faults(Faults {
        p_inject: 1.0,
        ..Faults::default()
    });
    assert_eq!(code_of(&client, &url, &nick("alice", "ok")).await, 0);
    let stats = sim.stats();
    let counted: Vec<(&str, u64)> = stats.codes.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        counted,
        [
            ("0", 2),
            ("70052", 1),
            ("http_403", 1),
            ("http_408", 1),
            ("http_429", 1),
            ("http_502", 2),
            ("proxy_page", 1),
        ]
    );
    assert_eq!(stats.applied, 1);
    assert_eq!(sim.profiles()["alice"]["Tag_Profile_IM_Nick"], "ok");
}

#[tokio::test]
async fn answers_injected_for_a_user_follow_the_streak_cap_and_spare_the_others() {
    let mut cfg = config();
    cfg.faults = Faults {
        inject_for: [
            ("bob".to_string(), Injected::Code(60011)),
            ("carol".to_string(), Injected::Http(429)),
            ("dave".to_string(), Injected::Reset),
        ]
        .into_iter()
        .collect(),
        max_streak_per_user: 2,
        ..Faults::default()
    };
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let set = set_url(&sim);
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(code_of(&client, &set, &nick("bob", "B")).await);
    }
    assert_eq!(codes, [60011, 60011, 0]);
    assert_eq!(code_of(&client, &set, &nick("alice", "A")).await, 0);
    let carol = client.post(&set).json(&nick("carol", "C")).send().await;
    assert_eq!(carol.unwrap().status(), 429);
    assert!(client
        .post(&set)
        .json(&nick("dave", "D"))
        .send()
        .await
        .is_err());
    // The other commands key the user by their first UserID.
    let check = url(&sim, CHECK);
    let body = json!({"CheckItem": [{"UserID": "bob"}, {"UserID": "alice"}]});
    assert_eq!(code(&client, &check, &body).await, 60011);
    let body = json!({"CheckItem": [{"UserID": "alice"}, {"UserID": "bob"}]});
    assert_eq!(code(&client, &check, &body).await, 0);
    let profiles = sim.profiles();
    assert!(!profiles.contains_key("carol") && !profiles.contains_key("dave"));
    assert_eq!(profiles.len(), 2);
}
