//! The pacer against a model server on tokio's paused clock: every figure here is a count in
//! virtual time, the same on any machine.

use std::sync::atomic::{AtomicUsize, Ordering};

use governor::clock::{FakeRelativeClock, Reference};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// Chat's limiter as the simulator models it: a request is admitted if fewer than `limit`
/// were admitted in the second before it; refused ones do not count.
struct ModelServer {
    limit: u32,
    admitted: VecDeque<Instant>,
    /// Every arrival and whether it was admitted.
    arrivals: Vec<(Instant, bool)>,
    /// Refuse the next arrival at or after this time, whatever the count (one forced throttle).
    refuse_once_at: Option<Instant>,
}

impl ModelServer {
    fn arrive(&mut self, now: Instant) -> bool {
        while self
            .admitted
            .front()
            .is_some_and(|&t| now.duration_since(t) >= WINDOW)
        {
            self.admitted.pop_front();
        }
        let forced = self.refuse_once_at.is_some_and(|at| now >= at);
        if forced {
            self.refuse_once_at = None;
        }
        let admitted = !forced && self.admitted.len() < self.limit as usize;
        if admitted {
            self.admitted.push_back(now);
        }
        self.arrivals.push((now, admitted));
        admitted
    }
}

/// One run: `rows` rows, each retried until admitted, from enough workers for the latency.
struct Run {
    rate: u32,
    limit: u32,
    rows: usize,
    jitter: Duration,
    latency: (u64, u64),
    /// (after, new limit): the server's limit changes mid-run.
    limit_changes: Vec<(Duration, u32)>,
    refuse_once_after: Option<Duration>,
}

struct Outcome {
    arrivals: Vec<(Duration, bool)>,
    /// The pace in force at each whole second.
    pace_by_second: Vec<f64>,
}

impl Outcome {
    fn throttled(&self) -> usize {
        self.arrivals.iter().filter(|(_, ok)| !ok).count()
    }

    fn admitted(&self) -> usize {
        self.arrivals.iter().filter(|(_, ok)| *ok).count()
    }

    /// The most arrivals (admitted or not) in any half-open one-second window within `from..to`.
    fn most_in_a_window(&self, from: Duration, to: Duration) -> usize {
        let times: Vec<Duration> = self
            .arrivals
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| *t >= from && *t < to)
            .collect();
        let mut lo = 0;
        let mut most = 0;
        for hi in 0..times.len() {
            while times[hi] - times[lo] >= WINDOW {
                lo += 1;
            }
            most = most.max(hi - lo + 1);
        }
        most
    }

    /// Admitted requests per second from the first arrival to the last.
    fn mean(&self) -> f64 {
        let first = self.arrivals.first().map_or(Duration::ZERO, |a| a.0);
        let last = self.arrivals.last().map_or(Duration::ZERO, |a| a.0);
        (self.admitted() - 1) as f64 / (last - first).as_secs_f64()
    }
}

impl Run {
    fn at_limit(rate: u32) -> Run {
        Run {
            rate,
            limit: rate,
            rows: rate as usize * 20,
            jitter: JITTER_ROOM,
            latency: (20, 80),
            limit_changes: Vec::new(),
            refuse_once_after: None,
        }
    }

