//! In-kernel filters and the rate limit, as root against the real kernel:
//! what a filter excludes never reaches the collector, what it keeps does,
//! and the agent's totals account for both.

mod common;

use std::os::fd::AsRawFd;
use std::time::Duration;

use common::{Agent, agent_exporting_to, require_root};
use mapwatch_testkit::{OtlpReceiver, ReceivedLog};

const PAGE: usize = 4096;
const WAIT: Duration = Duration::from_secs(20);
/// After the records we expect have arrived, how long records we do not
/// expect would have had to arrive too (several export periods).
const SETTLE: Duration = Duration::from_millis(700);

/// One mapping as the workload saw it: which thread made it, and where.
/// (Addresses are reused after munmap, so the thread is part of the identity.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mapping {
    tid: i64,
    addr: u64,
}

fn gettid() -> i64 {
    // SAFETY: gettid has no preconditions.
    i64::from(unsafe { libc::gettid() })
}

/// Maps `count` anonymous pages with `prot` in a thread named `name`.
fn anon_in_thread(name: &str, prot: i32, count: usize) -> Vec<Mapping> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let tid = gettid();
            (0..count)
                .map(|_| {
                    // SAFETY: fresh anonymous page, unmapped at once.
                    unsafe {
                        let a = libc::mmap(
                            std::ptr::null_mut(),
                            PAGE,
                            prot,
                            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                            -1,
                            0,
                        );
                        assert_ne!(a, libc::MAP_FAILED);
                        libc::munmap(a, PAGE);
                        Mapping {
                            tid,
                            addr: a as u64,
                        }
                    }
                })
                .collect()
        })
        .unwrap()
        .join()
        .unwrap()
}

/// Maps a one-page file read+exec in a thread named `name`.
fn file_in_thread(name: &str, path: &std::path::Path) -> Mapping {
    std::fs::write(path, [0u8; PAGE]).unwrap();
    let path = path.to_owned();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            // SAFETY: read-only private mapping of our file, unmapped at once.
            unsafe {
                let a = libc::mmap(
                    std::ptr::null_mut(),
                    PAGE,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_PRIVATE,
                    file.as_raw_fd(),
                    0,
                );
                assert_ne!(a, libc::MAP_FAILED);
                libc::munmap(a, PAGE);
                Mapping {
                    tid: gettid(),
                    addr: a as u64,
                }
            }
        })
        .unwrap()
        .join()
        .unwrap()
}

/// `None` when the forced backend does not exist here (SKIP printed).
fn start(receiver: &OtlpReceiver, env: &[(&str, &str)]) -> Option<Agent> {
    agent_exporting_to(&receiver.grpc_endpoint(), env)
}

fn reported(logs: &[ReceivedLog], m: Mapping) -> bool {
    logs.iter().any(|l| {
        l.event_name == "mapwatch.do_mmap"
            && l.int_attr("mmap.addr") == Some(m.addr as i64)
            && l.int_attr("thread.id") == Some(m.tid)
    })
}

/// Waits for every `present` address, then checks no `absent` one came.
fn expect(receiver: &OtlpReceiver, agent: &Agent, present: &[Mapping], absent: &[Mapping]) {
    receiver
        .wait_for_logs(|logs| present.iter().all(|&m| reported(logs, m)), WAIT)
        .unwrap_or_else(|e| {
            panic!(
                "kept records did not arrive: {e}; stderr:\n{}",
                agent.stderr()
            )
        });
    std::thread::sleep(SETTLE);
    let logs = receiver.logs();
    for &m in absent {
        assert!(
            !reported(&logs, m),
            "the mapping {m:?} should have been filtered out"
        );
    }
}

