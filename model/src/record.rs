//! One kernel event -> one OpenTelemetry log record.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mapwatch_kernel::abi::{
    Action, Backend, COMM_LEN, Context, DoMmap, Enforcement, Event, File, FileSource,
    SecurityFileMprotect, SecurityMmapFile,
};
use opentelemetry::logs::{AnyValue, LogRecord, Severity};
use opentelemetry::{Key, StringValue};

use crate::attributes as attr;
use crate::names::{self, MAP_ANONYMOUS, PROT_EXEC, PROT_WRITE};
use crate::suspicious::Reasons;

/// `EventName` of a do_mmap record.
pub const EVENT_DO_MMAP: &str = "mapwatch.do_mmap";
/// `EventName` of a security_mmap_file record.
pub const EVENT_SECURITY_MMAP_FILE: &str = "mapwatch.security_mmap_file";
/// `EventName` of a security_file_mprotect record.
pub const EVENT_SECURITY_FILE_MPROTECT: &str = "mapwatch.security_file_mprotect";

/// Converts the kernel's CLOCK_MONOTONIC timestamps to wall-clock time.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use mapwatch_model::WallClock;
/// // Monotonic 0 was wall-clock 1000 s after the epoch.
/// let clock = WallClock::from_offset_ns(1_000_000_000_000);
/// assert_eq!(clock.wall_time(5), UNIX_EPOCH + Duration::from_nanos(1_000_000_000_005));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    offset_ns: i128,
}

impl WallClock {
    /// A clock where monotonic time `0` is `offset_ns` after the Unix epoch
    /// (CLOCK_REALTIME minus CLOCK_MONOTONIC, read together).
    pub fn from_offset_ns(offset_ns: i128) -> WallClock {
        WallClock { offset_ns }
    }

    /// The wall-clock time of monotonic time `ktime_ns`.
    pub fn wall_time(&self, ktime_ns: u64) -> SystemTime {
        let ns = (i128::from(ktime_ns) + self.offset_ns).clamp(0, i128::from(u64::MAX)) as u64;
        UNIX_EPOCH + Duration::from_nanos(ns)
    }
}

/// Fills `record` from `event`: event name, timestamps, severity, body and
/// every attribute of [`crate::attributes`] that applies. A process exit
/// is no record and leaves `record` untouched.
///
/// ```
/// use std::time::SystemTime;
/// use mapwatch_kernel::abi::{decode, encode, RawDoMmap};
/// use mapwatch_model::{fill_log_record, WallClock};
/// use opentelemetry::logs::{Logger, LoggerProvider, Severity};
/// use opentelemetry_sdk::logs::{InMemoryLogExporter, SdkLoggerProvider};
///
/// // The bytes the kernel sends for an anonymous RWX mapping.
/// let mut raw = RawDoMmap::default();
/// raw.hdr.backend = encode::BACKEND_SYSCALL_TRACEPOINT;
/// (raw.prot, raw.mmap_flags, raw.len) = (0x7, 0x22, 4096);
/// let bytes = encode::do_mmap(raw, b"");
///
/// let exporter = InMemoryLogExporter::default();
/// let provider = SdkLoggerProvider::builder().with_simple_exporter(exporter.clone()).build();
/// let logger = provider.logger("mapwatch");
/// let mut record = logger.create_log_record();
/// fill_log_record(&decode(&bytes).unwrap(), &WallClock::from_offset_ns(0), SystemTime::now(), &mut record);
/// logger.emit(record);
///
/// let logs = exporter.get_emitted_logs().unwrap();
/// assert_eq!(logs[0].record.event_name(), Some("mapwatch.do_mmap"));
/// assert_eq!(logs[0].record.severity_number(), Some(Severity::Warn));
/// ```
pub fn fill_log_record<R: LogRecord>(
    event: &Event<'_>,
    clock: &WallClock,
    observed: SystemTime,
    record: &mut R,
) {
    record.set_observed_timestamp(observed);
    match event {
        Event::DoMmap(e) => fill_do_mmap(e, clock, record),
        Event::SecurityMmapFile(e) => fill_security_mmap_file(e, clock, record),
        Event::SecurityFileMprotect(e) => fill_security_file_mprotect(e, clock, record),
        // Not a record: callers handle exits (cache eviction) and never emit one.
        Event::ProcessExit(_) | Event::ProcessExec(_) => {}
    }
}

/// What a call asked to map, as far as its record knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'r, 'a> {
    /// Anonymous memory: `MAP_ANONYMOUS`, or no file at all (a kernel backend
    /// whose hooked function had no file argument).
    Anonymous,
    /// This file.
    File(&'r File<'a>),
    /// A file the record cannot name: the call failed before anything was
    /// mapped, or the kernel side could not read the mapping (the record
    /// says why). Never "anonymous": the caller asked for a file.
    UnknownFile,
}

