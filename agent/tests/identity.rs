//! File identity that an attacker cannot choose (issue 13, items 1 and 4).
//!
//! One thread maps a file from fd N over and over while a second thread
//! swaps what fd N refers to (`open` + `dup2` + `close`). Every mapping's
//! ground truth is what the workload itself reads from `/proc/self/maps` at
//! the returned address (and, as a cross-check, the first byte of the mapped
//! page: each file is filled with its own byte). Each record must name exactly
//! that file, or name none and say why (a reason the kernel side counted).
//!
//! A failed call (a closed fd) must carry the fd, no file facts, and no WARN.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Agent, agent_command, require_root};
use mapwatch_testkit::{OtlpReceiver, ReceivedLog};

const PAGE: usize = 4096;
const MAPPINGS_ON_THE_HOST: usize = 20_000;

/// The mappings of the race: 20 000 on the host; fewer where the machine is
/// `time_scale` times slower (qemu TCG in the VM matrix, where 20 000 took
/// 2.5 minutes a run and the VM step its whole budget). 5 000 swaps still
/// land inside the calls thousands of times.
fn mappings() -> usize {
    MAPPINGS_ON_THE_HOST / common::time_scale() as usize
}
/// Where the mappings are asked to go (a hint, not MAP_FIXED): every mapping
/// gets its own address, so a record is matched to its call by address.
const HINT_BASE: usize = 0x3000_0000_0000;

/// One agent at a time: the tests of this file share one address space, and
/// another test's mmap calls would contend for the mmap lock.
static SERIAL: Mutex<()> = Mutex::new(());

fn gettid() -> i64 {
    // SAFETY: gettid has no preconditions.
    i64::from(unsafe { libc::gettid() })
}

/// The agent reporting this process only, both events.
fn agent_for_this_process(receiver: &OtlpReceiver) -> Option<Agent> {
    let mut cmd = agent_command();
    cmd.env("MAPWATCH_OTLP__ENDPOINT", receiver.grpc_endpoint())
        .env("MAPWATCH_BATCH__SCHEDULED_DELAY", "100ms")
        // The counts compared below are of mmap's records.
        .env("MAPWATCH_EVENTS__SECURITY_FILE_MPROTECT", "false")
        .env(
            "MAPWATCH_FILTER__INCLUDE_PIDS",
            std::process::id().to_string(),
        );
    Agent::start_or_skip(cmd)
}

/// A file's identity as the records write it: `file.inode` and `mmap.file.dev`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Identity {
    inode: String,
    dev: String,
}

impl Identity {
    fn of_record(log: &ReceivedLog) -> Option<Identity> {
        Some(Identity {
            inode: log.str_attr("file.inode")?.to_owned(),
            dev: log.str_attr("mmap.file.dev").unwrap_or("?").to_owned(),
        })
    }
}

/// What `/proc/self/maps` says is mapped at `addr`: `dev inode` as
/// `major:minor` (decimal) and the inode number.
fn mapped_at(addr: u64, maps: &mut String) -> Option<Identity> {
    use std::io::Read as _;
    maps.clear();
    std::fs::File::open("/proc/self/maps")
        .and_then(|mut f| f.read_to_string(maps))
        .expect("read /proc/self/maps");
    let start = format!("{addr:x}-");
    let line = maps.lines().find(|l| l.starts_with(&start))?;
    let mut fields = line.split_whitespace();
    let dev = fields.nth(3)?;
    let inode = fields.next()?;
    let (major, minor) = dev.split_once(':')?;
    Some(Identity {
        inode: inode.to_owned(),
        dev: format!(
            "{}:{}",
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?
        ),
    })
}

/// Three one-page files, each filled with its own byte.
struct Files {
    _dir: tempfile::TempDir,
    paths: Vec<std::path::PathBuf>,
    identities: Vec<Identity>,
}

fn files() -> Files {
    let dir = crate::common::private_dir();
    let mut paths = Vec::new();
    let mut identities = Vec::new();
    for (i, name) in ["first", "second", "third"].iter().enumerate() {
        let path = dir.path().canonicalize().unwrap().join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&[b'a' + i as u8; PAGE]).unwrap();
        drop(f);
        let st = std::fs::metadata(&path).unwrap();
        identities.push(Identity {
            inode: st.ino().to_string(),
            dev: format!("{}:{}", libc::major(st.dev()), libc::minor(st.dev())),
        });
        paths.push(path);
    }
    Files {
        _dir: dir,
        paths,
        identities,
    }
}

/// The ground truth of one mapping.
struct Truth {
    addr: u64,
    identity: Identity,
}