/// The number just before `label` in the agent's exit summary (0 if absent).
fn count_before(summary: &str, label: &str) -> u64 {
    let Some(at) = summary.find(label) else {
        return 0;
    };
    let digits: String = summary[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .chars()
        .rev()
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

#[test]
fn include_comms_keeps_only_the_named_threads() {
    require_root();
    let receiver = OtlpReceiver::start().unwrap();
    let Some(agent) = start(
        &receiver,
        &[("MAPWATCH_FILTER__INCLUDE_COMMS", "mw-keep,mw-other")],
    ) else {
        return;
    };
    let kept = anon_in_thread("mw-keep", libc::PROT_READ, 3);
    let dropped = anon_in_thread("mw-drop", libc::PROT_READ, 3);
    expect(&receiver, &agent, &kept, &dropped);
    let (status, _, stderr) = agent.stop_with(libc::SIGTERM, Duration::from_secs(6));
    assert!(status.success(), "{stderr}");
    assert!(
        count_before(&stderr, " filtered out") >= 6,
        "filtered records are counted:\n{stderr}"
    );
}

#[test]
fn excluded_path_prefix_and_prot_mask() {
    require_root();
    let dir = crate::common::private_dir();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir(root.join("hidden")).unwrap();
    std::fs::create_dir(root.join("shown")).unwrap();
    let hidden_prefix = format!("{}/hidden/", root.display());
    let receiver = OtlpReceiver::start().unwrap();
    let Some(agent) = start(
        &receiver,
        &[
            (
                "MAPWATCH_FILTER__EXCLUDE_PATH_PREFIXES",
                hidden_prefix.as_str(),
            ),
            ("MAPWATCH_FILTER__PROT_ANY", "PROT_EXEC"),
            ("MAPWATCH_FILTER__INCLUDE_COMMS", "mw-prefix"),
        ],
    ) else {
        return;
    };
    let hidden = file_in_thread("mw-prefix", &root.join("hidden/a.so"));
    let shown = file_in_thread("mw-prefix", &root.join("shown/a.so"));
    let not_exec = anon_in_thread("mw-prefix", libc::PROT_READ | libc::PROT_WRITE, 2);
    let exec = anon_in_thread("mw-prefix", libc::PROT_READ | libc::PROT_EXEC, 1);
    let mut absent = vec![hidden];
    absent.extend(not_exec);
    expect(&receiver, &agent, &[shown, exec[0]], &absent);
}

/// An exclude prefix is the host's path. Inside a chroot the same text names
/// another file: the attacker's `/usr/lib/...` there is not the host's. A
/// record of a chroot's file is never matched by the prefix lists (and says
/// `mmap.file.path_in_chroot`); the host's file under the prefix stays out.
#[test]
fn an_excluded_prefix_does_not_hide_the_same_path_inside_a_chroot() {
    require_root();
    let dir = crate::common::private_dir();
    let root = dir.path().canonicalize().unwrap();
    let hidden = root.join("hidden");
    std::fs::create_dir(&hidden).unwrap();
    // The chroot holds the very same absolute path, and the workload.
    let jail = root.join("jail");
    let jailed_hidden = jail.join(hidden.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&jailed_hidden).unwrap();
    let workload = crate::common::evasions_binary(&jail);
    let hidden_prefix = format!("{}/", hidden.display());
    let receiver = OtlpReceiver::start().unwrap();
    let Some(agent) = start(
        &receiver,
        &[
            (
                "MAPWATCH_FILTER__EXCLUDE_PATH_PREFIXES",
                hidden_prefix.as_str(),
            ),
            ("MAPWATCH_FILTER__INCLUDE_COMMS", "mw-prefix,evasions"),
        ],
    ) else {
        return;
    };
    let host = file_in_thread("mw-prefix", &hidden.join("a.so"));

    let inside = hidden.join("b.so");
    let mut cmd = std::process::Command::new(format!(
        "/{}",
        workload.file_name().unwrap().to_str().unwrap()
    ));
    cmd.args(["map_file", inside.to_str().unwrap()]);
    let jail_c = std::ffi::CString::new(jail.to_str().unwrap()).unwrap();
    // SAFETY: chroot and chdir are async-signal-safe; the string outlives the spawn.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::chroot(jail_c.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    let planted = &crate::common::planted_code_ran(&stdout)[0];
    let (pid, addr) = (planted.pid, planted.addr as i64);
    let ours = |l: &ReceivedLog| {
        l.event_name == "mapwatch.do_mmap"
            && l.int_attr("process.pid") == Some(pid)
            && l.int_attr("mmap.addr") == Some(addr)
    };
    let logs = receiver
        .wait_for_logs(|logs| logs.iter().any(ours), WAIT)
        .unwrap_or_else(|e| {
            panic!(
                "the chroot's mapping was hidden by the host's prefix: {e}; stderr:\n{}",
                agent.stderr()
            )
        });
    let jailed = logs.into_iter().find(|l| ours(l)).unwrap();
    assert_eq!(jailed.str_attr("file.path"), inside.to_str(), "{jailed:#?}");
    assert_eq!(
        jailed.attr("mmap.file.path_in_chroot"),
        Some(&mapwatch_testkit::Value::Bool(true)),
        "{jailed:#?}"
    );
    std::thread::sleep(SETTLE);
    assert!(
        !reported(&receiver.logs(), host),
        "the host's file under the prefix is still excluded"
    );
}

#[test]
fn mappings_anonymous_drops_files() {
    require_root();
    let dir = crate::common::private_dir();
    let receiver = OtlpReceiver::start().unwrap();
    let Some(agent) = start(
        &receiver,
        &[
            ("MAPWATCH_FILTER__MAPPINGS", "anonymous"),
            ("MAPWATCH_FILTER__INCLUDE_COMMS", "mw-anon"),
        ],
    ) else {
        return;
    };
    let file = file_in_thread("mw-anon", &dir.path().join("f"));
    let anon = anon_in_thread("mw-anon", libc::PROT_READ, 2);
    expect(&receiver, &agent, &anon, &[file]);
}

#[test]
fn rate_limit_caps_a_storming_process_and_counts_the_rest() {
    require_root();
    let receiver = OtlpReceiver::start().unwrap();
    let Some(agent) = start(
        &receiver,
        &[
            ("MAPWATCH_FILTER__INCLUDE_COMMS", "mw-storm"),
            ("MAPWATCH_RATE_LIMIT__PER_PROCESS", "10"),
            ("MAPWATCH_RATE_LIMIT__BURST", "20"),
        ],
    ) else {
        return;
    };
    let started = std::time::Instant::now();
    let calls = 300;
    let _ = anon_in_thread("mw-storm", libc::PROT_READ, calls);
    let elapsed = started.elapsed().as_secs_f64();
    std::thread::sleep(SETTLE);
    let (status, _, stderr) = agent.stop_with(libc::SIGTERM, Duration::from_secs(6));
    assert!(status.success(), "{stderr}");
    let delivered = receiver
        .logs()
        .iter()
        .filter(|l| l.str_attr("thread.name") == Some("mw-storm"))
        .count() as u64;
    let limited = count_before(&stderr, " over the rate limit");
    assert!(limited > 0, "no rate-limit count in:\n{stderr}");
    // Every record that passed the filters was delivered or counted as over
    // the limit: two per call, plus the thread's own start-up mappings (its
    // malloc arena), which are few.
    assert_eq!(
        delivered,
        count_before(&stderr, " exported"),
        "delivered == exported\n{stderr}"
    );
    let total = delivered + limited;
    assert!(
        (2 * calls as u64..=2 * calls as u64 + 8).contains(&total),
        "delivered {delivered} + limited {limited} for {calls} calls\n{stderr}"
    );
    let allowed = 20.0 + 10.0 * (elapsed + 0.1) + 1.0;
    assert!(
        (delivered as f64) <= allowed,
        "{delivered} delivered in {elapsed:.2}s, limit allows {allowed}"
    );
    assert!(delivered >= 20, "the burst passes: {delivered}");
}

#[test]
fn sighup_reloads_the_filters_without_a_restart() {
    require_root();
    let dir = crate::common::private_dir();
    let config = dir.path().join("mapwatch.toml");
    std::fs::write(&config, "[filter]\ninclude_comms = [\"mw-hup-a\"]\n").unwrap();
    let receiver = OtlpReceiver::start().unwrap();
    let Some(agent) = start(&receiver, &[("MAPWATCH_CONFIG", config.to_str().unwrap())]) else {
        return;
    };

    let a = anon_in_thread("mw-hup-a", libc::PROT_READ, 1);
    let b_before = anon_in_thread("mw-hup-b", libc::PROT_READ, 1);
    expect(&receiver, &agent, &a, &b_before);

    std::fs::write(&config, "[filter]\ninclude_comms = [\"mw-hup-b\"]\n").unwrap();
    agent.signal(libc::SIGHUP);
    agent.wait_for_stderr("configuration reloaded", Duration::from_secs(10));
    let b_after = anon_in_thread("mw-hup-b", libc::PROT_READ, 1);
    let a_after = anon_in_thread("mw-hup-a", libc::PROT_READ, 1);
    expect(&receiver, &agent, &b_after, &a_after);
}

#[test]
fn a_bad_reload_keeps_the_running_filters() {
    require_root();
    let dir = crate::common::private_dir();
    let config = dir.path().join("mapwatch.toml");
    std::fs::write(&config, "[filter]\ninclude_comms = [\"mw-bad-a\"]\n").unwrap();
    let receiver = OtlpReceiver::start().unwrap();
    let Some(agent) = start(&receiver, &[("MAPWATCH_CONFIG", config.to_str().unwrap())]) else {
        return;
    };
    std::fs::write(
        &config,
        "[filter]\ninclude_comms = [\"a-name-longer-than-fifteen\"]\n",
    )
    .unwrap();
    agent.signal(libc::SIGHUP);
    agent.wait_for_stderr("configuration reload failed", Duration::from_secs(10));
    assert!(
        agent.stderr().contains("filter.include_comms"),
        "{}",
        agent.stderr()
    );
    let a = anon_in_thread("mw-bad-a", libc::PROT_READ, 1);
    let other = anon_in_thread("mw-bad-b", libc::PROT_READ, 1);
    expect(&receiver, &agent, &a, &other);
}
