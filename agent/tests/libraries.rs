//! The library audit with real files: `mapwatch.shared_object_loaded` for
//! the first executable mapping of a file in a process, its build id checked
//! against `readelf -n` and its SHA-256 against `sha256sum` (the ground
//! truth of the tools, not of our parser); a second mapping in the same
//! process gives none, a new process does.
//!
//! One test per process-wide fact: the tests of this binary share one
//! process, and "first mapping of libz in this process" must be ours.

mod common;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Agent, agent_exporting_to, have, require_root, scaled};
use mapwatch_testkit::{OtlpReceiver, ReceivedLog};

const PAGE: usize = 4096;
const LOADED: &str = "mapwatch.shared_object_loaded";

fn gettid() -> i64 {
    // SAFETY: gettid has no preconditions.
    i64::from(unsafe { libc::gettid() })
}

/// Maps one page of `fd` read+exec and keeps it mapped; returns the address.
fn map_exec(fd: i32) -> u64 {
    // SAFETY: a private read-only mapping of a valid fd, left mapped (a page
    // of a library file: harmless).
    let a = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE,
            fd,
            0,
        )
    };
    assert_ne!(a, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
    a as u64
}

/// The first of `candidates` that exists (`None`: SKIP printed).
fn library(candidates: &[&str]) -> Option<String> {
    let found = candidates.iter().find(|p| Path::new(p).exists());
    if found.is_none() {
        println!("SKIP: none of {candidates:?} here");
    }
    found.map(|p| p.to_string())
}

/// The ground-truth tools are here (else SKIP printed).
fn have_tools() -> bool {
    have("readelf") && have("sha256sum")
}

/// `readelf -n`'s build id of `path`.
fn readelf_build_id(path: &str) -> String {
    let out = Command::new("readelf")
        .arg("-n")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: ").map(str::to_owned))
        .unwrap_or_else(|| panic!("readelf -n {path} shows no build id"))
}

/// `sha256sum`'s hash of `path`.
fn sha256sum(path: &str) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// The agent, or `None` (SKIP printed) where a backend the VM matrix forces
/// does not exist on this kernel.
fn start() -> Option<(OtlpReceiver, Agent)> {
    require_root();
    let receiver = OtlpReceiver::start().unwrap();
    let agent = agent_exporting_to(
        &receiver.grpc_endpoint(),
        &[
            ("MAPWATCH_EVENTS__SECURITY_MMAP_FILE", "false"),
            ("MAPWATCH_LIBRARIES__SHARED_OBJECT_LOADED", "true"),
            ("MAPWATCH_LIBRARIES__SHA256", "true"),
        ],
    )?;
    Some((receiver, agent))
}

fn wait(
    receiver: &OtlpReceiver,
    agent: &Agent,
    what: &str,
    ours: impl Fn(&ReceivedLog) -> bool,
) -> ReceivedLog {
    let logs = receiver
        .wait_for_logs(
            |logs| logs.iter().any(&ours),
            scaled(Duration::from_secs(20)),
        )
        .unwrap_or_else(|e| panic!("no {what}: {e}; stderr:\n{}", agent.stderr()));
    logs.into_iter().find(|l| ours(l)).unwrap()
}

/// The do_mmap record of this thread's mapping at `addr`.
fn do_mmap(receiver: &OtlpReceiver, agent: &Agent, addr: u64) -> ReceivedLog {
    let tid = gettid();
    wait(receiver, agent, "do_mmap record", |l| {
        l.event_name == "mapwatch.do_mmap"
            && l.int_attr("mmap.addr") == Some(addr as i64)
            && l.int_attr("thread.id") == Some(tid)
    })
}

