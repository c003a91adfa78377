//! The HTTP server: in-flight counting, keep-alive and shutdown.

use super::*;
#[tokio::test]
async fn in_flight_is_tracked_per_user_and_released_on_cancel() {
    let mut cfg = config();
    cfg.latency_min = Duration::from_millis(150);
    cfg.latency_max = Duration::from_millis(200);
    let sim = SimHandle::start(cfg).await.unwrap();
    let client = reqwest::Client::new();
    let url = set_url(&sim);
    let bodies = [nick("alice", "1"), nick("alice", "2"), nick("bob", "3")];
    let (a, b, c) = tokio::join!(
        code_of(&client, &url, &bodies[0]),
        code_of(&client, &url, &bodies[1]),
        code_of(&client, &url, &bodies[2]),
    );
    assert_eq!((a, b, c), (0, 0, 0));
    let stats = sim.stats();
    assert_eq!(stats.max_in_flight_per_user, 2);
    assert_eq!(stats.max_in_flight, 3);
    // A client that gives up must not leave the request counted.
    let gave_up = client
        .post(&url)
        .json(&nick("carol", "C"))
        .timeout(Duration::from_millis(50))
        .send()
        .await;
    assert!(gave_up.is_err());
    // It did reach the simulator; once it has ended there, nothing is counted in flight.
    until(&sim, "the fourth request arrives", |state| {
        state.window.count == 4
    })
    .await;
    until(&sim, "no request in flight", |state| {
        state.in_flight == 0 && state.in_flight_by_user.is_empty()
    })
    .await;
    assert_eq!(sim.stats().max_in_flight_per_user, 2);
}

#[tokio::test]
async fn keep_alive_reuses_one_connection_and_shutdown_stops_serving() {
    let sim = SimHandle::start(config()).await.unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let url = set_url(&sim);
    for _ in 0..3 {
        assert_eq!(code_of(&client, &url, &nick("alice", "A")).await, 0);
    }
    let get = client.get(&url).send().await.unwrap();
    assert_eq!(get.json::<Value>().await.unwrap()["ErrorCode"], 60002);
    assert_eq!(sim.sim.state().connections, 1);
    sim.shutdown();
    tokio::time::timeout(Duration::from_secs(10), sim.closed())
        .await
        .expect("the listener closes after shutdown");
    let fresh = reqwest::Client::new();
    assert!(fresh.post(&url).json(&nick("a", "A")).send().await.is_err());
}
