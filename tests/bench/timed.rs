//! What a bench measured of the importer: `/usr/bin/time`'s figures (one place for the format
//! the bench programs pass it and the line they read back), and the machine's steal time.

/// `/usr/bin/time -f` format: user and system CPU seconds, wall seconds, peak RSS in KB.
pub const TIME_FORMAT: &str = "TIME %U %S %e %M";

/// The importer's CPU time, wall time and peak RSS, read from its stderr.
pub struct Timed {
    /// User + system CPU seconds.
    pub cpu: f64,
    pub wall: f64,
    /// Peak RSS in KB (`bench-rates` does not print it).
    #[allow(dead_code)]
    pub rss_kb: f64,
}

impl Timed {
    /// Reads the `TIME …` line `/usr/bin/time` appended to the importer's stderr.
    pub fn from_stderr(stderr: &str) -> Result<Timed, Box<dyn std::error::Error>> {
        let line = stderr
            .lines()
            .find(|l| l.starts_with("TIME "))
            .ok_or("no /usr/bin/time line")?;
        let t: Vec<f64> = line["TIME ".len()..]
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        match t[..] {
            [user, system, wall, rss_kb, ..] => Ok(Timed {
                cpu: user + system,
                wall,
                rss_kb,
            }),
            _ => Err(format!("unreadable /usr/bin/time line: {line}").into()),
        }
    }
}

/// The share of this machine's CPU time that its hypervisor gave to other guests ("steal"),
/// from `/proc/stat`. On a shared VM a run with a few % of steal loses wake-ups the importer
/// cannot make up, so the benches print it beside their figures.
#[derive(Debug, Clone, Copy)]
pub struct Steal {
    /// Steal and total CPU ticks when the meter started; `None` without `/proc/stat`.
    start: Option<(u64, u64)>,
}

impl Steal {
    pub fn start() -> Steal {
        Steal {
            start: steal_and_total(),
        }
    }

    /// Steal since the start as a share of all CPU time, like `3.1 %` (`-` where unknown).
    pub fn share(self) -> String {
        match (self.start, steal_and_total()) {
            (Some((steal0, total0)), Some((steal, total))) if total > total0 => format!(
                "{:.1} %",
                100.0 * steal.saturating_sub(steal0) as f64 / (total - total0) as f64
            ),
            _ => "-".into(),
        }
    }
}

/// The machine's steal ticks and all its CPU ticks: user, nice, system, idle, iowait, irq,
/// softirq and steal (guest time is already inside user).
fn steal_and_total() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    (ticks.len() == 8).then(|| (ticks[7], ticks.iter().sum()))
}
