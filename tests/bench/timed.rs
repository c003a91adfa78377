//! What `/usr/bin/time` measured of the importer in a bench: one place for the format the bench
//! programs pass it and the line they read back.

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