/// Maps fd `fd` [`mappings`] times while `swapping` is set; returns the truth
/// of every mapping, in call order.
fn map_in_a_loop(fd: i32, files: &Files) -> Vec<Truth> {
    let mut maps = String::with_capacity(64 * 1024);
    let mut truths = Vec::with_capacity(mappings());
    for i in 0..mappings() {
        let hint = (HINT_BASE + i * 2 * PAGE) as *mut libc::c_void;
        // SAFETY: a private read-only mapping of one page, unmapped below.
        let addr = unsafe { libc::mmap(hint, PAGE, libc::PROT_READ, libc::MAP_PRIVATE, fd, 0) };
        assert_ne!(
            addr,
            libc::MAP_FAILED,
            "mmap {i}: {}",
            std::io::Error::last_os_error()
        );
        let identity = mapped_at(addr as u64, &mut maps)
            .unwrap_or_else(|| panic!("{addr:?} is not in /proc/self/maps"));
        // SAFETY: the page was just mapped readable.
        let byte = unsafe { *(addr as *const u8) };
        let by_content = &files.identities[usize::from(byte - b'a')];
        assert_eq!(
            &identity, by_content,
            "/proc/self/maps and the page's content disagree"
        );
        truths.push(Truth {
            addr: addr as u64,
            identity,
        });
        // SAFETY: unmapping what was mapped above.
        unsafe { libc::munmap(addr, PAGE) };
    }
    truths
}

/// Counts of one event's records against the ground truth.
#[derive(Debug, Default)]
struct Tally {
    right: usize,
    wrong: usize,
    /// Records naming no file, by `mapwatch.file.unresolved`.
    unresolved: BTreeMap<String, usize>,
    missing: usize,
    examples: Vec<String>,
}

impl Tally {
    fn check(&mut self, log: Option<&ReceivedLog>, truth: &Truth) {
        let Some(log) = log else {
            self.missing += 1;
            return;
        };
        match Identity::of_record(log) {
            Some(id) if id == truth.identity => self.right += 1,
            Some(id) => {
                self.wrong += 1;
                if self.examples.len() < 5 {
                    self.examples.push(format!(
                        "at {:#x}: mapped {:?}, record says {:?} ({:?})",
                        truth.addr,
                        truth.identity,
                        id,
                        log.str_attr("file.path")
                    ));
                }
            }
            None => {
                let reason = log
                    .str_attr("mapwatch.file.unresolved")
                    .unwrap_or("(no reason given)")
                    .to_owned();
                *self.unresolved.entry(reason).or_default() += 1;
            }
        }
    }

    fn unresolved_total(&self) -> usize {
        self.unresolved.values().sum()
    }
}

/// `mapwatch.records.file_unresolved`, all reasons, from the last export of the metric.
fn unresolved_metric(metrics: &[mapwatch_testkit::ReceivedMetric]) -> Option<i64> {
    use mapwatch_testkit::proto::tonic::metrics::v1::metric::Data;
    use mapwatch_testkit::proto::tonic::metrics::v1::number_data_point::Value;
    let metric = metrics
        .iter()
        .rev()
        .find(|m| m.name == "mapwatch.records.file_unresolved")?;
    let Some(Data::Sum(sum)) = &metric.raw.data else {
        return None;
    };
    Some(
        sum.data_points
            .iter()
            .map(|p| match p.value {
                Some(Value::AsInt(v)) => v,
                Some(Value::AsDouble(v)) => v as i64,
                None => 0,
            })
            .sum(),
    )
}

/// The kernel's counts of failed VMA lookups, from the agent's last line:
/// `..., N without file facts (mmap lock busy a, ...)`.
fn unresolved_counted(stderr: &str) -> u64 {
    let Some(line) = stderr
        .lines()
        .rev()
        .find(|l| l.contains("records produced in the kernel"))
    else {
        return 0;
    };
    line.find(" without file facts")
        .map(|end| {
            let start = line[..end].rfind(' ').map_or(0, |s| s + 1);
            line[start..end].parse().unwrap_or(0)
        })
        .unwrap_or(0)
}

