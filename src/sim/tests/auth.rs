//! The query and UserSig checks, with Chat's codes.

use super::*;

#[tokio::test]
async fn auth_failures_use_chat_codes() {
    let sim = SimHandle::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let body = nick("alice", "A");
    let base = format!("{}/v4/profile/portrait_set", sim.url());
    let admin_sig = sig_for(ADMIN);
    let other_key = usersig::generate(&SecretKey::new("wrong"), APP, ADMIN, unix_now(), 86_400);
    let other_app = usersig::generate(&SecretKey::new(KEY), APP + 1, ADMIN, unix_now(), 86_400);
    let expired = usersig::generate(&SecretKey::new(KEY), APP, ADMIN, 1_000_000, 60);
    let cases = [
        (query(ADMIN, &other_key), 70009),
        (query("bob", &sig_for("bob")), 40004),
        (query("bob", &admin_sig), 70013),
        (query(ADMIN, &other_app), 70014),
        (query(ADMIN, &expired), 70001),
        (query(ADMIN, ""), 70002),
        (query(ADMIN, "garbage"), 70003),
        (query("", &admin_sig), 60010),
        (
            query(ADMIN, &admin_sig).replace("sdkappid=1400000000&", ""),
            60012,
        ),
        (
            query(ADMIN, &admin_sig).replace("sdkappid=1400000000", "sdkappid=abc"),
            60006,
        ),
        (
            query(ADMIN, &admin_sig).replace("sdkappid=1400000000", "sdkappid=1400000001"),
            60006,
        ),
        (
            query(ADMIN, &admin_sig).replace("random=12345", "random=-1"),
            60002,
        ),
        (
            query(ADMIN, &admin_sig).replace("random=12345", "random=4294967296"),
            60002,
        ),
        (
            query(ADMIN, &admin_sig).replace("contenttype=json", "contenttype=xml"),
            60002,
        ),
    ];
    for (q, expected) in cases {
        let url = format!("{base}?{q}");
        assert_eq!(code_of(&client, &url, &body).await, expected, "{q}");
    }
    let unknown = format!(
        "{}/v4/im_open_login_svc/account_delete?{}",
        sim.url(),
        query(ADMIN, &admin_sig)
    );
    assert_eq!(code_of(&client, &unknown, &body).await, 60009);
    assert!(sim.profiles().is_empty());
}

#[tokio::test]
async fn percent_encoded_query_works_and_huge_bodies_are_refused() {
    let sim = SimHandle::start(config()).await.unwrap();
    let client = reqwest::Client::new();
    let encoded: String = url::form_urlencoded::byte_serialize(sig_for(ADMIN).as_bytes())
        .collect::<String>()
        .replace('*', "%2A");
    let url = format!(
        "{}/v4/profile/portrait_set?{}",
        sim.url(),
        query(ADMIN, &encoded)
    );
    assert_eq!(code_of(&client, &url, &nick("alice", "A")).await, 0);
    let huge = nick("alice", &"x".repeat(MAX_BODY_BYTES));
    assert_eq!(code_of(&client, &url, &huge).await, 60002);
}

#[tokio::test]
async fn bad_sig_is_70009() {
    let sim = SimHandle::start(config()).await.unwrap();
    let sig = usersig::generate(
        &SecretKey::new("not-the-key"),
        APP,
        ADMIN,
        unix_now(),
        86_400,
    );
    let url = format!(
        "{}/v4/profile/portrait_set?{}",
        sim.url(),
        query(ADMIN, &sig)
    );
    let code = code_of(&reqwest::Client::new(), &url, &nick("alice", "A")).await;
    assert_eq!(code, 70009);
}

#[tokio::test]
async fn non_admin_identifier_is_40004() {
    let sim = SimHandle::start(config()).await.unwrap();
    let url = format!(
        "{}/v4/profile/portrait_set?{}",
        sim.url(),
        query("bob", &sig_for("bob"))
    );
    let code = code_of(&reqwest::Client::new(), &url, &nick("alice", "A")).await;
    assert_eq!(code, 40004);
}
