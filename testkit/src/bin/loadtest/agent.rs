//! The agent under test: starting it with the harness's settings, reading
//! its stderr, stopping it, and parsing its exit summary line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::procfs::exit_ticks;

/// The agent's exit summary line, parsed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub produced: u64,
    pub exported: u64,
    pub discarded: u64,
    pub lost: u64,
    pub ring_full: u64,
    pub queue_full: u64,
}

/// The number right before `what` in `line` ("... 123 read, ...").
fn number_before(line: &str, what: &str) -> Option<u64> {
    let i = line.find(what)?;
    line[..i].split_whitespace().last()?.parse().ok()
}

/// The number right after `what` in `line` ("ring buffer full 12").
fn number_after(line: &str, what: &str) -> Option<u64> {
    let i = line.find(what)? + what.len();
    line[i..]
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

/// The counts of the agent's "mapwatch: stopped" line, or None for other lines.
fn parse_summary(line: &str) -> Option<Summary> {
    if !line.contains("records produced in the kernel") {
        return None;
    }
    Some(Summary {
        produced: number_before(line, "records produced")?,
        exported: number_before(line, "exported")?,
        discarded: number_before(line, "discarded").unwrap_or(0),
        lost: number_after(line, "lost:")?,
        ring_full: number_after(line, "ring buffer full")?,
        queue_full: number_after(line, "export queue full")?,
    })
}

/// A running agent and the lines it wrote on stderr.
pub struct Agent {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    /// Its startup line, "mapwatch: watching EVENT via BACKEND, ...".
    pub watching: String,
}

impl Agent {
    /// Starts the agent; `otlp` is a gRPC endpoint, or None for OTEL_SDK_DISABLED.
    pub fn start(
        binary: &Path,
        otlp: Option<&str>,
        env: &[(String, String)],
    ) -> Result<Agent, String> {
        let mut cmd = Command::new(binary);
        cmd.args(["--console", "never"])
            .env("MAPWATCH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars() {
            if key.starts_with("OTEL_") || key.starts_with("MAPWATCH_") {
                cmd.env_remove(key);
            }
        }
        for (key, value) in env {
            cmd.env(key, value);
        }
        match otlp {
            Some(endpoint) => {
                cmd.args(["--otlp-endpoint", endpoint]);
            }
            None => {
                cmd.env("OTEL_SDK_DISABLED", "true");
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut agent = Agent {
            child,
            lines: rx,
            seen: Vec::new(),
            watching: String::new(),
        };
        agent.watching = agent.wait_for_line("mapwatch: watching", Duration::from_secs(30))?;
        // Let the reader settle before the workload starts.
        std::thread::sleep(Duration::from_millis(300));
        Ok(agent)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return Ok(line);
                    }
                }
                Err(_) => {
                    return Err(format!(
                        "agent did not print {prefix:?} within {timeout:?}; it said:\n{}",
                        self.seen.join("\n")
                    ));
                }
            }
        }
    }

    /// SIGTERM, then the summary line.
    pub fn stop(self) -> Result<Summary, String> {
        self.stop_with_cpu().map(|(summary, _)| summary)
    }

    /// SIGTERM, then the summary line and the agent's CPU time (utime +
    /// stime from /proc/PID/stat, all threads) over its whole life, in
    /// clock ticks, read once it has exited (its flush at exit included);
    /// None if it could not be read.
    pub fn stop_with_cpu(mut self) -> Result<(Summary, Option<u64>), String> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let line = self.wait_for_line("mapwatch: stopped", Duration::from_secs(15));
        let ticks = exit_ticks(self.child.id(), Duration::from_secs(15));
        let _ = self.child.wait();
        let line = line?;
        let summary =
            parse_summary(&line).ok_or(format!("cannot parse the agent's summary: {line}"))?;
        Ok((summary, ticks))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_summary;

    #[test]
    fn parses_the_exit_summary() {
        // The shape of agent/src/stats.rs's final_summary after run.rs's prefix.
        let line = "mapwatch: stopped after 10.3s: 2000 records produced in the kernel, 2000 read, \
                    1990 exported, 3 discarded (no destination configured); lost: 7 (ring buffer full 2, \
                    argument map full 0, undecodable 0, export failed 0, rejected by the collector 0, export queue full 5, unsent at exit 0)";
        let s = parse_summary(line).unwrap();
        assert_eq!(
            (
                s.produced,
                s.exported,
                s.discarded,
                s.lost,
                s.ring_full,
                s.queue_full
            ),
            (2000, 1990, 3, 7, 2, 5)
        );
        assert!(parse_summary("mapwatch: watching").is_none());
    }
}