#[test]
fn swapping_the_fd_during_mmap_cannot_change_the_reported_file() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let receiver = OtlpReceiver::start().expect("start OTLP receiver");
    let Some(agent) = agent_for_this_process(&receiver) else {
        return;
    };
    let files = files();

    // fd N starts on the first file; the swapper puts the second and the third there.
    let first = std::fs::File::open(&files.paths[0]).unwrap();
    let fd = first.as_raw_fd();
    let swapping = std::sync::Arc::new(AtomicBool::new(true));
    let swaps = std::sync::Arc::new(AtomicU64::new(0));
    let swapper = {
        let swapping = swapping.clone();
        let swaps = swaps.clone();
        let others: Vec<std::ffi::CString> = files.paths[1..]
            .iter()
            .map(|p| std::ffi::CString::new(p.to_str().unwrap()).unwrap())
            .collect();
        std::thread::spawn(move || {
            let mut i = 0usize;
            while swapping.load(Ordering::Relaxed) {
                // SAFETY: open/dup2/close on our own descriptors; dup2 replaces fd
                // atomically, so fd is always open for the mapping thread.
                unsafe {
                    let t = libc::open(others[i % 2].as_ptr(), libc::O_RDONLY);
                    assert!(t >= 0);
                    libc::dup2(t, fd);
                    libc::close(t);
                }
                i += 1;
            }
            swaps.store(i as u64, Ordering::Relaxed);
        })
    };
    let tid = gettid();
    let started = Instant::now();
    let truths = map_in_a_loop(fd, &files);
    swapping.store(false, Ordering::Relaxed);
    swapper.join().unwrap();
    let took = started.elapsed();
    drop(first);

    let by_truth: HashMap<&Identity, usize> = truths.iter().fold(HashMap::new(), |mut m, t| {
        *m.entry(&t.identity).or_default() += 1;
        m
    });
    println!(
        "{} mappings in {took:?} while fd {fd} was swapped {} times; mapped: {:?}",
        truths.len(),
        swaps.load(Ordering::Relaxed),
        by_truth.values().collect::<Vec<_>>()
    );

    let ours = |l: &ReceivedLog, event: &str| {
        l.event_name == event && l.int_attr("thread.id") == Some(tid)
    };
    let count = |logs: &[ReceivedLog], event: &str| logs.iter().filter(|l| ours(l, event)).count();
    let _ = receiver.wait_for_logs(
        |logs| {
            count(logs, "mapwatch.do_mmap") >= mappings()
                && count(logs, "mapwatch.security_mmap_file") >= mappings()
        },
        Duration::from_secs(90),
    );
    let (status, _, stderr) = agent.stop_with(libc::SIGTERM, Duration::from_secs(10));
    assert!(status.success(), "agent failed; stderr:\n{stderr}");
    let logs = receiver.logs();

    // do_mmap: matched by address.
    let do_mmap: HashMap<i64, &ReceivedLog> = logs
        .iter()
        .filter(|l| ours(l, "mapwatch.do_mmap"))
        .filter_map(|l| Some((l.int_attr("mmap.addr")?, l)))
        .collect();
    let mut mapped = Tally::default();
    for truth in &truths {
        mapped.check(do_mmap.get(&(truth.addr as i64)).copied(), truth);
    }

    // security_mmap_file carries no address: matched by order (both records
    // of a call are made at its return, one call after the other).
    let mut checks: Vec<&ReceivedLog> = logs
        .iter()
        .filter(|l| ours(l, "mapwatch.security_mmap_file"))
        // The thread's own allocations may map anonymous memory too.
        .filter(|l| l.int_attr("mmap.flags") == Some(i64::from(libc::MAP_PRIVATE)))
        .collect();
    checks.sort_by_key(|l| l.time_unix_nano);
    let mut checked = Tally::default();
    if checks.len() == truths.len() {
        for (log, truth) in checks.iter().zip(&truths) {
            checked.check(Some(log), truth);
        }
    } else {
        checked.missing = truths.len().abs_diff(checks.len());
    }

    let counted = unresolved_counted(&stderr);
    // The agent exports its metrics once more at shutdown.
    let metric = unresolved_metric(&receiver.metrics());
    println!("do_mmap: {mapped:?}");
    println!("security_mmap_file: {checked:?}");
    println!(
        "kernel-counted failed VMA lookups: {counted} (metric mapwatch.records.file_unresolved: {metric:?})"
    );
    println!(
        "agent: {}",
        stderr
            .lines()
            .rev()
            .find(|l| l.contains("records produced"))
            .unwrap_or("")
    );

    assert_eq!(
        mapped.missing, 0,
        "do_mmap records missing; stderr:\n{stderr}"
    );
    assert_eq!(
        checked.missing,
        0,
        "security_mmap_file records missing ({} of {}); stderr:\n{stderr}",
        checks.len(),
        truths.len()
    );
    assert_eq!(
        mapped.wrong, 0,
        "do_mmap named the wrong file: {:?}",
        mapped.examples
    );
    assert_eq!(
        checked.wrong, 0,
        "security_mmap_file named the wrong file: {:?}",
        checked.examples
    );
    assert!(
        !mapped.unresolved.contains_key("(no reason given)")
            && !checked.unresolved.contains_key("(no reason given)"),
        "a record without a file must say why"
    );
    assert!(
        !mapped.unresolved.contains_key("call_failed"),
        "every call succeeded"
    );
    assert_eq!(
        (mapped.unresolved_total() + checked.unresolved_total()) as u64,
        counted,
        "every record without its file is counted by the kernel side"
    );
    assert_eq!(
        metric,
        Some(counted as i64),
        "the count is exported as mapwatch.records.file_unresolved"
    );
    // Most records name their file: the lookup works. The others come from
    // this process's other threads (the OTLP receiver's allocations) holding
    // the mmap lock for writing longer than the kernel side waits for it.
    assert!(
        mapped.right >= mappings() * 3 / 4 && checked.right >= mappings() * 3 / 4,
        "too few records name their file"
    );
}

