//! Volume control with real workloads, each in its own cgroup (the agent
//! reports only that cgroup): `first` sends one record per (process, file
//! identity, protection) and reports the repeats when the process exits;
//! `suspicious` sends only records with a reason; and the record volume of
//! a `python3 -c pass` and a `node -e 0` start under `all`, `first` and
//! `suspicious` (printed; docs/filtering-and-detection.md has the figures).

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::{Agent, Cgroup, agent_exporting_to, have, have_python_mmap, require_root, scaled};
use mapwatch_testkit::{OtlpReceiver, ReceivedLog};

struct Run {
    receiver: OtlpReceiver,
    agent: Agent,
    cgroup: Cgroup,
}

/// The agent, or `None` (SKIP printed) where a backend the VM matrix forces
/// does not exist on this kernel.
fn start(mode: &str, tag: &str) -> Option<Run> {
    require_root();
    let cgroup = Cgroup::create(&format!("/mw-volume-{tag}-{}.scope", std::process::id()));
    let receiver = OtlpReceiver::start().unwrap();
    let agent = agent_exporting_to(
        &receiver.grpc_endpoint(),
        &[
            ("MAPWATCH_FILTER__INCLUDE_CGROUPS", cgroup.relative.as_str()),
            ("MAPWATCH_VOLUME__DO_MMAP", mode),
            ("MAPWATCH_VOLUME__SECURITY_MMAP_FILE", mode),
            ("MAPWATCH_VOLUME__SECURITY_FILE_MPROTECT", mode),
        ],
    )?;
    Some(Run {
        receiver,
        agent,
        cgroup,
    })
}

impl Run {
    /// Runs `cmd` to its end in the cgroup; the records of its process once
    /// they stopped arriving (its repeats come after its exit).
    fn records_of(&self, cmd: &mut Command) -> Vec<ReceivedLog> {
        let child = self.cgroup.spawn(
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        );
        let pid = i64::from(child.id());
        let status = child.wait_with_output().unwrap().status;
        assert!(status.success(), "{cmd:?}: {status}");
        let of_pid = || -> Vec<ReceivedLog> {
            self.receiver
                .logs()
                .into_iter()
                .filter(|l| l.int_attr("process.pid") == Some(pid))
                .collect()
        };
        // Quiet for a second (the exit's repeats come last), at most 20 s.
        let mut last = usize::MAX;
        for round in 0..40 {
            std::thread::sleep(scaled(Duration::from_millis(500)));
            let n = of_pid().len();
            if n == last && (n > 0 || round >= 4) {
                break;
            }
            last = n;
        }
        of_pid()
    }
}

fn by_event(logs: &[ReceivedLog]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for l in logs {
        *counts.entry(l.event_name.clone()).or_default() += 1;
    }
    counts
}

/// A python3 program mapping `path` read-only `n` times (kept mapped).
fn map_n_times(path: &std::path::Path, n: usize) -> Command {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg("-c").arg(format!(
        "import mmap\nf = open({:?}, 'rb')\nm = [mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ) for _ in range({n})]\n",
        path.to_str().unwrap()
    ));
    cmd
}

#[test]
fn first_sends_one_record_per_key_and_the_repeat_count_at_exit() {
    if !have_python_mmap() {
        return;
    }
    let Some(run) = start("first", "first") else {
        return;
    };
    let dir = crate::common::private_dir();
    let path = dir.path().join("data");
    std::fs::write(&path, [7u8; 4096]).unwrap();
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap()).to_string();

    let logs = run.records_of(&mut map_n_times(&path, 20));
    assert!(!logs.is_empty(), "stderr:\n{}", run.agent.stderr());
    let of_file = |event: &str| -> Vec<&ReceivedLog> {
        logs.iter()
            .filter(|l| l.event_name == event && l.str_attr("file.inode") == Some(inode.as_str()))
            .collect()
    };
    let mapped = of_file("mapwatch.do_mmap");
    assert_eq!(
        mapped.len(),
        1,
        "one do_mmap record for 20 mappings: {mapped:#?}"
    );
    let repeated: Vec<_> = of_file("mapwatch.mapping_repeated")
        .into_iter()
        .filter(|l| l.str_attr("mapwatch.repeat.event") == Some("mapwatch.do_mmap"))
        .collect();
    assert_eq!(repeated.len(), 1, "{repeated:#?}");
    assert_eq!(repeated[0].int_attr("mapwatch.repeat.count"), Some(19));
    assert_eq!(repeated[0].int_attr("mmap.prot"), Some(1));
    assert_eq!(repeated[0].str_attr("file.path"), path.to_str());
}

#[test]
fn suspicious_sends_only_records_with_a_reason() {
    if !have_python_mmap() {
        return;
    }
    let Some(run) = start("suspicious", "suspicious") else {
        return;
    };
    let mut cmd = Command::new("/usr/bin/python3");
    // Benign mappings (the interpreter's own start), then one RWX page.
    cmd.args([
        "-c",
        "import mmap\nm = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n",
    ]);
    let logs = run.records_of(&mut cmd);
    assert!(!logs.is_empty(), "stderr:\n{}", run.agent.stderr());
    for l in &logs {
        assert!(
            l.attr("mapwatch.suspicious.reasons").is_some(),
            "a record without a reason under `suspicious`: {l:#?}"
        );
    }
    assert!(
        logs.iter().any(|l| l.event_name == "mapwatch.do_mmap"
            && l.severity_text == "WARN"
            && l.int_attr("mmap.prot") == Some(7)),
        "the RWX mapping was sent: {logs:#?}"
    );
}

#[test]
fn record_volume_of_runtime_starts_under_each_mode() {
    if !(have_python_mmap() && have("/usr/bin/node")) {
        return;
    }
    let mut table = Vec::new();
    for mode in ["all", "first", "suspicious"] {
        let Some(run) = start(mode, mode) else {
            return;
        };
        for (name, cmd) in [
            ("python3 -c pass", {
                let mut c = Command::new("/usr/bin/python3");
                c.args(["-c", "pass"]);
                c
            }),
            ("node -e 0", {
                let mut c = Command::new("/usr/bin/node");
                c.args(["-e", "0"]);
                c
            }),
        ] {
            let mut cmd = cmd;
            let logs = run.records_of(&mut cmd);
            table.push((mode, name, logs.len(), by_event(&logs)));
        }
    }
    for (mode, name, total, events) in &table {
        println!("{name:16} {mode:10} {total:5} {events:?}");
    }
    let total = |mode: &str, name: &str| {
        table
            .iter()
            .find(|(m, n, _, _)| *m == mode && *n == name)
            .unwrap()
            .2
    };
    for name in ["python3 -c pass", "node -e 0"] {
        assert!(total("first", name) < total("all", name), "{name}");
        assert!(total("suspicious", name) < total("first", name), "{name}");
    }
}
