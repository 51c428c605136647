//! Records the agent derives from kernel events rather than maps one to one:
//! `mapwatch.shared_object_loaded` (the first executable mapping of a file
//! in a process, with the file's build id), `mapwatch.mapping_repeated` (how
//! often a key repeated under `volume.* = "first"`), and the exceptions that
//! turn a WARN into an INFO. Pure, like the rest of the model: the agent
//! reads the files and keeps the state.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use mapwatch_kernel::abi::{Context, Event, File};
use opentelemetry::StringValue;
use opentelemetry::logs::{AnyValue, LogRecord, Severity};

use crate::attributes as attr;
use crate::names;
use crate::process::ProcessInfo;
use crate::record::{SCRATCH, WallClock, add_context, add_file, join_into, names_value};
use crate::suspicious::Reasons;

/// `EventName` of the first executable mapping of a file in a process.
pub const EVENT_SHARED_OBJECT_LOADED: &str = "mapwatch.shared_object_loaded";
/// `EventName` of the count of records held back by `volume.* = "first"`.
pub const EVENT_MAPPING_REPEATED: &str = "mapwatch.mapping_repeated";

/// What the agent learned by reading a mapped file (once per file identity).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectFacts {
    /// The GNU build id, lowercase hex.
    pub build_id: Option<Arc<str>>,
    /// Why there is no build id (`no_build_id`, `not_elf`, `identity_changed`,
    /// `unreadable`).
    pub build_id_missing: Option<&'static str>,
    /// SHA-256 of the contents, lowercase hex.
    pub sha256: Option<Arc<str>>,
    /// Why the file was not hashed, when hashing is on.
    pub sha256_skipped: Option<&'static str>,
    /// Size in bytes of the file that was verified and read.
    pub size: Option<u64>,
}

/// The executable mapping of a file that made a `shared_object_loaded`
/// record: `(context, file, address, protection)` of a do_mmap or an
/// mprotect that made a file mapping executable; `None` for anything else.
///
/// ```
/// use mapwatch_kernel::abi::{decode, encode, RawDoMmap};
/// let mut raw = RawDoMmap::default();
/// raw.hdr.backend = encode::BACKEND_SYSCALL_TRACEPOINT;
/// (raw.prot, raw.mmap_flags, raw.len) = (0x5, 0x22, 4096);
/// let bytes = encode::do_mmap(raw, b"");
/// // Anonymous: no file was loaded.
/// assert!(mapwatch_model::executable_file_mapping(&decode(&bytes).unwrap()).is_none());
/// ```
pub fn executable_file_mapping<'r, 'a>(
    event: &'r Event<'a>,
) -> Option<(&'r Context, &'r File<'a>, u64, u64)> {
    match event {
        Event::DoMmap(e) if e.error.is_none() && e.prot & names::PROT_EXEC != 0 => {
            e.file.as_ref().map(|f| (&e.context, f, e.addr, e.prot))
        }
        Event::SecurityFileMprotect(e)
            if e.result.is_none_or(|r| r == 0)
                && e.reqprot & names::PROT_EXEC != 0
                && e.vma
                    .is_some_and(|(_, _, prev)| prev & names::PROT_EXEC == 0) =>
        {
            let addr = e.range.map(|(a, _)| a).or(e.vma.map(|(s, _, _)| s))?;
            e.file.as_ref().map(|f| (&e.context, f, addr, e.reqprot))
        }
        _ => None,
    }
}