/// Maps `len` bytes of `fd` with `prot`; the call must fail.
fn failing_mmap(len: usize, prot: i32, flags: i32, fd: i32) -> i32 {
    // SAFETY: the call fails (asserted); nothing is mapped.
    let addr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
    assert_eq!(addr, libc::MAP_FAILED);
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

#[test]
fn failed_call_reports_the_fd_no_file_and_no_false_alarm() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let receiver = OtlpReceiver::start().expect("start OTLP receiver");
    let Some(agent) = agent_for_this_process(&receiver) else {
        return;
    };
    let do_mmap_backend = agent.backend("do_mmap");
    let security_backend = agent.backend("security_mmap_file");
    let tid = gettid();

    // A descriptor that was open a moment ago, then closed.
    let dir = crate::common::private_dir();
    let path = dir.path().join("gone");
    std::fs::write(&path, [0u8; PAGE]).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    // A high number that nothing else in this process takes meanwhile (new
    // descriptors get the lowest free number).
    let closed = 977;
    // SAFETY: dup2/close of descriptors this test owns.
    unsafe {
        assert_eq!(libc::dup2(file.as_raw_fd(), closed), closed);
        assert_eq!(libc::close(closed), 0);
    }
    drop(file);
    let exec_len = 11 * PAGE;
    let wx_len = 13 * PAGE;
    assert_eq!(
        failing_mmap(
            exec_len,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE,
            closed
        ),
        libc::EBADF
    );
    // What was asked still counts: write+execute is a reason even when the call fails.
    assert_eq!(
        failing_mmap(
            wx_len,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE,
            closed
        ),
        libc::EBADF
    );

    if do_mmap_backend != "syscall_tracepoint" && security_backend != "syscall_tracepoint" {
        println!(
            "SKIP: only the syscall tracepoint backend sees calls rejected before do_mmap (EBADF); \
             here: do_mmap via {do_mmap_backend}, security_mmap_file via {security_backend} \
             (a documented limit of the kernel backends)"
        );
        return;
    }
    let is_call = |l: &ReceivedLog, prot: i32| {
        l.int_attr("thread.id") == Some(tid)
            && l.int_attr("mmap.prot") == Some(i64::from(prot))
            && l.int_attr("mmap.fd") == Some(i64::from(closed))
    };
    let mut wanted = Vec::new();
    for (event, backend) in [
        ("mapwatch.do_mmap", &do_mmap_backend),
        ("mapwatch.security_mmap_file", &security_backend),
    ] {
        if backend == "syscall_tracepoint" {
            wanted.push(event);
        }
    }
    let rx = libc::PROT_READ | libc::PROT_EXEC;
    let rwx = rx | libc::PROT_WRITE;
    let logs = receiver
        .wait_for_logs(
            |logs| {
                wanted.iter().all(|event| {
                    [rx, rwx].iter().all(|&prot| {
                        logs.iter()
                            .any(|l| l.event_name == *event && is_call(l, prot))
                    })
                })
            },
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| {
            panic!(
                "no records of the failed calls with mmap.fd {closed}: {e}; stderr:\n{}",
                agent.stderr()
            )
        });
    for event in wanted {
        for prot in [rx, rwx] {
            let log = logs
                .iter()
                .find(|l| l.event_name == event && is_call(l, prot))
                .unwrap();
            println!(
                "{event} prot {prot}: {} {:?} {:?}",
                log.severity_text,
                log.body,
                log.attr("mapwatch.suspicious.reasons")
            );
            for key in log.attributes.keys() {
                assert!(
                    !key.starts_with("file.") && !key.starts_with("mmap.file."),
                    "{event} of a closed fd carries {key}: {log:#?}"
                );
            }
            assert_eq!(
                log.str_attr("mapwatch.file.unresolved"),
                Some("call_failed"),
                "{event}: why no file is named"
            );
            if event == "mapwatch.do_mmap" {
                assert_eq!(log.str_attr("error.type"), Some("EBADF"));
            }
            let reasons: Vec<&str> = log
                .attr("mapwatch.suspicious.reasons")
                .and_then(|v| v.as_str_array())
                .unwrap_or_default();
            if prot == rx {
                assert_eq!(
                    log.severity_text, "INFO",
                    "{event}: a false alarm: {reasons:?}"
                );
                assert!(reasons.is_empty());
            } else {
                assert_eq!(log.severity_text, "WARN", "{event}: W+X was asked");
                assert_eq!(
                    reasons,
                    ["write_execute"],
                    "{event}: nothing said it is anonymous"
                );
            }
        }
    }
}