    async fn go(self) -> Outcome {
        let start = Instant::now();
        let pacer = Arc::new(Pacer::new(self.rate));
        let server = Arc::new(Mutex::new(ModelServer {
            limit: self.limit,
            admitted: VecDeque::new(),
            arrivals: Vec::new(),
            refuse_once_at: self.refuse_once_after.map(|after| start + after),
        }));
        let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(7)));
        let next_row = Arc::new(AtomicUsize::new(0));
        let workers = (f64::from(self.rate) * self.latency.1 as f64 / 1000.0 * 1.5) as usize + 4;
        let mut tasks = Vec::new();
        for _ in 0..workers.min(2000) {
            let (pacer, server, rng, next_row) =
                (pacer.clone(), server.clone(), rng.clone(), next_row.clone());
            let (rows, jitter, latency) = (self.rows, self.jitter, self.latency);
            tasks.push(tokio::spawn(async move {
                while next_row.fetch_add(1, Ordering::Relaxed) < rows {
                    loop {
                        let ticket = pacer.acquire().await;
                        let (wander, answer) = {
                            let mut rng = lock(&rng);
                            (
                                rng.random_range(Duration::ZERO..=jitter),
                                Duration::from_millis(rng.random_range(latency.0..=latency.1)),
                            )
                        };
                        tokio::time::sleep(wander).await;
                        let admitted = lock(&server).arrive(Instant::now());
                        tokio::time::sleep(answer).await;
                        if admitted {
                            pacer.on_accepted(ticket);
                            break;
                        }
                        pacer.on_throttled(ticket);
                    }
                }
            }));
        }
        let pace_by_second = Arc::new(Mutex::new(Vec::new()));
        let watcher = {
            let (pacer, server, pace) = (pacer.clone(), server.clone(), pace_by_second.clone());
            let mut changes = self.limit_changes.clone();
            tokio::spawn(async move {
                for second in 1u64.. {
                    tokio::time::sleep_until(start + Duration::from_secs(second)).await;
                    lock(&pace).push(pacer.current_rate());
                    let now = Duration::from_secs(second);
                    for (_, limit) in changes.iter().filter(|(after, _)| *after == now) {
                        lock(&server).limit = *limit;
                    }
                    changes.retain(|(after, _)| *after > now);
                }
            })
        };
        for task in tasks {
            task.await.expect("worker");
        }
        watcher.abort();
        let arrivals = lock(&server)
            .arrivals
            .iter()
            .map(|(t, ok)| (t.duration_since(start), *ok))
            .collect();
        let pace_by_second = lock(&pace_by_second).clone();
        Outcome {
            arrivals,
            pace_by_second,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[tokio::test(start_paused = true)]
async fn at_the_limit_no_request_is_throttled_and_the_mean_is_within_1_5_percent() {
    for rate in [50, 200, 1000, 3000] {
        let run = Run::at_limit(rate).go().await;
        let most = run.most_in_a_window(Duration::ZERO, Duration::MAX);
        assert_eq!(run.throttled(), 0, "rate {rate}: throttled");
        assert!(most <= rate as usize, "rate {rate}: {most} in one window");
        let mean = run.mean();
        assert!(
            mean >= 0.985 * f64::from(rate),
            "rate {rate}: mean {mean:.1}/s"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn far_above_the_limit_the_pace_lands_on_it_with_few_throttled_answers() {
    for rate in [5_000, 100_000] {
        let run = Run {
            limit: 200,
            rows: 6_000,
            ..Run::at_limit(rate)
        }
        .go()
        .await;
        let (throttled, requests) = (run.throttled(), run.arrivals.len());
        assert_eq!(run.admitted(), 6_000, "rate {rate}: every row ends OK");
        assert!(
            throttled * 20 <= requests,
            "rate {rate}: {throttled} of {requests} requests throttled"
        );
        for (second, pace) in run.pace_by_second.iter().enumerate().skip(5) {
            assert!(
                (180.0..=220.0).contains(pace),
                "rate {rate}: pace {pace:.0}/s after {second} s"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_single_throttle_at_the_limit_costs_under_1_percent_of_the_mean() {
    let clean = Run::at_limit(200).go().await;
    let throttled = Run {
        refuse_once_after: Some(Duration::from_secs(3)),
        rows: 6_000,
        ..Run::at_limit(200)
    }
    .go()
    .await;
    assert_eq!(clean.throttled(), 0);
    assert_eq!(throttled.throttled(), 1);
    let (clean, once) = (clean.mean(), throttled.mean());
    assert!(
        once >= clean * 0.99,
        "mean {once:.2}/s after one throttle, {clean:.2}/s without"
    );
}

#[tokio::test(start_paused = true)]
async fn a_limit_that_falls_and_comes_back_is_followed_down_and_up() {
    let run = Run {
        rows: 9_000,
        limit_changes: vec![
            (Duration::from_secs(10), 100),
            (Duration::from_secs(30), 200),
        ],
        ..Run::at_limit(200)
    }
    .go()
    .await;
    let pace = &run.pace_by_second;
    // Followed down within 5 s: from then on, the pace is at most the new limit.
    // Followed down within 5 s: from then on the pace only probes a few % above the new
    // limit, and the server sees few refusals.
    for second in 15..30 {
        let at = pace[second - 1];
        assert!(at <= 103.0, "pace {at:.1}/s at {second} s: {pace:.1?}");
    }
    let most = run.most_in_a_window(Duration::from_secs(15), Duration::from_secs(30));
    assert!(
        most <= 103,
        "{most} requests in one window while the limit was 100"
    );
    let refused = run
        .arrivals
        .iter()
        .filter(|(t, ok)| !ok && t.as_secs() >= 15 && t.as_secs() < 30)
        .count();
    assert!(refused <= 15, "{refused} refused while the limit was 100");
    // And back up within 30 s.
    let back = (30..pace.len()).find(|&s| pace[s - 1] >= 190.0);
    assert!(back.is_some_and(|s| s <= 60), "pace by second: {pace:.0?}");
    assert_eq!(run.admitted(), 9_000);
}

#[tokio::test(start_paused = true)]
async fn far_above_the_default_limit_the_pace_ramps_up_from_it() {
    let pacer = Pacer::new(100_000);
    let start = Instant::now();
    let mut first_125ms = 0;
    let mut first_second = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        pacer.acquire().await;
        if start.elapsed() < Duration::from_millis(125) {
            first_125ms += 1;
        }
        if start.elapsed() < WINDOW {
            first_second += 1;
        }
    }
    assert_eq!(pacer.current_rate(), 100_000.0);
    // 200, 400, 800, 1,600 and 3,200/s for 25 ms each: about 155 requests, not 12,500.
    assert!(
        (130..=180).contains(&first_125ms),
        "{first_125ms} in the first 125 ms"
    );
    // With no answer accepting more, 200 and one probe in the first second, whatever the pace.
    assert_eq!(first_second, START_RATE as usize + 1);
}

/// The start from far above a 200/s limit: however few rows, the first second sends 200
/// requests and a few probes, not a round trip's worth at the doubled pace (before: 164-205 of
/// 664-705 requests throttled for 500 rows at 20-80 ms).
#[tokio::test(start_paused = true)]
async fn far_above_the_limit_even_a_small_file_has_few_throttled_answers() {
    for (rate, rows) in [(100_000, 500), (100_000, 3_000), (5_000, 500)] {
        let run = Run {
            limit: 200,
            rows,
            ..Run::at_limit(rate)
        }
        .go()
        .await;
        let (throttled, requests) = (run.throttled(), run.arrivals.len());
        assert_eq!(
            run.admitted(),
            rows,
            "rate {rate}, {rows} rows: every row ends OK"
        );
        assert!(
            throttled * 50 <= requests,
            "rate {rate}, {rows} rows: {throttled} of {requests} requests throttled"
        );
        let first = run.most_in_a_window(Duration::ZERO, WINDOW);
        // A probe that arrives ahead of requests sent beside it (arrival jitter) may be taken
        // in their place and let two more go: a few, never a round trip's worth.
        assert!(
            first <= 210,
            "rate {rate}, {rows} rows: {first} in the first second"
        );
    }
}

/// A limit above the default is found by probing: each accepted probe lets two more go, so
/// 1,000/s is reached within a few seconds and the rows land with few refusals.
#[tokio::test(start_paused = true)]
async fn far_above_a_higher_limit_the_probes_find_it() {
    let run = Run {
        limit: 1_000,
        rows: 20_000,
        ..Run::at_limit(100_000)
    }
    .go()
    .await;
    let (throttled, requests) = (run.throttled(), run.arrivals.len());
    assert_eq!(run.admitted(), 20_000);
    assert!(
        throttled * 20 <= requests,
        "{throttled} of {requests} requests throttled"
    );
    let pace = &run.pace_by_second;
    assert!(
        pace.iter().skip(5).all(|p| (900.0..=1100.0).contains(p)),
        "pace by second: {pace:.0?}"
    );
}

#[tokio::test(start_paused = true)]
async fn up_to_where_a_ramp_would_end_before_a_default_window_fills_the_pace_starts_full() {
    let pacer = Pacer::new(3_000);
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_millis(100) {
        pacer.acquire().await;
        sent += 1;
    }
    assert_eq!(pacer.current_rate(), 3_000.0);
    // 3,000 per 1.010 s: about 297 in the first 100 ms.
    assert!((285..=300).contains(&sent), "{sent} in the first 100 ms");
}

/// The spacing alone, with a saturated sender whose wake-ups come up to 2 ms late and whose
/// requests reach the server up to `JITTER_ROOM` apart: no server window holds more than the
/// pace, and the mean is at least 98.5 % of it.
#[test]
fn spacing_keeps_every_window_within_the_pace_despite_late_wakeups_and_jitter() {
    let mut rng = StdRng::seed_from_u64(3);
    for pace in [1.0, 3.0, 50.0, 199.0, 200.0, 1000.0, 3000.0, 5000.0] {
        let (quota, cells, burst) = shape(pace);
        let fake = FakeRelativeClock::default();
        let limiter = RateLimiter::direct_with_clock(quota, fake.clone());
        let _ = limiter.check_n(burst);
        let start = fake.now();
        let mut arrivals = Vec::new();
        let seconds = 20.0f64.min(2000.0 / pace).max(5.0);
        let mut now = Duration::ZERO;
        while now.as_secs_f64() < seconds {
            match limiter.check_n(cells) {
                Ok(Ok(())) => arrivals.push(now + rng.random_range(Duration::ZERO..=JITTER_ROOM)),
                _ => {
                    // Wake up late, by up to the catch-up.
                    let late = rng.random_range(Duration::ZERO..=CATCH_UP);
                    fake.advance(Duration::from_micros(50) + late);
                }
            }
            now = fake.now().duration_since(start).into();
        }
        arrivals.sort();
        let mut lo = 0;
        for hi in 0..arrivals.len() {
            while arrivals[hi] - arrivals[lo] >= WINDOW {
                lo += 1;
            }
            assert!(
                (hi - lo + 1) as f64 <= pace,
                "pace {pace}: {} in the second before {:?}",
                hi - lo + 1,
                arrivals[hi]
            );
        }
        let span = (arrivals[arrivals.len() - 1] - arrivals[0]).as_secs_f64();
        let mean = (arrivals.len() - 1) as f64 / span;
        assert!(mean >= 0.985 * pace, "pace {pace}: mean {mean:.2}/s");
    }
}

/// Why a request costs many cells (a fact about governor, kept as the reason `Spacing`
/// exists): `Quota::per_second(n)` alone admits about 2n in the first second.
#[test]
fn governor_per_second_alone_would_burst_past_the_ceiling() {
    let fake = FakeRelativeClock::default();
    let limiter = RateLimiter::direct_with_clock(
        Quota::per_second(NonZeroU32::new(200).unwrap_or(NonZeroU32::MIN)),
        fake.clone(),
    );
    let start = fake.now();
    let mut admitted = 0;
    while Duration::from(fake.now().duration_since(start)) < WINDOW {
        if limiter.check().is_ok() {
            admitted += 1;
        } else {
            fake.advance(Duration::from_micros(100));
        }
    }
    assert!(admitted > 390, "{admitted}");
}

/// Sends `n` requests through `pacer` as fast as it lets them go: their tickets and send times.
async fn send(pacer: &Pacer, n: usize) -> (Vec<Ticket>, Vec<Instant>) {
    let mut tickets = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        tickets.push(pacer.acquire().await);
        times.push(Instant::now());
    }
    (tickets, times)
}

/// The next request's send time.
async fn next_send(pacer: &Pacer) -> Instant {
    pacer.acquire().await;
    Instant::now()
}

/// What the cut after a throttle must be: just below the requests sent in the second before the
/// throttled one that were not refused, never more than halfway down (from 200/s above it), and
/// at least 1 % down.
fn expected_cut(rate: f64, times: &[Instant], refused: &[usize], throttled: usize) -> f64 {
    let at = times[throttled];
    let accepted = (0..throttled)
        .filter(|&i| at.duration_since(times[i]) < WINDOW && !refused.contains(&i))
        .count();
    (accepted as f64 * 0.99)
        .floor()
        .max(0.5 * rate.min(200.0))
        .min(rate * 0.99)
}

/// 500 requests at 1,000/s, the last throttled: the pace is cut to ⌊0.99 × 499⌋ = 494, and the
/// next request waits until the last 1.006 s of sends holds fewer than 494 (the 7th oldest has
/// left it), to the nanosecond.
#[tokio::test(start_paused = true)]
async fn a_throttle_cuts_below_what_was_accepted_and_holds_requests_until_the_window_has_room() {
    let pacer = Pacer::new(1000);
    let (tickets, times) = send(&pacer, 500).await;
    pacer.on_throttled(tickets[499]);
    assert_eq!(pacer.current_rate(), 494.0);
    assert_eq!(expected_cut(1000.0, &times, &[], 499), 494.0);
    assert_eq!(pacer.lowest_rate(), 494.0);
    assert_eq!(next_send(&pacer).await, times[6] + GUARD);
    assert_eq!(pacer.lowest_rate(), 494.0);
}

/// A throttle with few requests before it cuts halfway (the floor), and holds nothing when the
/// window already has room; with exactly the new pace in the window it holds until the oldest
/// leaves.
#[tokio::test(start_paused = true)]
async fn a_throttle_with_few_requests_before_it_cuts_halfway() {
    let pacer = Pacer::new(1000);
    let (tickets, _) = send(&pacer, 10).await;
    pacer.on_throttled(tickets[9]);
    assert_eq!(pacer.current_rate(), 100.0);
    let cut_at = Instant::now();
    // 10 sends in the window, below the new pace: only the new spacing applies (an interval
    // of 10.1 ms, the timer's millisecond steps aside), not a hold of about a second.
    let next = next_send(&pacer).await;
    assert!(
        next < cut_at + Duration::from_millis(12),
        "{:?}",
        next - cut_at
    );

    let pacer = Pacer::new(1000);
    let (tickets, times) = send(&pacer, 100).await;
    pacer.on_throttled(tickets[99]);
    assert_eq!(pacer.current_rate(), 100.0);
    // 100 sends in the window, as many as the new pace: wait for the oldest to leave it.
    assert_eq!(next_send(&pacer).await, times[0] + GUARD);
}

/// Throttles of requests sent before a cut are its consequence and do not cut again; the
/// first request sent after it, throttled, does. Refused requests are not counted as accepted.
#[tokio::test(start_paused = true)]
async fn only_throttles_of_requests_sent_after_the_last_cut_cut_again() {
    let pacer = Pacer::new(1000);
    let (mut tickets, mut times) = send(&pacer, 400).await;
    pacer.on_throttled(tickets[200]);
    let first = expected_cut(1000.0, &times, &[], 200);
    assert_eq!(pacer.current_rate(), first);
    pacer.on_throttled(tickets[300]);
    pacer.on_throttled(tickets[399]);
    assert_eq!(pacer.current_rate(), first, "sent before the cut");
    let (more, more_times) = send(&pacer, 1).await;
    tickets.extend(more);
    times.extend(more_times);
    pacer.on_throttled(tickets[400]);
    let second = expected_cut(first, &times, &[200, 300, 399], 400);
    assert!(second < first);
    assert_eq!(pacer.current_rate(), second);
}

/// A throttle of a request sent so long ago that the pacer forgot it (3 s) cuts by the at-limit
/// step, 1 %; the pacer remembers only those 3 s of sends.
#[tokio::test(start_paused = true)]
async fn a_throttle_of_a_forgotten_request_cuts_by_one_percent() {
    let pacer = Pacer::new(100);
    let (old, _) = send(&pacer, 1).await;
    send(&pacer, 400).await;
    assert!(
        pacer.state().sent.len() <= 310,
        "{}",
        pacer.state().sent.len()
    );
    pacer.on_throttled(old[0]);
    assert_eq!(pacer.current_rate(), 99.0);
}

/// The count behind a cut is of the second before the throttled request, a send exactly one
/// second earlier not included (the server's window is half-open).
#[tokio::test(start_paused = true)]
async fn the_second_before_a_throttled_request_excludes_a_send_exactly_a_second_earlier() {
    let pacer = Pacer::new(1000);
    let (mut tickets, mut times) = send(&pacer, 150).await;
    tokio::time::sleep_until(times[0] + WINDOW).await;
    let (last, at) = send(&pacer, 1).await;
    assert_eq!(at[0], times[0] + WINDOW);
    tickets.extend(last);
    times.extend(at);
    pacer.on_throttled(tickets[150]);
    assert_eq!(pacer.current_rate(), 147.0, "⌊0.99 × 149⌋");
}

/// A throttle cuts at least 1 % below the pace in force, even when more requests than that pace
/// were accepted in the second before (the pace was lowered just before).
#[tokio::test(start_paused = true)]
async fn a_throttle_cuts_at_least_one_percent_below_the_pace_in_force() {
    let pacer = Pacer::new(1000);
    send(&pacer, 500).await;
    {
        let mut state = pacer.state();
        pacer.set_rate(&mut state, 300.0, Instant::now());
    }
    let (ticket, _) = send(&pacer, 1).await;
    pacer.on_throttled(ticket[0]);
    assert_eq!(pacer.current_rate(), 297.0);
}

/// An app-wide throttle elsewhere cuts 1 %, once a second at most (a second to the nanosecond
/// after a cut, it cuts again).
#[tokio::test(start_paused = true)]
async fn an_app_wide_throttle_elsewhere_cuts_one_percent_once_a_second() {
    let pacer = Pacer::new(200);
    pacer.on_throttled_elsewhere();
    assert_eq!(pacer.current_rate(), 198.0);
    pacer.on_throttled_elsewhere();
    tokio::time::advance(WINDOW - Duration::from_nanos(1)).await;
    pacer.on_throttled_elsewhere();
    assert_eq!(pacer.current_rate(), 198.0, "within a second of the cut");
    tokio::time::advance(Duration::from_nanos(1)).await;
    pacer.on_throttled_elsewhere();
    assert_eq!(pacer.current_rate(), 198.0 * 0.99);
    assert_eq!(pacer.lowest_rate(), 198.0 * 0.99);
}

/// After a cut, only answers to requests sent at the new pace count, once at least a second
/// has passed since it (to the nanosecond): the pace climbs 0.5 %, then 1 %, 2 %...
#[tokio::test(start_paused = true)]
async fn the_pace_climbs_back_on_answers_to_requests_sent_at_the_new_pace() {
    let pacer = Pacer::new(1000);
    let (tickets, _) = send(&pacer, 10).await;
    pacer.on_throttled(tickets[9]);
    assert_eq!(pacer.current_rate(), 100.0);
    let cut = Instant::now();
    let (after, _) = send(&pacer, 1).await;
    tokio::time::advance(cut + WINDOW - Duration::from_nanos(1) - Instant::now()).await;
    pacer.on_accepted(after[0]);
    assert_eq!(
        pacer.current_rate(),
        100.0,
        "less than a second after the cut"
    );
    tokio::time::advance(Duration::from_nanos(1)).await;
    assert_eq!(Instant::now(), cut + WINDOW);
    pacer.on_accepted(tickets[5]);
    assert_eq!(pacer.current_rate(), 100.0, "sent before the cut");
    pacer.on_accepted(after[0]);
    let climbs = |rate: f64, expected: f64| (rate - expected).abs() < 1e-9;
    assert!(
        climbs(pacer.current_rate(), 100.5),
        "{}",
        pacer.current_rate()
    );
    let climbed = Instant::now();
    let (next, _) = send(&pacer, 1).await;
    tokio::time::advance(climbed + WINDOW - Instant::now()).await;
    pacer.on_accepted(next[0]);
    assert!(
        climbs(pacer.current_rate(), 100.5 * 1.01),
        "{}",
        pacer.current_rate()
    );
}

/// At `--rate`, answers change nothing: the next request goes as soon as the spacing allows,
/// never held back a whole interval by a pace set again. The same once a start ramp is over.
#[tokio::test(start_paused = true)]
async fn at_the_ceiling_nothing_holds_the_next_request_back() {
    let pacer = Pacer::new(10);
    let (tickets, _) = send(&pacer, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pacer.on_accepted(tickets[0]);
    assert_eq!(pacer.current_rate(), 10.0);
    let now = Instant::now();
    assert_eq!(next_send(&pacer).await, now, "idle for 1.5 s at 10/s");

    // 200, 400, ..., 3,200, then 4,000/s: the ramp is over after 125 ms.
    let pacer = Pacer::new(4000);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(150) {
        pacer.acquire().await;
    }
    assert_eq!(pacer.current_rate(), 4000.0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let now = Instant::now();
    assert_eq!(next_send(&pacer).await, now, "idle for 100 ms at 4,000/s");
}

/// Each request costs `CELLS` cells whatever the pace, so governor's whole-cell tolerance is
/// the 4 ms catch-up at any pace, and the interval is never shorter than the pace's.
#[test]
fn a_request_costs_the_same_cells_at_every_pace() {
    for pace in [
        1.0, 3.0, 50.0, 101.0, 199.0, 200.0, 1000.0, 3000.0, 5000.0, 100_000.0,
    ] {
        let (quota, cells, burst) = shape(pace);
        let cells = u64::from(cells.get());
        assert!(
            (CELLS..=CELLS + 10).contains(&cells),
            "pace {pace}: {cells} cells"
        );
        let cell = quota.replenish_interval();
        let interval = cell * cells as u32;
        assert!(
            interval >= PACE_WINDOW.div_f64(pace),
            "pace {pace}: {interval:?}"
        );
        let tolerance = cell * (burst.get() - cells as u32);
        assert!(
            tolerance >= CATCH_UP && tolerance < CATCH_UP + cell,
            "pace {pace}: {tolerance:?}"
        );
    }
}

/// The memory of sends is half-open too: a send exactly `MEMORY` old is still remembered (its
/// throttle is counted against the second before it), one a nanosecond older is forgotten.
#[tokio::test(start_paused = true)]
async fn a_send_exactly_as_old_as_the_memory_is_still_remembered() {
    let pacer = Pacer::new(100);
    let (_, times) = send(&pacer, 3).await;
    let mut state = pacer.state();
    state.forget_before(times[0]);
    assert_eq!((state.sent.len(), state.first_ticket), (3, 0));
    state.forget_before(times[0] + Duration::from_nanos(1));
    assert_eq!((state.sent.len(), state.first_ticket), (2, 1));
}

/// The room after a cut is counted over the last `GUARD`, half-open: a send exactly `GUARD`
/// old has left it.
#[tokio::test(start_paused = true)]
async fn a_send_exactly_a_guard_old_has_left_the_guard_window() {
    let pacer = Pacer::new(100);
    let (_, times) = send(&pacer, 3).await;
    let state = pacer.state();
    let left = times[0] + GUARD;
    assert_eq!(
        state.room_for(3.0, left - Duration::from_nanos(1)),
        Some(left)
    );
    assert_eq!(state.room_for(3.0, left), None);
}

/// During a long start (no answer yet, `--rate` far above 200/s), the start allowance holds for
/// seconds after the first sends are forgotten: at most `START_RATE` + 1 of our sends in any
/// `GUARD`, and a send as soon as the oldest of them leaves it, so the count stays at the
/// allowance window after window.
#[tokio::test(start_paused = true)]
async fn the_start_allowance_holds_after_the_first_sends_are_forgotten() {
    let pacer = Pacer::new(100_000);
    let allowance = START_RATE as usize + 1;
    let start = Instant::now();
    let mut times = Vec::new();
    while Instant::now() < start + Duration::from_secs(6) {
        pacer.acquire().await;
        times.push(Instant::now());
    }
    assert!(pacer.state().first_ticket > 0, "some sends were forgotten");
    for (i, &at) in times.iter().enumerate() {
        let in_guard = times[i..]
            .iter()
            .take_while(|&&later| later.duration_since(at) < GUARD)
            .count();
        assert!(
            in_guard <= allowance,
            "{in_guard} sends within a GUARD of send {i}"
        );
    }
    // Every full GUARD window after the first holds the allowance: nothing waits longer than
    // the oldest send's leaving.
    for window in 1..5 {
        let from = start + GUARD * window;
        let sent = times
            .iter()
            .filter(|&&at| at >= from && at < from + GUARD)
            .count();
        assert_eq!(sent, allowance, "window {window}");
    }
    let mut state = pacer.state();
    let now = Instant::now();
    let expected = times
        .iter()
        .filter(|&&at| now.duration_since(at) < GUARD)
        .count();
    assert_eq!(state.in_guard(now), expected);
}
