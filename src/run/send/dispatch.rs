//! The dispatcher: hands rows to the workers in file order, never two of one user in flight,
//! holding a user's later rows back until the earlier one is answered.

use std::collections::{HashMap, VecDeque};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Event, Job, Outcome, Report, MAX_DEFERRED};

/// Request bodies logged at info level (`-v`).
const SAMPLE_BODIES: usize = 3;

/// Sends jobs to workers, holding back any row whose user already has one in flight.
pub(super) async fn dispatch(
    mut events: mpsc::Receiver<Event>,
    work: mpsc::Sender<Job>,
    reports: mpsc::Sender<Report>,
    mut released: mpsc::UnboundedReceiver<String>,
    stop: CancellationToken,
) {
    // `-v` shows the first few bodies sent, as `--show-requests` does in a dry run: here, after
    // `--changes-only` cut them down to the tags that differ.
    let mut sampled = 0;
    // Users with a row in flight → their later rows, in file order.
    let mut busy: HashMap<String, VecDeque<Job>> = HashMap::new();
    let mut deferred = 0usize;
    let mut input_open = true;

    while input_open || !busy.is_empty() {
        tokio::select! {
            // Releases first: they free users and bound the deferred queue.
            biased;
            user = released.recv() => {
                let Some(user) = user else { break };
                let Some(queue) = busy.get_mut(&user) else { continue };
                match queue.pop_front() {
                    Some(job) if !stop.is_cancelled() => {
                        deferred -= 1;
                        // The user stays busy: this row is now the one in flight.
                        if let Err(err) = work.send(job).await {
                            let _ = reports.send(not_attempted(err.0)).await;
                        }
                    }
                    Some(job) => {
                        deferred -= 1;
                        let _ = reports.send(not_attempted(job)).await;
                        if let Some(rest) = busy.remove(&user) {
                            for job in rest {
                                deferred -= 1;
                                let _ = reports.send(not_attempted(job)).await;
                            }
                        }
                    }
                    None => {
                        busy.remove(&user);
                    }
                }
            }
            event = events.recv(), if input_open && deferred < MAX_DEFERRED => {
                match event {
                    None => input_open = false,
                    Some(Event::Job(job)) => {
                        if sampled < SAMPLE_BODIES {
                            sampled += 1;
                            log_sample(&job);
                        }
                        if stop.is_cancelled() {
                            let _ = reports.send(not_attempted(job)).await;
                        } else if let Some(queue) = busy.get_mut(&job.user_id) {
                            queue.push_back(job);
                            deferred += 1;
                        } else {
                            busy.insert(job.user_id.clone(), VecDeque::new());
                            if let Err(err) = work.send(job).await {
                                let _ = reports.send(not_attempted(err.0)).await;
                            }
                        }
                    }
                    Some(Event::Held(job)) => {
                        let _ = reports.send(not_attempted(job)).await;
                    }
                    Some(Event::Local(row)) => {
                        let _ = reports.send(Report::Local(row)).await;
                    }
                }
            }
            _ = stop.cancelled(), if deferred > 0 => {
                // Rows held back behind in-flight ones will not be sent now.
                drain_deferred(&mut busy, &mut deferred, &reports).await;
            }
        }
    }
}

/// `-v`: a row's request body (and its batch part).
fn log_sample(job: &Job) {
    if let Some(body) = &job.body {
        tracing::info!(
            "line {}: request body {}",
            job.pos.line,
            String::from_utf8_lossy(body)
        );
    }
    if let Some(entry) = &job.nick_image {
        tracing::info!(
            "line {}: multiaccount_import entry {}",
            job.pos.line,
            serde_json::to_string(entry).unwrap_or_default()
        );
    }
}

/// After a stop, reports every deferred row as not attempted (in-flight users stay busy until
/// their worker releases them).
async fn drain_deferred(
    busy: &mut HashMap<String, VecDeque<Job>>,
    deferred: &mut usize,
    reports: &mpsc::Sender<Report>,
) {
    for queue in busy.values_mut() {
        while let Some(job) = queue.pop_front() {
            *deferred -= 1;
            let _ = reports.send(not_attempted(job)).await;
        }
    }
}

pub(super) fn not_attempted(job: Job) -> Report {
    Report::Finished {
        job: Box::new(job),
        outcome: Outcome::NotAttempted,
        requests: 0,
    }
}
