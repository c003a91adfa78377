//! Reading ahead: rows stream in, the users to compare are gathered into portrait_get batches of
//! up to 100, several batches are read at once on the reads' own pacer, and every row leaves in
//! the order it came, with its comparison, as soon as its batch is answered. Rows that need no
//! read pass straight through (behind the rows before them). Memory is bounded: the rows held
//! are at most the batches in flight plus [`MAX_HELD`].

use std::collections::{HashMap, HashSet, VecDeque};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{compare, Compared, Reads};
use crate::chat::api::command::PORTRAIT_GET;
use crate::chat::api::ChatApi;
use crate::chat::portrait::{self, ProfileItem, UserRead, USERS_PER_READ};
use crate::chat::retry::Answer;
use crate::outcome::FailureCode;
use crate::run::accounts::AccountCalls;

/// The code of an account Chat does not know; on a whole portrait_get, of some account in it.
const NOT_AN_ACCOUNT: u32 = 40003;

/// Rows held waiting for a read, beyond which the next batch is read even if not full.
const MAX_HELD: usize = 20_000;

/// What comes in: a row to pass on, or a row whose user is compared first.
pub enum Ahead<T> {
    Pass(T),
    Compare {
        user: String,
        expected: Vec<ProfileItem>,
        item: T,
    },
}

struct Held<T> {
    item: T,
    /// The batch, user and items of a row waiting for its read.
    waiting: Option<(u64, String, Vec<ProfileItem>)>,
}

/// The batch being gathered.
#[derive(Default)]
struct Gathering {
    id: u64,
    users: Vec<String>,
    seen: HashSet<String>,
}

/// Reads ahead: takes rows from `input` (made into [`Ahead`] by `split`), hands each one to
/// `settle` with its comparison (`None` for rows passed through), in input order, and sends
/// what `settle` makes to `output`. Returns when the input is closed and every row is out (or
/// the output is closed).
pub async fn read_ahead<I, T, U>(
    mut input: mpsc::Receiver<I>,
    output: mpsc::Sender<U>,
    reads: Reads,
    mut split: impl FnMut(I) -> Ahead<T>,
    mut settle: impl FnMut(T, Option<Compared>) -> U,
) {
    let mut held: VecDeque<Held<T>> = VecDeque::new();
    let mut answered: HashMap<u64, HashMap<String, UserRead>> = HashMap::new();
    // Rows of each batch not yet out: its answer is dropped with the last of them.
    let mut rows_left: HashMap<u64, usize> = HashMap::new();
    let mut tasks = Reading::default();
    let mut gathering = Gathering::default();
    let mut input_open = true;
    loop {
        while let Some(front) = held.front() {
            let ready = match &front.waiting {
                None => true,
                Some((id, _, _)) => answered.contains_key(id),
            };
            if !ready {
                break;
            }
            let Some(row) = held.pop_front() else { break };
            let out = match row.waiting {
                None => settle(row.item, None),
                Some((id, user, expected)) => {
                    let read = answered
                        .get_mut(&id)
                        .and_then(|users| users.remove(&user))
                        .unwrap_or_else(|| UserRead::Unread("no answer for it".into()));
                    let left = rows_left.entry(id).or_default();
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        rows_left.remove(&id);
                        answered.remove(&id);
                    }
                    settle(
                        row.item,
                        Some(compare(expected, read, &reads.only_if_empty)),
                    )
                }
            };
            if output.send(out).await.is_err() {
                return;
            }
        }
        if !input_open && held.is_empty() {
            return;
        }
        let launch = gathering.users.len() >= USERS_PER_READ
            || !input_open
            || held.len() >= MAX_HELD + reads.in_flight * USERS_PER_READ;
        if !gathering.users.is_empty() && tasks.len() < reads.in_flight && launch {
            launch_read(&mut tasks, &reads, &mut gathering);
        }
        let full = gathering.users.len() >= USERS_PER_READ && tasks.len() >= reads.in_flight;
        let can_take =
            input_open && !full && held.len() < MAX_HELD + reads.in_flight * USERS_PER_READ;
        tokio::select! {
            done = tasks.set.join_next_with_id(), if !tasks.is_empty() => {
                match done {
                    Some(Ok((task, (id, users)))) => {
                        tasks.batches.remove(&task);
                        answered.insert(id, users);
                    }
                    // A read task cannot panic short of a bug; its rows are then sent whole.
                    Some(Err(err)) => {
                        tracing::error!("a portrait_get task failed: {err}");
                        if let Some(id) = tasks.batches.remove(&err.id()) {
                            answered.insert(id, HashMap::new());
                        }
                    }
                    None => {}
                }
            }
            next = input.recv(), if can_take => match next {
                None => input_open = false,
                Some(next) => match split(next) {
                    Ahead::Pass(item) => held.push_back(Held { item, waiting: None }),
                    Ahead::Compare { user, expected, item } => {
                        if gathering.seen.contains(&user) {
                            // One user once per read: the batch so far goes out first.
                            launch_read(&mut tasks, &reads, &mut gathering);
                        }
                        gathering.seen.insert(user.clone());
                        gathering.users.push(user.clone());
                        *rows_left.entry(gathering.id).or_default() += 1;
                        let waiting = Some((gathering.id, user, expected));
                        held.push_back(Held { item, waiting });
                    }
                },
            },
            else => {
                // Nothing in flight and nothing to take, yet rows wait: never lose them.
                give_up_waiting(&mut held, &mut answered);
            }
        }
    }
}

