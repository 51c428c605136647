//! One VM: qemu (TCG) with the kernel and initramfs, serial console on
//! stdout, saved line by line to a log and timestamped for the report.

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

/// How to boot.
pub struct BootOptions {
    pub memory: String,
    pub smp: usize,
    pub timeout: Duration,
    /// Print every serial line, not only the markers.
    pub verbose: bool,
}

/// A line of serial output and when it arrived after qemu started.
#[derive(Clone, Debug)]
pub struct TimedLine {
    pub at: Duration,
    pub text: String,
}

/// What happened to one VM.
pub struct Boot {
    pub lines: Vec<TimedLine>,
    pub elapsed: Duration,
    /// Killed after `BootOptions::timeout`.
    pub timed_out: bool,
    /// qemu's own exit status and stderr, for the report when things go wrong.
    pub qemu_status: Option<std::process::ExitStatus>,
    pub qemu_stderr: String,
}

/// Boots `vmlinuz` with `initrd`, writing the serial console to `log`.
/// `label` prefixes the marker lines echoed on stderr.
pub fn boot(
    label: &str,
    vmlinuz: &Path,
    initrd: &Path,
    log: &Path,
    opts: &BootOptions,
) -> Result<Boot> {
    let mut cmd = Command::new("qemu-system-x86_64");
    // Single-threaded TCG: with one host thread per vCPU (MTTCG), the
    // kernel's int3-based live patching (static keys flipped when probes
    // attach) raced with the other vCPU and oopsed ("Oops: int3") in one run.
    cmd.args(["-accel", "tcg,thread=single", "-m", &opts.memory])
        .args(["-smp", &opts.smp.to_string()])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            "console=ttyS0 lsm=lockdown,capability,bpf panic=-1 quiet",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut file = fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    writeln!(file, "# {}", crate::host::show(&cmd))?;
    let started = Instant::now();
    let mut child = cmd.spawn().context("start qemu-system-x86_64")?;

    let lines = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().expect("piped");
    let reader = {
        let lines = lines.clone();
        let label = label.to_owned();
        let verbose = opts.verbose;
        std::thread::spawn(move || -> std::io::Result<fs::File> {
            let mut stdout = BufReader::new(stdout);
            let mut raw = Vec::new();
            while stdout.read_until(b'\n', &mut raw)? > 0 {
                let text = printable(&String::from_utf8_lossy(&raw));
                raw.clear();
                writeln!(file, "{text}")?;
                if verbose || text.starts_with("MWVM-") {
                    eprintln!("[{label} {:>5.1}s] {text}", started.elapsed().as_secs_f64());
                }
                lines.lock().unwrap().push(TimedLine {
                    at: started.elapsed(),
                    text,
                });
            }
            Ok(file)
        })
    };
    let mut stderr = child.stderr.take().expect("piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    let mut timed_out = false;
    let qemu_status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > opts.timeout {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = started.elapsed();
    let mut file = reader
        .join()
        .expect("serial reader panicked")
        .context("read the serial console")?;
    let qemu_stderr = stderr_reader.join().unwrap_or_default();
    if timed_out {
        writeln!(file, "# xtask: killed qemu after {:?}", opts.timeout)?;
    }
    if let Some(status) = qemu_status {
        writeln!(file, "# xtask: qemu exited ({status}) after {elapsed:.1?}")?;
    }
    for line in qemu_stderr.lines() {
        writeln!(file, "# qemu stderr: {line}")?;
    }
    let lines = std::mem::take(&mut *lines.lock().unwrap());
    Ok(Boot {
        lines,
        elapsed,
        timed_out,
        qemu_status,
        qemu_stderr,
    })
}

/// `line` without terminal control sequences (the firmware and the kernel
/// reset the terminal) and other control characters.
fn printable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            // CSI (ESC [ parameters final-byte) or ESC + one character
            // (ESC c: reset).
            '\u{1b}' => {
                if chars.next() == Some('[') {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_sequences_are_dropped() {
        assert_eq!(
            printable("\u{1b}c\u{1b}[?7l\u{1b}[2JMWVM-KERNEL 6.1.0\r\n"),
            "MWVM-KERNEL 6.1.0"
        );
        assert_eq!(printable("\u{1b}[0mSeaBIOS\tx"), "SeaBIOS\tx");
    }
}