impl<'r, 'a> Target<'r, 'a> {
    /// The target of a call with these `MAP_*` flags, file and file source.
    ///
    /// ```
    /// use mapwatch_kernel::abi::FileSource;
    /// use mapwatch_model::Target;
    /// // A failed mmap of a closed fd: a file was asked for, none can be named.
    /// assert_eq!(Target::of(0x2, None, FileSource::CallFailed), Target::UnknownFile);
    /// assert_eq!(Target::of(0x22, None, FileSource::None), Target::Anonymous);
    /// ```
    pub fn of(flags: u64, file: Option<&'r File<'a>>, source: FileSource) -> Target<'r, 'a> {
        if flags & MAP_ANONYMOUS != 0 {
            return Target::Anonymous;
        }
        match file {
            Some(file) => Target::File(file),
            None if source.unresolved_reason().is_some() => Target::UnknownFile,
            None => Target::Anonymous,
        }
    }
}

/// Why a call asking for these protections, of this target,
/// deserves attention. Only what was asked and what the record knows count:
/// a file that cannot be named gives no file reason and is not "anonymous";
/// so a failed call (nothing was mapped) can still be `write_execute`, or
/// `execute_anonymous` when anonymous memory was asked for, or have the
/// reasons of its file when the backend held it (kernel backends).
///
/// ```
/// use mapwatch_model::{classify, Reasons, Target};
/// // A read-only data file: nothing to see.
/// assert!(classify(0x1, Target::Anonymous).is_empty());
/// // PROT_READ|PROT_EXEC of a file that cannot be named: nothing either.
/// assert!(classify(0x5, Target::UnknownFile).is_empty());
/// ```
pub fn classify(prot: u64, target: Target<'_, '_>) -> Reasons {
    let mut reasons = Reasons::empty();
    if prot & (PROT_WRITE | PROT_EXEC) == PROT_WRITE | PROT_EXEC {
        reasons.insert(Reasons::WRITE_EXECUTE);
    }
    if prot & PROT_EXEC == 0 {
        return reasons;
    }
    let file = match target {
        Target::Anonymous => {
            reasons.insert(Reasons::EXECUTE_ANONYMOUS);
            return reasons;
        }
        Target::UnknownFile => return reasons,
        Target::File(file) => file,
    };
    if file.anon_memory {
        // /dev/zero or the kernel's object of shared anonymous memory: no code file.
        reasons.insert(Reasons::EXECUTE_ANONYMOUS);
        return reasons;
    }
    if file.path.starts_with(b"/memfd:") && file.deleted {
        reasons.insert(Reasons::EXECUTE_MEMFD);
    } else if file.deleted {
        reasons.insert(Reasons::EXECUTE_DELETED_FILE);
    }
    if file.dir_world_writable {
        reasons.insert(Reasons::EXECUTE_FROM_WORLD_WRITABLE_DIR);
    }
    if file.open_for_write {
        reasons.insert(Reasons::EXECUTE_FILE_OPEN_FOR_WRITE);
    }
    reasons
}

/// Why a change of protection deserves attention (the W->X rules, after
/// Tracee's `mem_prot_alert`):
/// - `write_execute`: writable and executable asked for at once;
/// - `write_then_execute`: executable asked for (without write) on memory that
///   is writable now, or was writable earlier (`was_writable`: the kernel's
///   W->X history, for RW -> R -> RX);
/// - `execute_then_write`: writable and executable asked for on memory that is
///   executable and not writable now;
/// - when executable is added (the VMA was not executable): the reasons of
///   [`classify`] for its target (`execute_anonymous` for anonymous memory,
///   the file reasons of its file).
///
/// - `write_history_incomplete`: executable asked for (without write) where
///   the history cannot tell whether the memory was writable (fail closed);
/// - `execute_unverified`: a successful call made memory executable whose
///   previous protection, or whose file, could not be read (fail closed).
///
/// `reqprot` is the protection the kernel applies (READ_IMPLIES_EXEC
/// included). A failed call (`result` not 0) changed nothing: only
/// `write_execute`, which holds for what was asked, stays.
///
/// ```
/// use mapwatch_model::{classify_mprotect, History, Reasons, Target};
/// let clean = History::default();
/// // RW anonymous memory made RX: the injection path.
/// let r = classify_mprotect(0x5, Some(0x3), clean, Target::Anonymous, true);
/// assert_eq!(r.names().collect::<Vec<_>>(), ["execute_anonymous", "write_then_execute"]);
/// // The loader's RELRO: RW made read-only.
/// assert!(classify_mprotect(0x1, Some(0x3), clean, Target::Anonymous, true).is_empty());
/// // The same RW -> RX, refused: nothing happened.
/// assert!(classify_mprotect(0x5, Some(0x3), clean, Target::Anonymous, false).is_empty());
/// // RX over memory whose previous protection could not be read: fail closed.
/// let r = classify_mprotect(0x5, None, clean, Target::UnknownFile, true);
/// assert_eq!(r.names().collect::<Vec<_>>(), ["execute_unverified"]);
/// ```
pub fn classify_mprotect(
    reqprot: u64,
    previous: Option<u64>,
    history: History,
    target: Target<'_, '_>,
    succeeded: bool,
) -> Reasons {
    let wx = PROT_WRITE | PROT_EXEC;
    let mut reasons = Reasons::empty();
    if reqprot & wx == wx {
        reasons.insert(Reasons::WRITE_EXECUTE);
    }
    if !succeeded || reqprot & PROT_EXEC == 0 {
        return reasons;
    }
    let prev = previous.unwrap_or(0);
    if reqprot & PROT_WRITE == 0 && (prev & PROT_WRITE != 0 || history.was_writable) {
        reasons.insert(Reasons::WRITE_THEN_EXECUTE);
    }
    // Made executable (not already so) where the history cannot tell.
    if reqprot & PROT_WRITE == 0 && prev & PROT_EXEC == 0 && history.incomplete {
        reasons.insert(Reasons::WRITE_HISTORY_INCOMPLETE);
    }
    if reqprot & wx == wx && prev & wx == PROT_EXEC {
        reasons.insert(Reasons::EXECUTE_THEN_WRITE);
    }
    match previous {
        // Whether it was executable before is unknown: nothing can clear it.
        None => reasons.insert(Reasons::EXECUTE_UNVERIFIED),
        Some(prev) if prev & PROT_EXEC == 0 => {
            if target == Target::UnknownFile || history.span_unchecked {
                reasons.insert(Reasons::EXECUTE_UNVERIFIED);
            }
            if history.span_anonymous {
                reasons.insert(Reasons::EXECUTE_ANONYMOUS);
            }
            reasons.insert(classify(PROT_EXEC, target));
        }
        Some(_) => {}
    }
    reasons
}

