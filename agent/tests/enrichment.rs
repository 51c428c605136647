//! Process attributes from /proc with real processes: the executable path,
//! the opt-in command line, and a container id and cgroup filter with a real
//! cgroup laid out the way Docker (systemd driver) names it.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Agent, Cgroup, agent_exporting_to, require_root};
use mapwatch_testkit::{OtlpReceiver, ReceivedLog};

const WAIT: Duration = Duration::from_secs(20);

/// `None` when the forced backend does not exist here (SKIP printed).
fn start(receiver: &OtlpReceiver, env: &[(&str, &str)]) -> Option<Agent> {
    agent_exporting_to(&receiver.grpc_endpoint(), env)
}

/// Runs `sleep 2` inside `cgroup` (it maps libc through ld.so on its way).
fn sleep_in(cgroup: &Cgroup) -> std::process::Child {
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("2");
    cgroup.spawn(&mut cmd)
}

fn from_pid(logs: &[ReceivedLog], pid: u32) -> Option<ReceivedLog> {
    logs.iter()
        .find(|l| {
            l.int_attr("process.pid") == Some(i64::from(pid))
                && l.attr("process.executable.path").is_some()
        })
        .cloned()
}

#[test]
fn container_id_and_cgroup_filter_from_a_real_cgroup() {
    require_root();
    let id = format!(
        "{:0>64x}",
        u64::from(std::process::id()) * 0x9e37_79b9 + 0xabc
    );
    let relative = format!("/mw-e2e-{}.slice/docker-{id}.scope", std::process::id());
    let cgroup = Cgroup::create(&relative);
    let receiver = OtlpReceiver::start().unwrap();
    let Some(agent) = start(
        &receiver,
        &[("MAPWATCH_FILTER__INCLUDE_CGROUPS", relative.as_str())],
    ) else {
        return;
    };

    let mut child = sleep_in(&cgroup);
    let pid = child.id();
    let logs = receiver
        .wait_for_logs(|logs| from_pid(logs, pid).is_some(), WAIT)
        .unwrap_or_else(|e| {
            panic!(
                "no record from the process in the cgroup: {e}; stderr:\n{}",
                agent.stderr()
            )
        });
    let log = from_pid(&logs, pid).unwrap();
    assert_eq!(log.str_attr("container.id"), Some(id.as_str()));
    assert_eq!(
        log.str_attr("process.linux.cgroup"),
        Some(cgroup.relative.as_str())
    );
    let sleep = std::fs::canonicalize(which("sleep")).unwrap();
    assert_eq!(log.str_attr("process.executable.path"), sleep.to_str());
    assert_eq!(
        log.attr("process.command_line"),
        None,
        "command lines are opt-in"
    );
    // The filter: nothing from any other process.
    let others: Vec<i64> = logs
        .iter()
        .filter_map(|l| l.int_attr("process.pid"))
        .filter(|&p| p != i64::from(pid))
        .collect();
    assert!(
        others.is_empty(),
        "records from processes outside the cgroup: {others:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(program))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| panic!("{program} not on PATH"))
}

#[test]
fn command_line_is_reported_when_asked() {
    require_root();
    let receiver = OtlpReceiver::start().unwrap();
    let Some(agent) = start(
        &receiver,
        &[
            ("MAPWATCH_PROCESS__COMMAND_LINE", "true"),
            ("MAPWATCH_FILTER__INCLUDE_COMMS", "sleep"),
        ],
    ) else {
        return;
    };
    let mut child = std::process::Command::new("sleep")
        .arg("1.5")
        .spawn()
        .unwrap();
    let pid = child.id();
    // The first records can be the ELF loader's, made inside execve before
    // the arguments are in place (kernel backends see them): the exec record
    // that follows makes the agent read the process again. So: some record
    // carries the command line, and none carries another one.
    let of_sleep = |l: &ReceivedLog| l.int_attr("process.pid") == Some(i64::from(pid));
    let logs = receiver
        .wait_for_logs(
            |logs| {
                logs.iter()
                    .any(|l| of_sleep(l) && l.str_attr("process.command_line") == Some("sleep 1.5"))
            },
            WAIT,
        )
        .unwrap_or_else(|e| {
            panic!(
                "no record from sleep carries its command line: {e}; stderr:\n{}",
                agent.stderr()
            )
        });
    for log in logs.iter().filter(|l| of_sleep(l)) {
        let line = log.str_attr("process.command_line");
        assert!(
            line.is_none() || line == Some("sleep 1.5"),
            "a record of sleep carries another command line: {line:?}"
        );
    }
    let _ = child.wait();
}