/// Marks every waiting row's batch as answered "not read", so they are sent whole.
fn give_up_waiting<T>(
    held: &mut VecDeque<Held<T>>,
    answered: &mut HashMap<u64, HashMap<String, UserRead>>,
) {
    for row in held.iter() {
        if let Some((id, _, _)) = &row.waiting {
            answered.entry(*id).or_default();
        }
    }
}

/// The reads in flight, and which batch each task reads.
#[derive(Default)]
struct Reading {
    set: JoinSet<(u64, HashMap<String, UserRead>)>,
    batches: HashMap<tokio::task::Id, u64>,
}

impl Reading {
    fn len(&self) -> usize {
        self.set.len()
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// Starts reading the batch gathered so far, and starts a new one.
fn launch_read(tasks: &mut Reading, reads: &Reads, gathering: &mut Gathering) {
    let id = gathering.id;
    let users = std::mem::take(&mut gathering.users);
    gathering.seen.clear();
    gathering.id += 1;
    let reads = reads.clone();
    let task = tasks
        .set
        .spawn(async move { (id, read_batch(&reads, users).await) });
    tasks.batches.insert(task.id(), id);
}

/// Why a read gave no per-user answer.
enum Refused {
    /// The whole call was refused with 40003: some account in it is unknown, but not which.
    NotAllAccounts(String),
    Other(String),
}

/// One portrait_get, retried like every call; what it says of each user. A read refused
/// whole because some account is unknown is sorted out with account_check (when the reads
/// have one) and read again without the missing users. A read that fails for good otherwise
/// leaves its users unread (their rows are sent whole).
async fn read_batch(reads: &Reads, users: Vec<String>) -> HashMap<String, UserRead> {
    match read_once(reads, &users).await {
        Ok(read) => read,
        Err(Refused::NotAllAccounts(why)) => match &reads.account_check {
            Some(checks) => sort_out_missing(reads, checks, users, why).await,
            None => unread(&users, &why),
        },
        Err(Refused::Other(why)) => unread(&users, &why),
    }
}

/// After a read refused whole with 40003: asks account_check which users are missing, and
/// reads the others once more.
async fn sort_out_missing(
    reads: &Reads,
    checks: &ChatApi,
    users: Vec<String>,
    why: String,
) -> HashMap<String, UserRead> {
    let missing: HashSet<String> = match (AccountCalls { api: checks }).check_batch(&users).await {
        Ok(missing) => missing.into_iter().collect(),
        Err(err) => return unread(&users, &format!("{why}; then {err}")),
    };
    if missing.is_empty() {
        // Every account exists, so the 40003 meant something else: nothing to go on.
        return unread(&users, &why);
    }
    let known: Vec<String> = users.into_iter().filter(|u| !missing.contains(u)).collect();
    let mut read: HashMap<String, UserRead> = missing
        .into_iter()
        .map(|user| (user, UserRead::NotAnAccount))
        .collect();
    if !known.is_empty() {
        read.extend(match read_once(reads, &known).await {
            Ok(again) => again,
            Err(Refused::NotAllAccounts(why) | Refused::Other(why)) => unread(&known, &why),
        });
    }
    read
}

/// One portrait_get of `users`, retried like every call.
async fn read_once(reads: &Reads, users: &[String]) -> Result<HashMap<String, UserRead>, Refused> {
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let request = portrait::get_request(&names, &reads.tags);
    let (answer, _) = reads.api.call(PORTRAIT_GET, request).await;
    match answer {
        Answer::Ok(_, raw) => match portrait::read_answer(&raw, &names) {
            Ok(read) => Ok(users.iter().cloned().zip(read).collect()),
            Err(err) => Err(Refused::Other(format!(
                "portrait_get answered something unexpected: {err}"
            ))),
        },
        Answer::Failed {
            code: FailureCode::Chat(NOT_AN_ACCOUNT),
            message,
        } => Err(Refused::NotAllAccounts(format!(
            "portrait_get refused the call: {NOT_AN_ACCOUNT} {message}"
        ))),
        Answer::Failed { code, message } => Err(Refused::Other(format!(
            "portrait_get failed: {code} {message}"
        ))),
        Answer::Fatal { why, .. } => {
            (reads.on_fatal)(why.clone());
            Err(Refused::Other(why))
        }
        Answer::Stopped => Err(Refused::Other("the run stopped".into())),
    }
}

/// Every user unread, for `why`.
fn unread(users: &[String], why: &str) -> HashMap<String, UserRead> {
    tracing::debug!("{} users not compared: {why}", users.len());
    users
        .iter()
        .map(|user| (user.clone(), UserRead::Unread(why.to_string())))
        .collect()
}