/// What the kernel knew of an mprotect's range beyond its first VMA: the
/// W->X history, and the other VMAs a range over several covers.
///
/// ```
/// let h = mapwatch_model::History { was_writable: true, ..Default::default() };
/// assert!(h.was_writable && !h.span_anonymous);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct History {
    /// The range was writable earlier (RW -> R -> RX).
    pub was_writable: bool,
    /// The history cannot tell (merged ranges, or no room for the address space).
    pub incomplete: bool,
    /// A VMA after the first is anonymous memory.
    pub span_anonymous: bool,
    /// A VMA after the first could not be judged (another file, too many).
    pub span_unchecked: bool,
}

/// `execute_unverified` for a mapping made executable whose file could not
/// be read (`UnknownFile`, and not because the call failed: then nothing
/// was mapped).
fn unverified(prot: u64, target: Target<'_, '_>, source: FileSource) -> Reasons {
    if prot & PROT_EXEC != 0 && target == Target::UnknownFile && source != FileSource::CallFailed {
        Reasons::EXECUTE_UNVERIFIED
    } else {
        Reasons::empty()
    }
}

/// Per-thread state of the mapping: a reused formatting buffer and small
/// caches of the strings that repeat from record to record. Strings become
/// `Arc<str>` attribute values: one allocation each, and copying a record (the
/// SDK's batch processor does, once per record) only bumps their counts.
pub(crate) struct Scratch {
    /// Where bodies and formatted values are written before they become values.
    pub(crate) text: String,
    /// Thread names by their raw `comm` bytes, direct-mapped.
    comms: Vec<Option<([u8; COMM_LEN], Arc<str>)>>,
    /// Strings derived from a file, direct-mapped by device and inode.
    files: Vec<Option<FileStrings>>,
}

const COMM_SLOTS: usize = 64;
const FILE_SLOTS: usize = 256;

thread_local! {
    pub(crate) static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        text: String::with_capacity(512),
        comms: vec![None; COMM_SLOTS],
        files: vec![None; FILE_SLOTS],
    });
}

/// The attribute values that depend only on a file's identity and path.
#[derive(Clone)]
pub(crate) struct FileStrings {
    dev: u32,
    inode: u64,
    ctime_ns: u64,
    mode: u16,
    pub(crate) path: Arc<str>,
    name: Option<Arc<str>>,
    directory: Option<Arc<str>>,
    pub(crate) inode_text: Arc<str>,
    changed: Arc<str>,
    pub(crate) dev_text: Arc<str>,
    mode_text: Arc<str>,
}

impl FileStrings {
    fn matches(&self, file: &File<'_>) -> bool {
        self.inode == file.inode
            && self.dev == file.dev
            && self.ctime_ns == file.ctime_ns
            && self.mode == file.mode
            && self.path.as_bytes() == file.path
    }

    fn new(file: &File<'_>, text: &mut String) -> FileStrings {
        let path = String::from_utf8_lossy(file.path);
        let (directory, name) = match path.rfind('/') {
            Some(0) => ("/", &path[1..]),
            Some(i) => (&path[..i], &path[i + 1..]),
            None => ("", &path[..]),
        };
        let mut format = |args: std::fmt::Arguments<'_>| -> Arc<str> {
            text.clear();
            let _ = text.write_fmt(args);
            Arc::from(text.as_str())
        };
        FileStrings {
            dev: file.dev,
            inode: file.inode,
            ctime_ns: file.ctime_ns,
            mode: file.mode,
            name: (!name.is_empty()).then(|| Arc::from(name)),
            directory: (!directory.is_empty()).then(|| Arc::from(directory)),
            inode_text: format(format_args!("{}", file.inode)),
            changed: format(format_args!(
                "{}",
                humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(file.ctime_ns))
            )),
            dev_text: format(format_args!("{}:{}", file.dev_major(), file.dev_minor())),
            mode_text: format(format_args!("{:07o}", file.mode)),
            path: Arc::from(&*path),
        }
    }
}

