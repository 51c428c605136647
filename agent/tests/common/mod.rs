//! Shared pieces of the agent's end-to-end tests: a real `mapwatch` process
//! and a real OTLP receiver.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Fails (never skips) when not root: CI runs as root, and these tests are
/// the proof that the probes work.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads BPF programs and must run as root (CI does); run the suite with sudo"
    );
}

/// A running `mapwatch` with its stderr captured.
pub struct Agent {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// The `mapwatch` binary under test: `$MAPWATCH_BIN` when set (the VM
/// harness copies binaries elsewhere), else the one cargo built for these tests.
pub fn agent_binary() -> std::path::PathBuf {
    std::env::var_os("MAPWATCH_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_mapwatch").into())
}

/// The agent with a clean environment, except `MAPWATCH_BACKENDS__*`, which
/// pass through so one test run can be repeated per forced backend.
pub fn agent_command() -> Command {
    let mut cmd = Command::new(agent_binary());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("MAPWATCH_LOG", "info")
        .stdin(Stdio::null());
    for (key, value) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MAPWATCH_BACKENDS__") {
            cmd.env(key, value);
        }
    }
    cmd
}

impl Agent {
    /// Starts `cmd` and waits until it reports that its probes are attached.
    pub fn start(mut cmd: Command) -> Agent {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mapwatch");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let pipe = child.stderr.take().expect("piped stderr");
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if line.starts_with("mapwatch: watching") {
                    let _ = ready_tx.send(());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let mut agent = Agent { child, stderr };
        if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = agent.child.kill();
            panic!(
                "mapwatch did not attach within 30 s; stderr:\n{}",
                agent.stderr()
            );
        }
        agent
    }

    /// Everything the agent wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Sends `signal` and waits for the exit, at most `limit`.
    pub fn stop_with(
        mut self,
        signal: libc::c_int,
        limit: Duration,
    ) -> (ExitStatus, Duration, String) {
        let started = Instant::now();
        // SAFETY: kill with a valid signal on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for mapwatch") {
                // Let the stderr thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return (status, started.elapsed(), self.stderr());
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "mapwatch did not exit within {limit:?} of signal {signal}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
