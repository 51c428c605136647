//! The harness's helper processes: `loadtest` re-executes itself in one of
//! these modes so that work which is not being measured runs outside the
//! process that times the mmap + munmap pairs.
//!
//! - `--count-lines PREFIX READY`: reads a tool's output on stdin to its end
//!   (the other end of a pipe), counts the lines starting with PREFIX, the
//!   events the tool says it lost ("Lost N events"), and prints `ready` on
//!   stdout when the line READY arrives, then one `counts ...` line at the
//!   end of its input.
//! - `--otlp-sink`: a count-only OTLP receiver; prints its gRPC endpoint,
//!   then answers every line on stdin with the log records received so far,
//!   and exits at the end of its input.

use std::io::{BufRead, BufReader, Read, Write};

use mapwatch_testkit::OtlpReceiver;

pub const COUNT_LINES: &str = "--count-lines";
pub const OTLP_SINK: &str = "--otlp-sink";

/// What the line counter saw, as it prints it at the end of its input.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LineCounts {
    /// Lines starting with the record prefix.
    pub records: u64,
    /// Events the tool reported lost ("Lost N events"), summed.
    pub lost: u64,
    /// Lines that were none of the above (a tool's map dump, warnings).
    pub other: u64,
    /// The first few of those other lines, for the report's notes.
    pub other_sample: Vec<String>,
    /// Map values the tool prints at its exit ("@name: value").
    pub map_lines: Vec<String>,
}

impl LineCounts {
    /// Counts one line of the tool's output.
    pub fn add(&mut self, line: &[u8], prefix: &[u8]) {
        if line.starts_with(prefix) {
            self.records += 1;
            return;
        }
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if let Some(n) = text
            .strip_prefix("Lost ")
            .and_then(|rest| rest.strip_suffix(" events"))
            .and_then(|n| n.trim().parse::<u64>().ok())
        {
            self.lost += n;
        } else if text.starts_with('@') {
            if self.map_lines.len() < 16 {
                self.map_lines.push(text.to_owned());
            }
        } else if !text.is_empty() && !text.starts_with("Attaching ") {
            self.other += 1;
            if self.other_sample.len() < 5 {
                self.other_sample.push(text.to_owned());
            }
        }
    }

    /// The single line the counter prints at the end.
    pub fn to_line(&self) -> String {
        let mut line = format!(
            "counts records={} lost={} other={}",
            self.records, self.lost, self.other
        );
        for s in self.other_sample.iter().chain(&self.map_lines) {
            line.push_str(" | ");
            line.push_str(&s.replace('|', "/"));
        }
        line
    }

    /// Parses `to_line`'s output.
    pub fn parse(line: &str) -> Option<LineCounts> {
        let mut parts = line.strip_prefix("counts ")?.split(" | ");
        let mut counts = LineCounts::default();
        for kv in parts.next()?.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            let v: u64 = v.parse().ok()?;
            match k {
                "records" => counts.records = v,
                "lost" => counts.lost = v,
                "other" => counts.other = v,
                _ => return None,
            }
        }
        for part in parts {
            if part.starts_with('@') {
                counts.map_lines.push(part.to_owned());
            } else {
                counts.other_sample.push(part.to_owned());
            }
        }
        Some(counts)
    }
}

/// The helper mode named by the first argument, run to its end; false if
/// the arguments name none (the harness itself runs then).
pub fn run_helper(args: &[String]) -> bool {
    match args.first().map(String::as_str) {
        Some(COUNT_LINES) => {
            let prefix = args.get(1).cloned().unwrap_or_default();
            let ready = args.get(2).cloned().unwrap_or_default();
            count_lines(std::io::stdin().lock(), prefix.as_bytes(), ready.as_bytes());
            true
        }
        Some(OTLP_SINK) => {
            if let Err(e) = otlp_sink() {
                eprintln!("loadtest {OTLP_SINK}: {e}");
                std::process::exit(1);
            }
            true
        }
        _ => false,
    }
}

fn count_lines(input: impl Read, prefix: &[u8], ready: &[u8]) {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let mut out = std::io::stdout().lock();
    let mut counts = LineCounts::default();
    let mut line = Vec::with_capacity(512);
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if !ready.is_empty() && line.trim_ascii_end() == ready {
            let _ = writeln!(out, "ready");
            let _ = out.flush();
            continue;
        }
        counts.add(&line, prefix);
    }
    let _ = writeln!(out, "{}", counts.to_line());
    let _ = out.flush();
}

fn otlp_sink() -> std::io::Result<()> {
    let receiver = OtlpReceiver::start_count_only()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "grpc={}", receiver.grpc_endpoint())?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
        writeln!(out, "records={}", receiver.counters().log_records)?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::LineCounts;

    #[test]
    fn counts_records_losses_and_the_rest() {
        let mut c = LineCounts::default();
        for line in [
            "Attaching 5 probes...\n",
            "mmap ktime=1 pid=2\n",
            "mmap ktime=3 pid=2\n",
            "Lost 17 events\n",
            "Lost 3 events\n",
            "\n",
            "@compat_calls: 4\n",
            "WARNING: something\n",
        ] {
            c.add(line.as_bytes(), b"mmap ");
        }
        assert_eq!((c.records, c.lost, c.other), (2, 20, 1));
        assert_eq!(c.map_lines, ["@compat_calls: 4"]);
        let line = c.to_line();
        assert_eq!(
            line,
            "counts records=2 lost=20 other=1 | WARNING: something | @compat_calls: 4"
        );
        assert_eq!(LineCounts::parse(&line), Some(c));
        assert_eq!(LineCounts::parse("ready"), None);
    }
}
