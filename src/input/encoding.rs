//! The input's encoding: a file that is not UTF-8 as a whole (UTF-16, GBK, Latin-1) is refused
//! before a row is read, with one message saying what it looks like and how to convert it.

use std::path::Path;

use anyhow::bail;

/// The first bytes of the input that are checked for their encoding.
pub const SAMPLE_BYTES: usize = 64 * 1024;
/// Lines of the sample with bytes that are not UTF-8 from which a file with no UTF-8 multi-byte
/// characters is taken to be in another encoding as a whole (see `check`).
const FOREIGN_ENCODING_MIN_LINES: u64 = 5;

/// Rejects files in an encoding other than UTF-8, as a whole, with one message.
///
/// UTF-16 shows in a byte-order mark or NUL bytes in the header. A single-byte or GBK file
/// shows in its first `SAMPLE_BYTES` (`complete`: the sample is the whole input): the
/// file is refused when at least `FOREIGN_ENCODING_MIN_LINES` lines hold bytes that are not
/// UTF-8 and such lines outnumber the lines of well-formed UTF-8 text beyond ASCII at least ten
/// to one (a GBK line is now and then valid UTF-8 by accident, so "none" would be too strict).
/// A UTF-8 file with a few damaged cells has few bad lines, or real UTF-8 lines around them
/// (CJK names, accents, emoji), so it is read, and each damaged row is rejected on its own,
/// naming the column. An ASCII file is UTF-8 and always passes.
pub fn check(sample: &[u8], complete: bool, path: &Path) -> anyhow::Result<()> {
    if sample.starts_with(&[0xFF, 0xFE]) || sample.starts_with(&[0xFE, 0xFF]) {
        bail!(
            "{} is UTF-16 encoded; save it as UTF-8 (in Excel: \"CSV UTF-8\")",
            path.display()
        );
    }
    let first_line = sample.split(|&b| b == b'\n').next().unwrap_or_default();
    if first_line.contains(&0) {
        bail!(
            "{} has NUL bytes in its header row; it is probably UTF-16 or binary, not a UTF-8 CSV",
            path.display()
        );
    }
    let census = EncodingCensus::of(sample, complete);
    if census.bad_lines >= FOREIGN_ENCODING_MIN_LINES && census.bad_lines >= 10 * census.utf8_lines
    {
        let (looks_like, iconv_name) = if census.looks_like_gbk() {
            ("GBK (GB2312/GB18030)", "GB18030")
        } else {
            ("Latin-1 (ISO-8859-1) or Windows-1252", "WINDOWS-1252")
        };
        bail!(
            "{path} is not UTF-8: {bad} of its first {lines} lines hold bytes that are not UTF-8, \
             against {utf8} lines of UTF-8 text beyond ASCII; it looks like {looks_like}. \
             Nothing was read. Save it as UTF-8 (in Excel: \"CSV UTF-8\"), or \
             convert it, e.g. `iconv -f {iconv_name} -t UTF-8 {path} > {stem}.utf8.csv`",
            path = path.display(),
            bad = census.bad_lines,
            lines = census.lines,
            utf8 = census.utf8_lines,
            stem = crate::fsutil::beside(path, "").display(),
        );
    }
    Ok(())
}

/// What the bytes of a sample say about its encoding.
#[derive(Debug, Default, PartialEq, Eq)]
struct EncodingCensus {
    /// Lines looked at (a last line cut off by the end of the sample is left out).
    lines: u64,
    /// Lines holding at least one byte sequence that is not UTF-8.
    bad_lines: u64,
    /// Lines that are well-formed UTF-8 with at least one character beyond ASCII.
    utf8_lines: u64,
    /// Bytes of 0x80 and above on the bad lines.
    high_bytes: u64,
    /// Of those, the ones in pairs of two GB2312 bytes (0xA1-0xFE each).
    gb2312_pair_bytes: u64,
}

impl EncodingCensus {
    fn of(sample: &[u8], complete: bool) -> EncodingCensus {
        let mut census = EncodingCensus::default();
        let mut lines: Vec<&[u8]> = sample.split(|&b| b == b'\n').collect();
        // The piece after the last line break: nothing (a complete file ending in a break),
        // or a line the sample cut off.
        if lines.len() > 1 && (!complete || lines.last().is_some_and(|l| l.is_empty())) {
            lines.pop();
        }
        for line in lines {
            census.lines += 1;
            match std::str::from_utf8(line) {
                Ok(text) if !text.is_ascii() => census.utf8_lines += 1,
                Ok(_) => {}
                Err(_) => {
                    census.bad_lines += 1;
                    census.count_high_bytes(line);
                }
            }
        }
        census
    }

    fn count_high_bytes(&mut self, line: &[u8]) {
        let gb2312 = |b: u8| (0xA1..=0xFE).contains(&b);
        let mut i = 0;
        while i < line.len() {
            if line[i] < 0x80 {
                i += 1;
            } else if i + 1 < line.len() && gb2312(line[i]) && gb2312(line[i + 1]) {
                self.high_bytes += 2;
                self.gb2312_pair_bytes += 2;
                i += 2;
            } else {
                self.high_bytes += 1;
                i += 1;
            }
        }
    }

    /// Chinese text in GBK comes in byte pairs; Latin-1 accents mostly stand alone.
    fn looks_like_gbk(&self) -> bool {
        self.high_bytes > 0 && self.gb2312_pair_bytes * 5 >= self.high_bytes * 4
    }
}