/// Fills a `mapwatch.shared_object_loaded` record for `event` (which
/// [`executable_file_mapping`] accepts; otherwise `record` is untouched).
/// `is_executable` says the file is the process's own executable: its build
/// id is then also `process.executable.build_id.gnu`.
pub fn fill_shared_object_loaded<R: LogRecord>(
    event: &Event<'_>,
    facts: &ObjectFacts,
    is_executable: bool,
    clock: &WallClock,
    observed: SystemTime,
    record: &mut R,
) {
    let Some((context, file, addr, prot)) = executable_file_mapping(event) else {
        return;
    };
    record.set_event_name(EVENT_SHARED_OBJECT_LOADED);
    record.set_timestamp(clock.wall_time(context.ktime_ns));
    record.set_observed_timestamp(observed);
    record.set_severity_number(Severity::Info);
    record.set_severity_text("INFO");
    let (comm, strings, body) = SCRATCH.with_borrow_mut(|s| {
        let comm = s.comm(context);
        let strings = s.file(file);
        let body = &mut s.text;
        body.clear();
        let what = if is_executable {
            "executable"
        } else {
            "object"
        };
        let _ = write!(body, "{comm} loaded {what} {} at {addr:#x}", strings.path);
        match (&facts.build_id, facts.build_id_missing) {
            (Some(id), _) => {
                let _ = write!(body, " (build id {id})");
            }
            (None, Some(why)) => {
                let _ = write!(body, " (no build id: {why})");
            }
            (None, None) => {}
        }
        (comm, strings, s.take_value())
    });
    record.set_body(body);
    add_context(record, context, comm);
    record.add_attribute(attr::MMAP_ADDR, addr as i64);
    record.add_attribute(attr::MMAP_PROT, prot as i64);
    record.add_attribute(
        attr::MMAP_PROT_NAMES,
        names_value(prot.count_ones(), |f| names::for_each_prot_name(prot, f)),
    );
    let string = |s: &Arc<str>| AnyValue::String(StringValue::from(s.clone()));
    if let Some(id) = &facts.build_id {
        record.add_attribute(attr::MAPWATCH_FILE_BUILD_ID_GNU, string(id));
        if is_executable {
            record.add_attribute(attr::PROCESS_EXECUTABLE_BUILD_ID_GNU, string(id));
        }
    }
    if let Some(why) = facts.build_id_missing {
        record.add_attribute(attr::MAPWATCH_FILE_BUILD_ID_MISSING, why);
    }
    if let Some(hash) = &facts.sha256 {
        record.add_attribute(attr::MAPWATCH_FILE_HASH_SHA256, string(hash));
    }
    if let Some(why) = facts.sha256_skipped {
        record.add_attribute(attr::MAPWATCH_FILE_HASH_SKIPPED, why);
    }
    if let Some(size) = facts.size {
        record.add_attribute(attr::FILE_SIZE, size as i64);
    }
    add_file(record, file, strings);
}

/// Records of one key held back by `volume.* = "first"` in one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeats {
    /// Process id.
    pub pid: u32,
    /// The thread name of the first record.
    pub comm: Arc<str>,
    /// EventName of the records.
    pub event: &'static str,
    /// `file.path`, `file.inode` and `mmap.file.dev` of the key's file;
    /// `None` for anonymous memory or a file not named.
    pub file: Option<(Arc<str>, Arc<str>, Arc<str>)>,
    /// Protection of the key.
    pub prot: u64,
    /// Records held back.
    pub count: u64,
    /// Kernel time (monotonic ns) of the last one.
    pub last_ktime_ns: u64,
}

/// Fills a `mapwatch.mapping_repeated` record from `repeats`.
pub fn fill_mapping_repeated<R: LogRecord>(
    repeats: &Repeats,
    clock: &WallClock,
    observed: SystemTime,
    record: &mut R,
) {
    record.set_event_name(EVENT_MAPPING_REPEATED);
    record.set_timestamp(clock.wall_time(repeats.last_ktime_ns));
    record.set_observed_timestamp(observed);
    record.set_severity_number(Severity::Info);
    record.set_severity_text("INFO");
    let mut body = String::with_capacity(128);
    let what = repeats
        .file
        .as_ref()
        .map_or("anonymous memory", |(path, _, _)| &**path);
    let _ = write!(body, "{} repeated {} ", repeats.comm, repeats.event);
    let _ = write!(body, "of {what} with ");
    join_into(&mut body, |f| names::for_each_prot_name(repeats.prot, f));
    let _ = write!(body, " {} more times", repeats.count);
    record.set_body(body.into());
    record.add_attribute(attr::PROCESS_PID, i64::from(repeats.pid));
    record.add_attribute(
        attr::PROCESS_EXECUTABLE_NAME,
        AnyValue::String(StringValue::from(repeats.comm.clone())),
    );
    record.add_attribute(attr::MAPWATCH_REPEAT_EVENT, repeats.event);
    record.add_attribute(attr::MAPWATCH_REPEAT_COUNT, repeats.count as i64);
    record.add_attribute(attr::MMAP_PROT, repeats.prot as i64);
    if let Some((path, inode, dev)) = &repeats.file {
        let s = |v: &Arc<str>| AnyValue::String(StringValue::from(v.clone()));
        record.add_attribute(attr::FILE_PATH, s(path));
        record.add_attribute(attr::FILE_INODE, s(inode));
        record.add_attribute(attr::MMAP_FILE_DEV, s(dev));
    }
}

/// The path, inode text and device text of `file`, as its records show them
/// (from the model's per-thread cache: no allocation for a file seen lately).
pub fn file_strings(file: &File<'_>) -> (Arc<str>, Arc<str>, Arc<str>) {
    SCRATCH.with_borrow_mut(|s| {
        let f = s.file(file);
        (f.path, f.inode_text, f.dev_text)
    })
}