#[test]
fn first_executable_mapping_of_a_library_carries_its_build_id_and_hash_once() {
    let Some(path) = library(&[
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        "/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib64/libz.so.1",
        "/usr/lib/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/x86_64-linux-gnu/libc.so.6",
    ]) else {
        return;
    };
    if !have_tools() {
        return;
    }
    let Some((receiver, agent)) = start() else {
        return;
    };
    let file = std::fs::File::open(&path).unwrap();
    let tid = gettid();
    // The first mapping whose file the kernel resolved is the first load
    // (a mapping left unresolved by a busy mmap lock names no file: made again).
    let mut first = None;
    for _ in 0..5 {
        let addr = map_exec(file.as_raw_fd());
        let log = do_mmap(&receiver, &agent, addr);
        if log.str_attr("mapwatch.file.unresolved") != Some("mmap_lock_busy") {
            first = Some((addr, log));
            break;
        }
        println!("retrying: the mapping's file was not resolved (mmap_lock_busy)");
    }
    let (addr, mapped) = first.expect("the file stayed unresolved 5 times");
    let loaded = wait(&receiver, &agent, "shared_object_loaded", |l| {
        l.event_name == LOADED
            && l.int_attr("mmap.addr") == Some(addr as i64)
            && l.int_attr("thread.id") == Some(tid)
    });
    assert_eq!(loaded.severity_text, "INFO");
    assert_eq!(loaded.str_attr("file.inode"), mapped.str_attr("file.inode"));
    assert_eq!(
        loaded.str_attr("mapwatch.file.build_id.gnu"),
        Some(readelf_build_id(&path).as_str()),
        "{loaded:#?}"
    );
    assert_eq!(
        loaded.str_attr("mapwatch.file.hash.sha256"),
        Some(sha256sum(&path).as_str())
    );
    assert_eq!(
        loaded.int_attr("file.size"),
        Some(std::fs::metadata(&path).unwrap().len() as i64)
    );
    assert_eq!(
        loaded.attr("process.executable.build_id.gnu"),
        None,
        "a library is not the executable"
    );

    // The same file again in the same process: its do_mmap record, no second load.
    let again = map_exec(file.as_raw_fd());
    do_mmap(&receiver, &agent, again);
    std::thread::sleep(Duration::from_millis(500));
    let pid = i64::from(std::process::id());
    let loads: Vec<_> = receiver
        .logs()
        .into_iter()
        .filter(|l| {
            l.event_name == LOADED
                && l.int_attr("process.pid") == Some(pid)
                && l.str_attr("file.inode") == mapped.str_attr("file.inode")
        })
        .collect();
    assert_eq!(loads.len(), 1, "one load per file per process: {loads:#?}");
}

#[test]
fn a_new_process_reports_its_executable_and_libraries() {
    let sleep = "/usr/bin/sleep";
    let Some(libc) = library(&[
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib64/libc.so.6",
    ]) else {
        return;
    };
    if !have_tools() || !have(sleep) {
        return;
    }
    let Some((receiver, agent)) = start() else {
        return;
    };
    let mut children = Vec::new();
    for _ in 0..2 {
        children.push(Command::new(sleep).arg("30").spawn().unwrap());
    }
    for child in &children {
        let pid = i64::from(child.id());
        let exe = wait(&receiver, &agent, "load of the executable", |l| {
            l.event_name == LOADED
                && l.int_attr("process.pid") == Some(pid)
                && l.attr("process.executable.build_id.gnu").is_some()
        });
        assert_eq!(
            exe.str_attr("process.executable.build_id.gnu"),
            Some(readelf_build_id(sleep).as_str()),
            "{exe:#?}"
        );
        assert_eq!(
            exe.str_attr("mapwatch.file.hash.sha256"),
            Some(sha256sum(sleep).as_str())
        );
        let lib = wait(&receiver, &agent, "load of libc", |l| {
            l.event_name == LOADED
                && l.int_attr("process.pid") == Some(pid)
                && l.str_attr("file.name") == Path::new(&libc).file_name().unwrap().to_str()
        });
        assert_eq!(
            lib.str_attr("mapwatch.file.build_id.gnu"),
            Some(readelf_build_id(&libc).as_str())
        );
        assert_eq!(
            lib.str_attr("mapwatch.file.hash.sha256"),
            Some(sha256sum(&libc).as_str())
        );
        // Once per file in this process, though ld.so maps libc's code once
        // and mprotects parts of it.
        std::thread::sleep(Duration::from_millis(300));
        let libc_loads = receiver
            .logs()
            .into_iter()
            .filter(|l| {
                l.event_name == LOADED
                    && l.int_attr("process.pid") == Some(pid)
                    && l.str_attr("file.inode") == lib.str_attr("file.inode")
            })
            .count();
        assert_eq!(libc_loads, 1);
    }
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}