impl Scratch {
    pub(crate) fn comm(&mut self, context: &Context) -> Arc<str> {
        let raw = context.comm;
        let key = u128::from_ne_bytes(raw);
        let mixed = (key as u64 ^ (key >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let slot = (mixed >> 58) as usize % COMM_SLOTS;
        match &self.comms[slot] {
            Some((k, name)) if *k == raw => name.clone(),
            _ => {
                let name: Arc<str> = Arc::from(&*String::from_utf8_lossy(context.comm()));
                self.comms[slot] = Some((raw, name.clone()));
                name
            }
        }
    }

    pub(crate) fn file(&mut self, file: &File<'_>) -> FileStrings {
        let mixed = (file.inode ^ (u64::from(file.dev) << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let slot = (mixed >> 56) as usize % FILE_SLOTS;
        match &self.files[slot] {
            Some(cached) if cached.matches(file) => cached.clone(),
            _ => {
                let strings = FileStrings::new(file, &mut self.text);
                self.files[slot] = Some(strings.clone());
                strings
            }
        }
    }

    /// The text written so far, as a value; clears the buffer.
    pub(crate) fn take_value(&mut self) -> AnyValue {
        let value = text_value(&self.text);
        self.text.clear();
        value
    }
}

fn text_value(s: &str) -> AnyValue {
    AnyValue::String(StringValue::from(Arc::<str>::from(s)))
}

fn fill_do_mmap<R: LogRecord>(e: &DoMmap<'_>, clock: &WallClock, record: &mut R) {
    record.set_event_name(EVENT_DO_MMAP);
    record.set_timestamp(clock.wall_time(e.context.ktime_ns));
    let target = Target::of(e.flags, e.file.as_ref(), e.file_source);
    let reasons = do_mmap_reasons(e);
    set_severity(record, reasons, None);

    let (comm, file, body) = SCRATCH.with_borrow_mut(|s| {
        let comm = s.comm(&e.context);
        let file = e.file.as_ref().map(|f| s.file(f));
        let path = file.as_ref().map(|f| &*f.path);
        s.text.clear();
        write_do_mmap_body(&mut s.text, e, &comm, path, target);
        (comm, file, s.take_value())
    });
    record.set_body(body);

    add_context(record, &e.context, comm);
    match e.error {
        Some(err) => {
            record.add_attribute(attr::MMAP_ERRNO, i64::from(-err));
            record.add_attribute(attr::ERROR_TYPE, cow_value(names::errno_name(-err)));
        }
        None => record.add_attribute(attr::MMAP_ADDR, e.addr as i64),
    }
    record.add_attribute(attr::MMAP_LEN, e.len as i64);
    record.add_attribute(attr::MMAP_PGOFF, e.pgoff as i64);
    add_prot_flags(record, e.prot, e.flags, reasons);
    add_applied_prot(record, e.prot, e.applied_prot);
    add_fd(record, e.fd, e.file_source);
    if e.by_execve {
        record.add_attribute(attr::MMAP_EXECVE, true);
    }
    if e.by_brk {
        record.add_attribute(attr::MMAP_BRK, true);
    }
    if e.by_shmat {
        record.add_attribute(attr::MMAP_SHMAT, true);
    }
    if e.found_at_start {
        record.add_attribute(attr::MMAP_FOUND_AT_START, true);
    }
    if let (Some(file), Some(strings)) = (&e.file, file) {
        add_file(record, file, strings);
    }
}

/// The body of a do_mmap record, e.g. "python3 mapped /usr/lib/libc.so.6
/// at 0x7f.. (8192 bytes, PROT_READ|PROT_EXEC, MAP_PRIVATE)".
fn write_do_mmap_body(
    body: &mut String,
    e: &DoMmap<'_>,
    comm: &str,
    path: Option<&str>,
    target: Target<'_, '_>,
) {
    match (e.error, path, target) {
        (Some(err), Some(p), _) => {
            let _ = write!(
                body,
                "{comm} failed to map {p}: {}",
                names::errno_name(-err)
            );
        }
        (Some(err), None, Target::Anonymous) => {
            let _ = write!(
                body,
                "{comm} failed to map {} bytes of anonymous memory: {}",
                e.len,
                names::errno_name(-err)
            );
        }
        (Some(err), None, _) => {
            body.push_str(comm);
            body.push_str(" failed to map ");
            write_unknown_file(body, e.fd);
            let _ = write!(body, ": {}", names::errno_name(-err));
        }
        (None, Some(p), _) => {
            let _ = write!(
                body,
                "{comm} mapped {p} at {:#x} ({} bytes, ",
                e.addr, e.len
            );
        }
        (None, None, Target::Anonymous) if e.by_brk => {
            let _ = write!(
                body,
                "{comm} grew its heap by {} bytes at {:#x} (",
                e.len, e.addr
            );
        }
        (None, None, Target::Anonymous) => {
            let _ = write!(
                body,
                "{comm} mapped {} bytes of anonymous memory at {:#x} (",
                e.len, e.addr
            );
        }
        (None, None, _) => {
            body.push_str(comm);
            body.push_str(" mapped ");
            write_unknown_file(body, e.fd);
            if let Some(reason) = e.file_source.unresolved_reason() {
                let _ = write!(body, " (file not resolved: {reason})");
            }
            let _ = write!(body, " at {:#x} ({} bytes, ", e.addr, e.len);
        }
    }
    if e.error.is_none() {
        join_into(body, |f| names::for_each_prot_name(e.prot, f));
        if e.applied_prot != e.prot {
            body.push_str(" made ");
            join_into(body, |f| names::for_each_prot_name(e.applied_prot, f));
            body.push_str(" by the kernel");
        }
        body.push_str(", ");
        join_into(body, |f| names::for_each_map_flag_name(e.flags, f));
        body.push(')');
    }
    if e.found_at_start {
        body.push_str(", found when mapwatch started");
    }
}

/// "fd N" (or "a file" when the fd is not known either).
fn write_unknown_file(body: &mut String, fd: Option<i32>) {
    match fd {
        Some(fd) => {
            let _ = write!(body, "fd {fd}");
        }
        None => body.push_str("a file"),
    }
}

/// `mmap.fd`, and why no file is named when one was asked for.
fn add_fd<R: LogRecord>(record: &mut R, fd: Option<i32>, source: FileSource) {
    if let Some(fd) = fd {
        record.add_attribute(attr::MMAP_FD, i64::from(fd));
    }
    if let Some(reason) = source.unresolved_reason() {
        record.add_attribute(attr::MAPWATCH_FILE_UNRESOLVED, reason);
    }
}

fn fill_security_mmap_file<R: LogRecord>(
    e: &SecurityMmapFile<'_>,
    clock: &WallClock,
    record: &mut R,
) {
    record.set_event_name(EVENT_SECURITY_MMAP_FILE);
    record.set_timestamp(clock.wall_time(e.context.ktime_ns));
    let target = Target::of(e.flags, e.file.as_ref(), e.file_source);
    let reasons = security_mmap_file_reasons(e);
    set_severity(record, reasons, e.enforcement);

    let (comm, file, body) = SCRATCH.with_borrow_mut(|s| {
        let comm = s.comm(&e.context);
        let file = e.file.as_ref().map(|f| s.file(f));
        let body = &mut s.text;
        body.clear();
        body.push_str(&comm);
        body.push_str(" asks to map ");
        match (&file, target) {
            (Some(f), _) => body.push_str(&f.path),
            (None, Target::Anonymous) => body.push_str("anonymous memory"),
            (None, _) => {
                write_unknown_file(body, e.fd);
                if let Some(reason) = e.file_source.unresolved_reason() {
                    let _ = write!(body, " (file not resolved: {reason})");
                }
            }
        }
        body.push_str(" with ");
        join_into(body, |f| names::for_each_prot_name(e.prot, f));
        match e.verdict {
            Some(0) => body.push_str(": allowed"),
            Some(v) => {
                let _ = write!(body, ": denied ({})", names::errno_name(-v));
            }
            None => {}
        }
        write_enforcement(body, e.enforcement);
        (comm, file, s.take_value())
    });
    record.set_body(body);

    add_context(record, &e.context, comm);
    add_enforcement(record, e.enforcement);
    if let Some(verdict) = e.verdict {
        record.add_attribute(attr::MMAP_LSM_VERDICT, i64::from(verdict));
        if verdict != 0 {
            record.add_attribute(attr::ERROR_TYPE, cow_value(names::errno_name(-verdict)));
        }
    }
    add_prot_flags(record, e.prot, e.flags, reasons);
    add_applied_prot(record, e.prot, e.applied_prot);
    add_fd(record, e.fd, e.file_source);
    if let (Some(file), Some(strings)) = (&e.file, file) {
        add_file(record, file, strings);
    }
}

/// `VM_SHARED` in the previous protection of a security_file_mprotect record.
const VM_SHARED: u64 = 0x8;

fn fill_security_file_mprotect<R: LogRecord>(
    e: &SecurityFileMprotect<'_>,
    clock: &WallClock,
    record: &mut R,
) {
    record.set_event_name(EVENT_SECURITY_FILE_MPROTECT);
    record.set_timestamp(clock.wall_time(e.context.ktime_ns));
    let target = mprotect_target(e);
    let previous = e.vma.map(|(_, _, prot)| prot & 0x7);
    let reasons = mprotect_reasons(e);
    set_severity(record, reasons, e.enforcement);

    let (comm, file, body) = SCRATCH.with_borrow_mut(|s| {
        let comm = s.comm(&e.context);
        let file = e.file.as_ref().map(|f| s.file(f));
        s.text.clear();
        write_mprotect_body(&mut s.text, e, &comm, file.as_ref(), target, previous);
        (comm, file, s.take_value())
    });
    record.set_body(body);

    add_context(record, &e.context, comm);
    add_enforcement(record, e.enforcement);
    add_mprotect(record, e, reasons);
    if let (Some(file), Some(strings)) = (&e.file, file) {
        add_file(record, file, strings);
    }
}

/// The body of a security_file_mprotect record, e.g. "python3 changes 4096
/// bytes at 0x7f.. (anonymous memory) from PROT_READ|PROT_WRITE to
/// PROT_READ|PROT_EXEC: allowed".
fn write_mprotect_body(
    body: &mut String,
    e: &SecurityFileMprotect<'_>,
    comm: &str,
    file: Option<&FileStrings>,
    target: Target<'_, '_>,
    previous: Option<u64>,
) {
    body.push_str(comm);
    body.push_str(" changes ");
    match (e.range, e.vma) {
        (Some((start, len)), _) => {
            let _ = write!(body, "{len} bytes at {start:#x}");
        }
        (None, Some((start, end, _))) => {
            let _ = write!(body, "{:#x}-{:#x}", start, end);
        }
        (None, None) => body.push_str("memory"),
    }
    match (file, target) {
        (Some(f), _) => {
            body.push_str(" of ");
            body.push_str(&f.path);
        }
        (None, Target::Anonymous) => body.push_str(" (anonymous memory)"),
        (None, _) => {
            if let Some(reason) = e.file_source.unresolved_reason() {
                let _ = write!(body, " (mapping not resolved: {reason})");
            }
        }
    }
    if let Some(prev) = previous {
        body.push_str(" from ");
        join_into(body, |f| names::for_each_prot_name(prev, f));
    }
    body.push_str(" to ");
    join_into(body, |f| names::for_each_prot_name(e.reqprot, f));
    if let Some(pkey) = e.pkey {
        let _ = write!(body, " with pkey {pkey}");
    }
    match e.result {
        Some(0) => body.push_str(": allowed"),
        Some(r) => {
            let _ = write!(body, ": failed ({})", names::errno_name(-r));
        }
        None => {}
    }
    write_enforcement(body, e.enforcement);
}

/// The attributes of a security_file_mprotect record that describe the
/// change: range, protections, the VMA, pkey, result, the history, reasons.
fn add_mprotect<R: LogRecord>(record: &mut R, e: &SecurityFileMprotect<'_>, reasons: Reasons) {
    if let Some((start, len)) = e.range {
        record.add_attribute(attr::MPROTECT_ADDR, start as i64);
        record.add_attribute(attr::MPROTECT_LEN, len as i64);
    }
    record.add_attribute(attr::MPROTECT_PROT, e.reqprot as i64);
    record.add_attribute(
        attr::MPROTECT_PROT_NAMES,
        names_value(e.reqprot.count_ones(), |f| {
            names::for_each_prot_name(e.reqprot, f)
        }),
    );
    if e.prot != e.reqprot {
        record.add_attribute(attr::MPROTECT_APPLIED_PROT, e.prot as i64);
    }
    if let Some((start, end, prev)) = e.vma {
        let prot = prev & 0x7;
        record.add_attribute(attr::MPROTECT_PREVIOUS_PROT, prot as i64);
        record.add_attribute(
            attr::MPROTECT_PREVIOUS_PROT_NAMES,
            names_value(prot.count_ones(), |f| names::for_each_prot_name(prot, f)),
        );
        record.add_attribute(attr::MPROTECT_VMA_START, start as i64);
        record.add_attribute(attr::MPROTECT_VMA_END, end as i64);
        if prev & VM_SHARED != 0 {
            record.add_attribute(attr::MPROTECT_VMA_SHARED, true);
        }
    }
    if let Some(pkey) = e.pkey {
        record.add_attribute(attr::MPROTECT_PKEY, i64::from(pkey));
    }
    if let Some(result) = e.result {
        record.add_attribute(attr::MPROTECT_RESULT, i64::from(result));
        if result != 0 {
            record.add_attribute(attr::ERROR_TYPE, cow_value(names::errno_name(-result)));
        }
    }
    if e.was_writable {
        record.add_attribute(attr::MPROTECT_WAS_WRITABLE, true);
    }
    if !reasons.is_empty() {
        record.add_attribute(attr::MAPWATCH_SUSPICIOUS_REASONS, reasons_value(reasons));
    }
    if let Some(reason) = e.file_source.unresolved_reason() {
        record.add_attribute(attr::MAPWATCH_FILE_UNRESOLVED, reason);
    }
}

/// Appends what enforcement did, e.g. " (denied by mapwatch: write_then_execute)".
fn write_enforcement(body: &mut String, enforcement: Option<Enforcement>) {
    let Some(en) = enforcement else {
        return;
    };
    body.push_str(match en.action {
        Action::Denied => " (denied by mapwatch: ",
        Action::WouldDeny => " (mapwatch would deny, dry run: ",
        Action::Exempt => " (exempt from mapwatch's denial: ",
    });
    let mut first = true;
    for name in Reasons::from_bits(en.reasons).names() {
        if !first {
            body.push_str(", ");
        }
        first = false;
        body.push_str(name);
    }
    body.push(')');
}

fn add_enforcement<R: LogRecord>(record: &mut R, enforcement: Option<Enforcement>) {
    let Some(en) = enforcement else {
        return;
    };
    record.add_attribute(attr::MAPWATCH_ENFORCEMENT_ACTION, en.action.name());
    record.add_attribute(
        attr::MAPWATCH_ENFORCEMENT_REASONS,
        reasons_value(Reasons::from_bits(en.reasons)),
    );
}

/// `reasons` as a `string[]` value of their names.
fn reasons_value(reasons: Reasons) -> AnyValue {
    let list = reasons
        .names()
        .map(|n| AnyValue::String(StringValue::from(n)))
        .collect();
    AnyValue::ListAny(Box::new(list))
}

fn mprotect_target<'r, 'a>(e: &'r SecurityFileMprotect<'a>) -> Target<'r, 'a> {
    match (&e.file, e.vma) {
        (Some(file), _) => Target::File(file),
        (None, _) if e.file_source.unresolved_reason().is_some() => Target::UnknownFile,
        (None, Some(_)) => Target::Anonymous,
        (None, None) => Target::UnknownFile,
    }
}

fn do_mmap_reasons(e: &DoMmap<'_>) -> Reasons {
    let target = Target::of(e.flags, e.file.as_ref(), e.file_source);
    let mut reasons = classify(e.applied_prot, target);
    if e.error.is_none() {
        reasons.insert(unverified(e.applied_prot, target, e.file_source));
    }
    reasons
}

fn security_mmap_file_reasons(e: &SecurityMmapFile<'_>) -> Reasons {
    let target = Target::of(e.flags, e.file.as_ref(), e.file_source);
    let mut reasons = classify(e.applied_prot, target);
    reasons.insert(unverified(e.applied_prot, target, e.file_source));
    reasons
}

/// `EINVAL`: mprotect(2) refuses the call before it changes anything.
const EINVAL: i32 = 22;

fn mprotect_reasons(e: &SecurityFileMprotect<'_>) -> Reasons {
    let previous = e.vma.map(|(_, _, prot)| prot & 0x7);
    // A syscall that fails after its first VMA (ENOMEM at a hole, EACCES or
    // EPERM on a later VMA) has changed the VMAs before it: judged as done.
    // Kernel backends report each VMA with its own hook's verdict.
    let partly_done = e.context.backend == Backend::SyscallTracepoint
        && e.vma.is_some()
        && e.result.is_some_and(|r| r != -EINVAL);
    let succeeded = e.result.is_none_or(|r| r == 0) || partly_done;
    let history = History {
        was_writable: e.was_writable,
        incomplete: e.history_incomplete,
        span_anonymous: e.span_anonymous,
        span_unchecked: e.span_unchecked,
    };
    classify_mprotect(e.prot, previous, history, mprotect_target(e), succeeded)
}

/// The suspicious reasons [`fill_log_record`] gives `event` (empty for a
/// process exit or exec): what the agent's volume control and exceptions
/// decide on, without building the record.
///
/// ```
/// use mapwatch_kernel::abi::{decode, encode, RawDoMmap};
/// use mapwatch_model::{event_reasons, Reasons};
/// let mut raw = RawDoMmap::default();
/// raw.hdr.backend = encode::BACKEND_SYSCALL_TRACEPOINT;
/// (raw.prot, raw.mmap_flags, raw.len) = (0x7, 0x22, 4096);
/// let bytes = encode::do_mmap(raw, b"");
/// assert!(event_reasons(&decode(&bytes).unwrap()).contains(Reasons::WRITE_EXECUTE));
/// ```
pub fn event_reasons(event: &Event<'_>) -> Reasons {
    match event {
        Event::DoMmap(e) => do_mmap_reasons(e),
        Event::SecurityMmapFile(e) => security_mmap_file_reasons(e),
        Event::SecurityFileMprotect(e) => mprotect_reasons(e),
        Event::ProcessExit(_) | Event::ProcessExec(_) => Reasons::empty(),
    }
}

/// What enforcement did about `event` (lsm backend with `[enforce]`), if
/// anything. Such a record is always sent (volume control never holds it
/// back) and never excused to INFO: a refusal, a dry run's `would_deny` and
/// an exemption are what the user asked to see.
pub fn event_enforcement(event: &Event<'_>) -> Option<Enforcement> {
    match event {
        Event::SecurityMmapFile(e) => e.enforcement,
        Event::SecurityFileMprotect(e) => e.enforcement,
        _ => None,
    }
}

/// WARN for a record with a reason, or one enforcement acted on (a denied
/// mprotect changed nothing, so it has fewer reasons of its own).
pub(crate) fn set_severity<R: LogRecord>(
    record: &mut R,
    reasons: Reasons,
    enforcement: Option<Enforcement>,
) {
    if reasons.is_empty() && enforcement.is_none() {
        record.set_severity_number(Severity::Info);
        record.set_severity_text("INFO");
    } else {
        record.set_severity_number(Severity::Warn);
        record.set_severity_text("WARN");
    }
}

/// Writes the names `each` hands out for `value`, joined by `|`.
pub(crate) fn join_into(out: &mut String, each: impl FnOnce(&mut dyn FnMut(Cow<'static, str>))) {
    let mut first = true;
    each(&mut |name| {
        if !first {
            out.push('|');
        }
        first = false;
        out.push_str(&name);
    });
}

fn cow_value(value: Cow<'static, str>) -> AnyValue {
    match value {
        Cow::Borrowed(s) => AnyValue::String(StringValue::from(s)),
        Cow::Owned(s) => AnyValue::String(StringValue::from(s)),
    }
}

/// The names `each` hands out for `value`, as a `string[]` value: one
/// allocation for the list (plus the SDK's box), none for the names.
pub(crate) fn names_value(
    bits: u32,
    each: impl FnOnce(&mut dyn FnMut(Cow<'static, str>)),
) -> AnyValue {
    let mut list = Vec::with_capacity(bits as usize + 1);
    each(&mut |name| list.push(cow_value(name)));
    AnyValue::ListAny(Box::new(list))
}

pub(crate) fn add_context<R: LogRecord>(record: &mut R, c: &Context, comm: Arc<str>) {
    let comm = StringValue::from(comm);
    record.add_attribute(attr::PROCESS_PID, i64::from(c.pid));
    record.add_attribute(attr::PROCESS_PARENT_PID, i64::from(c.ppid));
    record.add_attribute(
        attr::PROCESS_EXECUTABLE_NAME,
        AnyValue::String(comm.clone()),
    );
    record.add_attribute(attr::PROCESS_USER_ID, i64::from(c.euid));
    record.add_attribute(attr::PROCESS_REAL_USER_ID, i64::from(c.uid));
    record.add_attribute(attr::PROCESS_GROUP_ID, i64::from(c.egid));
    record.add_attribute(attr::PROCESS_REAL_GROUP_ID, i64::from(c.gid));
    record.add_attribute(attr::THREAD_ID, i64::from(c.tid));
    record.add_attribute(attr::THREAD_NAME, AnyValue::String(comm));
    record.add_attribute(attr::MAPWATCH_CGROUP_ID, c.cgroup_id as i64);
    record.add_attribute(attr::MAPWATCH_PID_NAMESPACE, i64::from(c.pid_ns));
    record.add_attribute(attr::MAPWATCH_MOUNT_NAMESPACE, i64::from(c.mnt_ns));
    record.add_attribute(attr::MAPWATCH_BACKEND, c.backend.name());
}

fn add_prot_flags<R: LogRecord>(record: &mut R, prot: u64, flags: u64, reasons: Reasons) {
    record.add_attribute(attr::MMAP_PROT, prot as i64);
    record.add_attribute(
        attr::MMAP_PROT_NAMES,
        names_value(prot.count_ones(), |f| names::for_each_prot_name(prot, f)),
    );
    record.add_attribute(attr::MMAP_FLAGS, flags as i64);
    record.add_attribute(
        attr::MMAP_FLAG_NAMES,
        names_value(flags.count_ones(), |f| {
            names::for_each_map_flag_name(flags, f)
        }),
    );
    if !reasons.is_empty() {
        record.add_attribute(attr::MAPWATCH_SUSPICIOUS_REASONS, reasons_value(reasons));
    }
}

/// `mmap.applied_prot`, when the kernel applied more than was asked.
fn add_applied_prot<R: LogRecord>(record: &mut R, prot: u64, applied: u64) {
    if applied != prot {
        record.add_attribute(attr::MMAP_APPLIED_PROT, applied as i64);
    }
}

/// ISO 8601 (RFC 3339, UTC, nanoseconds) of a time in ns since the epoch.
pub fn iso8601(ns_since_epoch: u64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(ns_since_epoch)).to_string()
}

pub(crate) fn add_file<R: LogRecord>(record: &mut R, file: &File<'_>, strings: FileStrings) {
    let string = |s: Arc<str>| AnyValue::String(StringValue::from(s));
    if let Some(name) = strings.name {
        record.add_attribute(attr::FILE_NAME, string(name));
    }
    if let Some(directory) = strings.directory {
        record.add_attribute(attr::FILE_DIRECTORY, string(directory));
    }
    record.add_attribute(attr::FILE_INODE, string(strings.inode_text));
    record.add_attribute(attr::FILE_CHANGED, string(strings.changed));
    record.add_attribute(attr::MMAP_FILE_DEV, string(strings.dev_text));
    record.add_attribute(attr::MMAP_FILE_OPEN_FLAGS, i64::from(file.open_flags));
    record.add_attribute(
        attr::MMAP_FILE_OPEN_FLAG_NAMES,
        names_value(file.open_flags.count_ones(), |f| {
            names::for_each_open_flag_name(file.open_flags, f)
        }),
    );
    record.add_attribute(attr::MMAP_FILE_MODE, string(strings.mode_text));
    if file.path_truncated {
        record.add_attribute(attr::MMAP_FILE_PATH_TRUNCATED, true);
    }
    if file.path_in_chroot {
        record.add_attribute(attr::MMAP_FILE_PATH_IN_CHROOT, true);
    }
    if file.deleted {
        record.add_attribute(attr::MMAP_FILE_DELETED, true);
    }
    record.add_attribute(Key::from_static_str(attr::FILE_PATH), string(strings.path));
}