/// The thread name of `context`, as its records show it.
pub fn comm_of(context: &Context) -> Arc<str> {
    SCRATCH.with_borrow_mut(|s| s.comm(context))
}

/// One exception to the suspicious reasons (`[[exceptions]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    /// Its name, written in `mapwatch.exceptions`.
    pub name: Arc<str>,
    /// The reasons it covers.
    pub reasons: Reasons,
    /// Executable paths (`process.executable.path`, exact).
    pub executable_paths: Vec<String>,
    /// Thread names (`comm`, exact).
    pub comms: Vec<String>,
    /// Cgroup v2 paths: the process's cgroup is one of them or below.
    pub cgroups: Vec<String>,
    /// Container ids or prefixes of them.
    pub container_ids: Vec<String>,
}

impl Exception {
    /// Whether this exception selects the process of `comm` and `info`.
    pub fn selects(&self, comm: &[u8], info: Option<&ProcessInfo>) -> bool {
        if self.comms.iter().any(|c| c.as_bytes() == comm) {
            return true;
        }
        let Some(info) = info else {
            return false;
        };
        if let Some(exe) = &info.executable_path
            && self.executable_paths.iter().any(|p| **p == **exe)
        {
            return true;
        }
        if let Some(cgroup) = &info.cgroup
            && self.cgroups.iter().any(|c| {
                **cgroup == **c
                    || (cgroup.starts_with(c.as_str())
                        && (c.ends_with('/') || cgroup.as_bytes().get(c.len()) == Some(&b'/')))
            })
        {
            return true;
        }
        info.container_id.as_ref().is_some_and(|id| {
            self.container_ids
                .iter()
                .any(|p| id.starts_with(p.as_str()))
        })
    }
}

/// Which exceptions matched a record's reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excused {
    /// Names of the matching exceptions, in configuration order.
    pub names: Vec<Arc<str>>,
    /// Whether they cover every reason (the record is then INFO).
    pub all: bool,
}

/// The configured exceptions, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exceptions(pub Vec<Exception>);

impl Exceptions {
    /// The exceptions matching `reasons` of the process of `comm` and
    /// `info`; `None` when none does (and always for no reason: nothing is
    /// allocated for the ordinary record).
    ///
    /// ```
    /// use mapwatch_model::{Exception, Exceptions, ProcessInfo, Reasons};
    /// let node = Exception {
    ///     name: "node-jit".into(),
    ///     reasons: Reasons::WRITE_EXECUTE,
    ///     executable_paths: vec!["/usr/bin/node".into()],
    ///     comms: vec![], cgroups: vec![], container_ids: vec![],
    /// };
    /// let exceptions = Exceptions(vec![node]);
    /// let info = ProcessInfo { executable_path: Some("/usr/bin/node".into()), ..Default::default() };
    /// let excused = exceptions.judge(Reasons::WRITE_EXECUTE, b"node", Some(&info)).unwrap();
    /// assert!(excused.all);
    /// // A renamed thread of another program is not node.
    /// let other = ProcessInfo { executable_path: Some("/tmp/evil".into()), ..Default::default() };
    /// assert!(exceptions.judge(Reasons::WRITE_EXECUTE, b"node", Some(&other)).is_none());
    /// ```
    pub fn judge(
        &self,
        reasons: Reasons,
        comm: &[u8],
        info: Option<&ProcessInfo>,
    ) -> Option<Excused> {
        if reasons.is_empty() || self.0.is_empty() {
            return None;
        }
        let mut covered = Reasons::empty();
        let mut names = Vec::new();
        for e in &self.0 {
            let overlap = reasons.without(reasons.without(e.reasons));
            if !overlap.is_empty() && e.selects(comm, info) {
                covered.insert(overlap);
                names.push(e.name.clone());
            }
        }
        (!names.is_empty()).then(|| Excused {
            all: reasons.without(covered).is_empty(),
            names,
        })
    }
}

/// Writes what `excused` says on `record`: `mapwatch.exceptions`, and INFO
/// when every reason is covered (the reasons stay).
pub fn apply_exceptions<R: LogRecord>(record: &mut R, excused: &Excused) {
    if excused.all {
        record.set_severity_number(Severity::Info);
        record.set_severity_text("INFO");
    }
    let list = excused
        .names
        .iter()
        .map(|n| AnyValue::String(StringValue::from(n.clone())))
        .collect();
    record.add_attribute(attr::MAPWATCH_EXCEPTIONS, AnyValue::ListAny(Box::new(list)));
}
