//! The on-disk spool: where log records wait, in files, while the export
//! queue is full or the collector cannot be reached
//! (`batch.when_full = "spool"`, docs/reliability.md).
//!
//! The spool is the tail of the export queue: the reader appends a record
//! when the queue is full (and, to keep the order, while older records are
//! still spooled); the exporter appends a batch whose export failed in a way
//! that may pass later, and the batches still queued when the agent stops
//! during an outage; the reader takes records back, oldest first, while the
//! queue has room and exports succeed. Records left at exit are sent by the
//! next agent using the directory.
//!
//! On disk, `DIR/lock` is `flock`ed by the agent using the spool, and the
//! records are in segment files `DIR/<20-digit number>.otlp`, each a run of
//! frames `[length: u32 LE][CRC-32 of length and payload: u32 LE][payload]`
//! whose payload is an OTLP `LogRecord` in protobuf, the collector's own
//! format. New records go to the newest segment, a new one is started about
//! every `max_bytes / 16`, and a segment is deleted once read back. A clean
//! stop writes `DIR/position` (segment and offset of the next record to send).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mapwatch_model::{EVENT_DO_MMAP, EVENT_SECURITY_MMAP_FILE};
use opentelemetry::logs::{AnyValue, LogRecord as _, Severity};
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use opentelemetry::{Key, StringValue};
use opentelemetry_proto::tonic::common::v1::{AnyValue as ProtoValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::LogRecord as ProtoRecord;
use opentelemetry_sdk::logs::SdkLogRecord;
use prost::Message as _;

/// Bytes of a frame's header: payload length and CRC-32.
const FRAME_HEADER: u64 = 8;
/// A payload larger than this is damage (records are a few KiB at most).
const MAX_PAYLOAD: u32 = 16 * 1024 * 1024;
/// Segments are read through a buffer of this size.
const READ_BUFFER: usize = 64 * 1024;
/// Frames are written to the file in chunks of about this size.
const WRITE_CHUNK: usize = 64 * 1024;
const SEGMENT_SUFFIX: &str = ".otlp";
/// A sealed segment, compressed: `<number>-<records>.otlp.gz`.
const SEALED_SUFFIX: &str = ".otlp.gz";
const POSITION_FILE: &str = "position";

/// Why the spool could not take or give back a record.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Another process holds the spool's lock.
    #[error(
        "spool directory {0} is in use by another mapwatch (its lock file is held); give each agent its own spool.directory"
    )]
    Busy(PathBuf),
    /// The directory or a file in it cannot be used.
    #[error(
        "spool: cannot {action} {path}: {source} (the directory must stay writable by the agent's user)"
    )]
    Io {
        /// What was being done, e.g. `create`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing to a segment failed; the record being written and `records`
    /// records buffered before it are given up.
    #[error(
        "spool: cannot write to {path}: {source}; {records} records written since the last successful write were given up"
    )]
    WriteFailed {
        /// The segment.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
        /// Records given up besides the one being written.
        records: u64,
    },
    /// A segment cannot be opened; its `records` records are given up.
    #[error("spool segment {path} cannot be read ({source}); skipped its {records} records")]
    Unreadable {
        /// The segment.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
        /// Records given up.
        records: u64,
    },
    /// Taking the record would pass `spool.max_bytes`.
    #[error("the spool in {dir} is full ({max_bytes} bytes, spool.max_bytes)")]
    Full {
        /// The spool's directory.
        dir: PathBuf,
        /// The limit.
        max_bytes: u64,
    },
    /// A frame of a segment is damaged; the segment's `records` remaining
    /// records are given up with it.
    #[error(
        "spool segment {path} is damaged at byte {offset} ({reason}); skipped its {records} remaining records"
    )]
    Damaged {
        /// The segment.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong.
        reason: String,
        /// Records given up.
        records: u64,
    },
    /// A frame is intact but does not hold an OTLP LogRecord; it is skipped.
    #[error(
        "spool segment {path}: the frame at byte {offset} is not an OTLP LogRecord; skipped it"
    )]
    NotARecord {
        /// The segment.
        path: PathBuf,
        /// Where the frame starts.
        offset: u64,
    },
    /// The spool was closed at shutdown.
    #[error("the spool is closed (the agent is stopping)")]
    Closed,
}

impl SpoolError {
    /// Spooled records this error lost (given up with a damaged or
    /// unwritable segment), not counting a record being written.
    pub fn records_lost(&self) -> u64 {
        match self {
            SpoolError::Damaged { records, .. }
            | SpoolError::Unreadable { records, .. }
            | SpoolError::WriteFailed { records, .. } => *records,
            SpoolError::NotARecord { .. } => 1,
            _ => 0,
        }
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// One segment file.
#[derive(Debug)]
struct Segment {
    number: u64,
    /// Its file (raw, or sealed and compressed).
    path: PathBuf,
    /// Bytes it takes on disk (frames written or buffered; compressed once
    /// sealed).
    bytes: u64,
    /// Records in it not read back yet.
    records: u64,
    /// Compressed (gzip) since it was sealed.
    sealed: bool,
}

/// Appends frames to the newest segment, in chunks.
#[derive(Debug)]
struct Appender {
    number: u64,
    file: File,
    /// Frames not written to the file yet.
    buffer: Vec<u8>,
    /// Records in `buffer`.
    buffered_records: u64,
    /// The file's length after the last successful write.
    written: u64,
}

struct Cursor {
    number: u64,
    file: Box<dyn Read + Send>,
    /// Bytes of frames read (uncompressed).
    offset: u64,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("number", &self.number)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

/// The spool of one agent (see the module docs).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Held (flocked) while the spool is open.
    _lock: File,
    /// Oldest first; the appender writes to the last, the cursor reads the first.
    segments: VecDeque<Segment>,
    appender: Option<Appender>,
    cursor: Option<Cursor>,
    /// Number of the next segment; never reused while the spool is open.
    next_number: u64,
    records: u64,
    bytes: u64,
    /// Records found at open, left by an earlier run.
    inherited: u64,
    /// Damaged frames cut off at open (a crash while writing, or damage).
    damaged_at_open: u64,
    closed: bool,
    scratch: Vec<u8>,
}

impl Spool {
    /// Opens (creating with mode 0700) the spool in `dir`, holding at most
    /// `max_bytes`, and takes over the records an earlier run left there.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("create the directory", dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        // SAFETY: flock on a file descriptor we own; no memory is passed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = std::io::Error::last_os_error();
            return Err(if error.kind() == ErrorKind::WouldBlock {
                SpoolError::Busy(dir.to_owned())
            } else {
                io("lock", &lock_path)(error)
            });
        }

        // Raw segments by number, sealed ones by number with their records.
        let mut raw = std::collections::BTreeSet::new();
        let mut sealed = std::collections::BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(io("list", dir))? {
            let name = entry.map_err(io("list", dir))?.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(SEALED_SUFFIX) {
                if let Some((number, records)) = stem.split_once('-')
                    && let (Ok(number), Ok(records)) =
                        (number.parse::<u64>(), records.parse::<u64>())
                {
                    sealed.insert(number, records);
                }
            } else if let Some(number) = name
                .strip_suffix(SEGMENT_SUFFIX)
                .and_then(|n| n.parse::<u64>().ok())
            {
                raw.insert(number);
            } else if name.ends_with(".tmp") {
                // A segment being sealed when the agent stopped: the raw
                // one is still there.
                let path = dir.join(&*name);
                fs::remove_file(&path).map_err(io("delete", &path))?;
            }
        }
        for number in sealed.keys() {
            // Sealed, but the agent stopped before deleting the raw copy.
            if raw.remove(number) {
                let path = dir.join(format!("{number:020}{SEGMENT_SUFFIX}"));
                fs::remove_file(&path).map_err(io("delete", &path))?;
            }
        }
        let mut numbers: Vec<u64> = raw.iter().chain(sealed.keys()).copied().collect();
        numbers.sort_unstable();

        let position_path = dir.join(POSITION_FILE);
        let position = fs::read_to_string(&position_path).ok().and_then(|text| {
            let (number, offset) = text.trim().split_once(' ')?;
            Some((number.parse::<u64>().ok()?, offset.parse::<u64>().ok()?))
        });

        let mut spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes: (max_bytes / 16).clamp(64 * 1024, 16 * 1024 * 1024),
            _lock: lock,
            segments: VecDeque::new(),
            appender: None,
            cursor: None,
            next_number: numbers.last().map_or(0, |n| n + 1),
            records: 0,
            bytes: 0,
            inherited: 0,
            damaged_at_open: 0,
            closed: false,
            scratch: Vec::with_capacity(4096),
        };
        for number in numbers {
            if let Some(&records) = sealed.get(&number) {
                let path = spool.sealed_path(number, records);
                let bytes = fs::metadata(&path).map_err(io("read", &path))?.len();
                let mut records = records;
                if let Some((n, offset)) = position
                    && n == number
                    && offset > 0
                    && spool.segments.is_empty()
                {
                    // Skip what was sent before the clean stop.
                    let file = File::open(&path).map_err(io("open", &path))?;
                    let mut file = segment_reader(file, true);
                    let (mut at, mut buf) = (0, Vec::new());
                    while at < offset {
                        match read_frame(&mut file, &mut buf) {
                            Ok(Some(len)) => {
                                at += FRAME_HEADER + len;
                                records = records.saturating_sub(1);
                            }
                            _ => break,
                        }
                    }
                    spool.cursor = Some(Cursor {
                        number,
                        file,
                        offset: at,
                    });
                }
                spool.segments.push_back(Segment {
                    number,
                    path,
                    bytes,
                    records,
                    sealed: true,
                });
                spool.records += records;
                spool.bytes += bytes;
                continue;
            }
            let path = spool.segment_path(number);
            let start = match position {
                Some((n, offset)) if n == number && spool.segments.is_empty() => offset,
                _ => 0,
            };
            let (records, bytes, damaged) = scan(&path, start)?;
            spool.damaged_at_open += damaged;
            if records == 0 {
                fs::remove_file(&path).map_err(io("delete", &path))?;
                continue;
            }
            if start > 0 {
                let mut file = File::open(&path).map_err(io("open", &path))?;
                file.seek(SeekFrom::Start(start))
                    .map_err(io("read", &path))?;
                spool.cursor = Some(Cursor {
                    number,
                    file: segment_reader(file, false),
                    offset: start,
                });
            }
            spool.segments.push_back(Segment {
                number,
                path,
                bytes,
                records,
                sealed: false,
            });
            spool.records += records;
            spool.bytes += bytes;
        }
        spool.inherited = spool.records;
        // Read once; a clean stop writes it again.
        match fs::remove_file(&position_path) {
            Err(error) if error.kind() != ErrorKind::NotFound => {
                return Err(io("delete", &position_path)(error));
            }
            _ => {}
        }
        Ok(spool)
    }

    fn segment_path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number:020}{SEGMENT_SUFFIX}"))
    }

    fn sealed_path(&self, number: u64, records: u64) -> PathBuf {
        self.dir
            .join(format!("{number:020}-{records}{SEALED_SUFFIX}"))
    }

    /// Compresses the full segment `number` into `<number>-<records>.otlp.gz`
    /// (written aside, synced, renamed, then the raw file deleted), unless it
    /// is being read. Records repeat most of their bytes, so a segment
    /// shrinks about fifteen-fold. On failure the segment stays raw.
    fn seal(&mut self, number: u64) {
        let Some(index) = self.segments.iter().position(|s| s.number == number) else {
            return;
        };
        let segment = &self.segments[index];
        if segment.sealed
            || segment.records == 0
            || self.cursor.as_ref().is_some_and(|c| c.number == number)
        {
            return;
        }
        let records = segment.records;
        let raw = self.segment_path(number);
        let sealed = self.sealed_path(number, records);
        let temporary = sealed.with_extension("gz.tmp");
        let compress = || -> std::io::Result<u64> {
            let mut input = File::open(&raw)?;
            let output = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&temporary)?;
            let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::fast());
            std::io::copy(&mut input, &mut encoder)?;
            let output = encoder.finish()?;
            output.sync_all()?;
            let size = output.metadata()?.len();
            fs::rename(&temporary, &sealed)?;
            Ok(size)
        };
        match compress() {
            Ok(size) => {
                let segment = &mut self.segments[index];
                self.bytes = self.bytes - segment.bytes + size;
                segment.bytes = size;
                segment.sealed = true;
                segment.path = sealed;
                if let Err(error) = fs::remove_file(&raw) {
                    tracing::warn!(
                        "spool: cannot delete {} after sealing it: {error}",
                        raw.display()
                    );
                }
            }
            Err(error) => {
                let _ = fs::remove_file(&temporary);
                tracing::warn!(
                    "spool: cannot compress {} ({error}); it stays uncompressed",
                    raw.display()
                );
            }
        }
    }

    /// Records waiting in the spool.
    pub fn len(&self) -> u64 {
        self.records
    }

    /// Whether no record waits in the spool.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Bytes the spool's segments take (written or about to be).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records an earlier run left, found at open.
    pub fn inherited(&self) -> u64 {
        self.inherited
    }

    /// Damaged frames cut off at open (at least one record each).
    pub fn damaged_at_open(&self) -> u64 {
        self.damaged_at_open
    }

    /// Appends `record`; fails with [`SpoolError::Full`] when it would pass
    /// `max_bytes`.
    pub fn push(&mut self, record: &SdkLogRecord) -> Result<(), SpoolError> {
        if self.closed {
            return Err(SpoolError::Closed);
        }
        self.scratch.clear();
        self.scratch.resize(FRAME_HEADER as usize, 0);
        if record.observed_timestamp().is_some() {
            ProtoRecord::from(record).encode(&mut self.scratch)
        } else {
            // The conversion needs an observed time; the SDK sets one at emit.
            let mut record = record.clone();
            record.set_observed_timestamp(SystemTime::now());
            ProtoRecord::from(&record).encode(&mut self.scratch)
        }
        .expect("a Vec grows to fit");
        let payload = self.scratch.len() - FRAME_HEADER as usize;
        let len = (payload as u32).to_le_bytes();
        self.scratch[..4].copy_from_slice(&len);
        let crc = checksum(&len, &self.scratch[FRAME_HEADER as usize..]);
        self.scratch[4..8].copy_from_slice(&crc.to_le_bytes());
        let frame = self.scratch.len() as u64;
        if self.bytes + frame > self.max_bytes {
            return Err(SpoolError::Full {
                dir: self.dir.clone(),
                max_bytes: self.max_bytes,
            });
        }
        let rotate = match (&self.appender, self.segments.back()) {
            (Some(appender), Some(last)) => {
                appender.number != last.number
                    || (last.bytes > 0 && last.bytes + frame > self.segment_bytes)
            }
            _ => true,
        };
        if rotate {
            self.start_segment()?;
        }
        let appender = self.appender.as_mut().expect("a segment was just started");
        appender.buffer.extend_from_slice(&self.scratch);
        appender.buffered_records += 1;
        let last = self.segments.back_mut().expect("the appender's segment");
        last.bytes += frame;
        last.records += 1;
        self.bytes += frame;
        self.records += 1;
        if self
            .appender
            .as_ref()
            .is_some_and(|a| a.buffer.len() >= WRITE_CHUNK)
        {
            return self.write_buffer().map_err(|error| match error {
                // The caller counts the record being written itself.
                SpoolError::WriteFailed {
                    path,
                    source,
                    records,
                } => SpoolError::WriteFailed {
                    path,
                    source,
                    records: records - 1,
                },
                other => other,
            });
        }
        Ok(())
    }

    /// Writes the appender's buffer to its file. On failure, the file is cut
    /// back to its last good length, the buffered records are given up, and
    /// the next record starts a new segment.
    fn write_buffer(&mut self) -> Result<(), SpoolError> {
        let Some(appender) = &mut self.appender else {
            return Ok(());
        };
        if appender.buffer.is_empty() {
            return Ok(());
        }
        match appender.file.write_all(&appender.buffer) {
            Ok(()) => {
                appender.written += appender.buffer.len() as u64;
                appender.buffer.clear();
                appender.buffered_records = 0;
                Ok(())
            }
            Err(source) => {
                let appender = self.appender.take().expect("checked above");
                let lost_bytes = appender.buffer.len() as u64;
                let lost = appender.buffered_records;
                // Keep the whole frames only (best effort: the records
                // counted in the segment end there).
                let _ = appender.file.set_len(appender.written);
                if let Some(last) = self.segments.back_mut()
                    && last.number == appender.number
                {
                    last.bytes -= lost_bytes;
                    last.records -= lost;
                }
                self.bytes -= lost_bytes;
                self.records -= lost;
                Err(SpoolError::WriteFailed {
                    path: self.segment_path(appender.number),
                    source,
                    records: lost,
                })
            }
        }
    }

    fn start_segment(&mut self) -> Result<(), SpoolError> {
        if self.appender.is_some() {
            self.write_buffer()?;
            if let Some(old) = self.appender.take() {
                // The finished segment is complete on disk before it is read back.
                old.file
                    .sync_data()
                    .map_err(io("sync", &self.segment_path(old.number)))?;
                self.seal(old.number);
            }
        }
        let number = self.next_number;
        self.next_number += 1;
        let path = self.segment_path(number);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(io("create", &path))?;
        self.appender = Some(Appender {
            number,
            file,
            buffer: Vec::with_capacity(WRITE_CHUNK + 4096),
            buffered_records: 0,
            written: 0,
        });
        self.segments.push_back(Segment {
            number,
            path,
            bytes: 0,
            records: 0,
            sealed: false,
        });
        Ok(())
    }

    /// Hands buffered records to the kernel (they then survive a crash of
    /// the agent, not of the machine).
    pub fn flush(&mut self) -> Result<(), SpoolError> {
        self.write_buffer()
    }

    /// Takes the oldest record back, or `None` when the spool is empty.
    pub fn pop(&mut self) -> Option<Result<ProtoRecord, SpoolError>> {
        while self.records > 0 {
            let head = self.segments.front()?;
            let (number, head_records) = (head.number, head.records);
            if head_records == 0 {
                if let Err(error) = self.remove_head() {
                    return Some(Err(error));
                }
                continue;
            }
            if self.appender.as_ref().is_some_and(|a| a.number == number)
                && let Err(error) = self.write_buffer()
            {
                return Some(Err(error));
            }
            let (path, sealed) = self.segments.front().map(|h| (h.path.clone(), h.sealed))?;
            if self.cursor.as_ref().is_none_or(|c| c.number != number) {
                match File::open(&path) {
                    Ok(file) => {
                        self.cursor = Some(Cursor {
                            number,
                            file: segment_reader(file, sealed),
                            offset: 0,
                        })
                    }
                    Err(source) => {
                        let records = self.give_up_head();
                        return Some(Err(SpoolError::Unreadable {
                            path,
                            source,
                            records,
                        }));
                    }
                }
            }
            let cursor = self.cursor.as_mut().expect("opened above");
            let at = cursor.offset;
            let frame = read_frame(&mut cursor.file, &mut self.scratch);
            match frame {
                Ok(Some(len)) => {
                    cursor.offset += FRAME_HEADER + len;
                    self.records -= 1;
                    if let Some(head) = self.segments.front_mut() {
                        head.records -= 1;
                    }
                    let record = ProtoRecord::decode(self.scratch.as_slice())
                        .map_err(|_| SpoolError::NotARecord { path, offset: at });
                    if self.records == 0 {
                        // Caught up: start afresh rather than keep read files.
                        if let Err(error) = self.clear() {
                            return Some(Err(error));
                        }
                    }
                    return Some(record);
                }
                Ok(None) | Err(_) => {
                    let reason = match frame {
                        Ok(None) => "the file ends early".to_owned(),
                        Err(error) => error.to_string(),
                        Ok(Some(_)) => unreachable!(),
                    };
                    let records = self.give_up_head();
                    return Some(Err(SpoolError::Damaged {
                        path,
                        offset: at,
                        reason,
                        records,
                    }));
                }
            }
        }
        None
    }

    /// Gives up the first segment (damaged or unreadable): forgets its
    /// unread records and deletes it; returns how many records were lost.
    fn give_up_head(&mut self) -> u64 {
        let Some(head) = self.segments.front_mut() else {
            return 0;
        };
        let records = head.records;
        head.records = 0;
        self.records -= records;
        if let Err(error) = self.remove_head() {
            tracing::warn!("{error}");
        }
        records
    }

    /// Deletes the first segment, stopping to read or write it.
    fn remove_head(&mut self) -> Result<(), SpoolError> {
        let Some(head) = self.segments.pop_front() else {
            return Ok(());
        };
        if self
            .cursor
            .as_ref()
            .is_some_and(|c| c.number == head.number)
        {
            self.cursor = None;
        }
        if self
            .appender
            .as_ref()
            .is_some_and(|a| a.number == head.number)
        {
            self.appender = None;
        }
        self.bytes -= head.bytes;
        self.records -= head.records;
        fs::remove_file(&head.path).map_err(io("delete", &head.path))
    }

    fn clear(&mut self) -> Result<(), SpoolError> {
        while !self.segments.is_empty() {
            self.remove_head()?;
        }
        Ok(())
    }

    /// Makes everything written durable, records where reading stopped for
    /// the next run, and refuses further records.
    pub fn close(&mut self) -> Result<(), SpoolError> {
        self.closed = true;
        self.write_buffer()?;
        if let Some(appender) = &self.appender {
            appender
                .file
                .sync_data()
                .map_err(io("sync", &self.segment_path(appender.number)))?;
        }
        let position = self.dir.join(POSITION_FILE);
        if let Some(cursor) = &self.cursor
            && cursor.offset > 0
            && self.records > 0
        {
            let temporary = self.dir.join("position.new");
            fs::write(&temporary, format!("{} {}\n", cursor.number, cursor.offset))
                .and_then(|()| File::open(&temporary)?.sync_all())
                .map_err(io("write", &temporary))?;
            fs::rename(&temporary, &position).map_err(io("rename to", &position))?;
        }
        // New, renamed and deleted files are durable once the directory is.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", &self.dir))
    }
}

/// Reads the frames of a segment file (inflating a sealed one), buffered.
fn segment_reader(file: File, sealed: bool) -> Box<dyn Read + Send> {
    if sealed {
        Box::new(BufReader::with_capacity(
            READ_BUFFER,
            flate2::read::GzDecoder::new(file),
        ))
    } else {
        Box::new(BufReader::with_capacity(READ_BUFFER, file))
    }
}

/// CRC-32 of a frame's length bytes and payload: a run of zero bytes (a
/// file extended but never written) is not a valid frame.
fn checksum(len: &[u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len);
    hasher.update(payload);
    hasher.finalize()
}

/// Reads one frame's payload into `buf`; `Ok(None)` at a clean end of file,
/// an error for a torn or damaged frame.
fn read_frame(file: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<Option<u64>> {
    let mut header = [0u8; FRAME_HEADER as usize];
    match file.read_exact(&mut header[..1]) {
        Err(error) if error.kind() == ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    file.read_exact(&mut header[1..])?;
    let len: [u8; 4] = header[..4].try_into().expect("4 bytes");
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    let size = u32::from_le_bytes(len);
    if size == 0 || size > MAX_PAYLOAD {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            format!("implausible frame length {size}"),
        ));
    }
    buf.resize(size as usize, 0);
    file.read_exact(buf)?;
    if checksum(&len, buf) != crc {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            "checksum mismatch",
        ));
    }
    Ok(Some(u64::from(size)))
}

/// Counts the records of segment `path` from byte `start`, cutting the file
/// at the first damaged frame (normally one torn by a crash while writing);
/// returns (records, file size, damaged frames cut off).
fn scan(path: &Path, start: u64) -> Result<(u64, u64, u64), SpoolError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io("open", path))?;
    let size = file.metadata().map_err(io("read", path))?.len();
    let mut reader = BufReader::with_capacity(READ_BUFFER, &file);
    let mut offset = start.min(size);
    reader
        .seek(SeekFrom::Start(offset))
        .map_err(io("read", path))?;
    let mut records = 0;
    let mut buf = Vec::new();
    loop {
        match read_frame(&mut reader, &mut buf) {
            Ok(Some(len)) => {
                offset += FRAME_HEADER + len;
                records += 1;
            }
            Ok(None) => return Ok((records, size, 0)),
            Err(error) => {
                file.set_len(offset).map_err(io("truncate", path))?;
                tracing::warn!(
                    "spool segment {}: damaged frame at byte {offset} ({error}); cut off the last {} bytes (a crash while writing, or damage on disk), at least one record",
                    path.display(),
                    size - offset
                );
                return Ok((records, offset, 1));
            }
        }
    }
}

/// Fills `record` (made by the logger) from a spooled OTLP record.
pub fn restore(spooled: ProtoRecord, record: &mut SdkLogRecord) {
    let time = |nanos: u64| UNIX_EPOCH + Duration::from_nanos(nanos);
    if spooled.time_unix_nano != 0 {
        record.set_timestamp(time(spooled.time_unix_nano));
    }
    if spooled.observed_time_unix_nano != 0 {
        record.set_observed_timestamp(time(spooled.observed_time_unix_nano));
    }
    if let Some(severity) = severity(spooled.severity_number) {
        record.set_severity_number(severity);
        // The SDK keeps `&'static str`s: the standard names cover ours.
        if spooled.severity_text == severity.name() {
            record.set_severity_text(severity.name());
        }
    }
    if let Some(name) = [EVENT_DO_MMAP, EVENT_SECURITY_MMAP_FILE]
        .into_iter()
        .find(|name| *name == spooled.event_name)
    {
        record.set_event_name(name);
    }
    if let Some(body) = spooled.body.and_then(value) {
        record.set_body(body);
    }
    for attribute in spooled.attributes {
        if let Some(value) = attribute.value.and_then(value) {
            record.add_attribute(Key::new(attribute.key), value);
        }
    }
    if let (Ok(trace), Ok(span)) = (
        <[u8; 16]>::try_from(spooled.trace_id.as_slice()),
        <[u8; 8]>::try_from(spooled.span_id.as_slice()),
    ) {
        record.set_trace_context(
            TraceId::from_bytes(trace),
            SpanId::from_bytes(span),
            Some(TraceFlags::new(spooled.flags as u8)),
        );
    }
}

fn value(spooled: ProtoValue) -> Option<AnyValue> {
    Some(match spooled.value? {
        Value::StringValue(s) => AnyValue::String(StringValue::from(s)),
        Value::BoolValue(b) => AnyValue::Boolean(b),
        Value::IntValue(i) => AnyValue::Int(i),
        Value::DoubleValue(d) => AnyValue::Double(d),
        Value::BytesValue(b) => AnyValue::Bytes(Box::new(b)),
        Value::ArrayValue(array) => AnyValue::ListAny(Box::new(
            array.values.into_iter().filter_map(value).collect(),
        )),
        // Profiles only; mapwatch never writes it.
        Value::StringValueStrindex(_) => return None,
        Value::KvlistValue(list) => AnyValue::Map(Box::new(
            list.values
                .into_iter()
                .filter_map(|kv| Some((Key::new(kv.key), value(kv.value?)?)))
                .collect(),
        )),
    })
}

fn severity(number: i32) -> Option<Severity> {
    use Severity::*;
    const ALL: [Severity; 24] = [
        Trace, Trace2, Trace3, Trace4, Debug, Debug2, Debug3, Debug4, Info, Info2, Info3, Info4,
        Warn, Warn2, Warn3, Warn4, Error, Error2, Error3, Error4, Fatal, Fatal2, Fatal3, Fatal4,
    ];
    ALL.into_iter().find(|s| *s as i32 == number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::logs::{Logger as _, LoggerProvider as _};
    use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
    use proptest::prelude::*;

    fn logger() -> SdkLogger {
        SdkLoggerProvider::builder().build().logger("spool-test")
    }

    /// A record like the agent's, numbered `n` (in `mmap.addr`).
    fn record(logger: &SdkLogger, n: i64) -> SdkLogRecord {
        let mut record = logger.create_log_record();
        record.set_event_name(EVENT_DO_MMAP);
        record.set_timestamp(
            UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000 + n.unsigned_abs()),
        );
        record.set_observed_timestamp(UNIX_EPOCH + Duration::from_secs(1_700_000_001));
        record.set_severity_number(Severity::Warn);
        record.set_severity_text(Severity::Warn.name());
        record.set_body(AnyValue::String(format!("mapping {n}").into()));
        record.add_attribute(Key::new("mmap.addr"), AnyValue::Int(n));
        record.add_attribute(
            Key::new("file.path"),
            AnyValue::String("/usr/lib/libc.so.6".into()),
        );
        record.add_attribute(
            Key::new("mmap.prot_names"),
            AnyValue::ListAny(Box::new(vec![
                AnyValue::String("PROT_READ".into()),
                AnyValue::String("PROT_EXEC".into()),
            ])),
        );
        record.add_attribute(Key::new("flag"), AnyValue::Boolean(true));
        record.add_attribute(Key::new("ratio"), AnyValue::Double(0.5));
        record.set_trace_context(
            TraceId::from_bytes([7; 16]),
            SpanId::from_bytes([9; 8]),
            Some(TraceFlags::SAMPLED),
        );
        record
    }

    fn number(spooled: &ProtoRecord) -> i64 {
        let addr = spooled
            .attributes
            .iter()
            .find(|kv| kv.key == "mmap.addr")
            .and_then(|kv| kv.value.clone()?.value);
        match addr {
            Some(Value::IntValue(n)) => n,
            other => panic!("no mmap.addr: {other:?}"),
        }
    }

    fn segments(dir: &Path) -> usize {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.ends_with(SEGMENT_SUFFIX) || name.ends_with(SEALED_SUFFIX)
            })
            .count()
    }

    /// The sealed (compressed) segment files in `dir`.
    fn sealed_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(SEALED_SUFFIX))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn a_record_comes_back_as_it_went_in() {
        let dir = tempfile::tempdir().unwrap();
        let logger = logger();
        let original = record(&logger, 42);
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.push(&original).unwrap();
        let spooled = spool.pop().unwrap().unwrap();
        let mut restored = logger.create_log_record();
        restore(spooled, &mut restored);
        // Equal as the collector would receive them.
        assert_eq!(ProtoRecord::from(&restored), ProtoRecord::from(&original));
        assert_eq!(restored.event_name(), Some(EVENT_DO_MMAP));
        assert_eq!(restored.severity_text(), Some("WARN"));
        assert!(spool.pop().is_none());
        assert_eq!(
            (spool.len(), spool.bytes(), segments(dir.path())),
            (0, 0, 0)
        );
    }

    #[test]
    fn records_left_at_a_clean_stop_are_taken_over_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let logger = logger();
        {
            let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
            for n in 0..10 {
                spool.push(&record(&logger, n)).unwrap();
            }
            for n in 0..3 {
                assert_eq!(number(&spool.pop().unwrap().unwrap()), n);
            }
            spool.close().unwrap();
        }
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!((spool.inherited(), spool.len()), (7, 7));
        spool.push(&record(&logger, 10)).unwrap();
        let back: Vec<i64> = std::iter::from_fn(|| spool.pop())
            .map(|r| number(&r.unwrap()))
            .collect();
        assert_eq!(back, (3..=10).collect::<Vec<_>>());
    }

    #[test]
    fn one_agent_per_directory() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Spool::open(dir.path(), 1 << 20).unwrap();
        let error = Spool::open(dir.path(), 1 << 20).unwrap_err();
        assert!(matches!(error, SpoolError::Busy(_)), "{error}");
        assert!(error.to_string().contains("in use by another mapwatch"));
    }

    #[test]
    fn a_full_spool_refuses_and_keeps_what_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let logger = logger();
        let max = 1 << 20;
        let mut spool = Spool::open(dir.path(), max).unwrap();
        let mut taken = 0;
        loop {
            match spool.push(&record(&logger, taken)) {
                Ok(()) => taken += 1,
                Err(SpoolError::Full { max_bytes, .. }) => {
                    assert_eq!(max_bytes, max);
                    break;
                }
                Err(other) => panic!("{other}"),
            }
        }
        assert!(spool.bytes() <= max && spool.bytes() > max - 1024);
        // Several segments, all accounted for on disk.
        spool.flush().unwrap();
        let on_disk: u64 = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.ends_with(SEGMENT_SUFFIX) || name.ends_with(SEALED_SUFFIX)
            })
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert_eq!(on_disk, spool.bytes());
        assert!(segments(dir.path()) >= 16, "{}", segments(dir.path()));
        // Reading one segment back frees room again.
        for n in 0..taken {
            assert_eq!(number(&spool.pop().unwrap().unwrap()), n);
            if spool.push(&record(&logger, -1)).is_ok() {
                return;
            }
        }
        panic!("no room after reading everything back");
    }

    #[test]
    fn a_frame_torn_by_a_crash_is_cut_off_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let logger = logger();
        {
            let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
            for n in 0..5 {
                spool.push(&record(&logger, n)).unwrap();
            }
            spool.close().unwrap();
        }
        let segment = dir.path().join(format!("{:020}{SEGMENT_SUFFIX}", 0));
        let whole = fs::metadata(&segment).unwrap().len();
        let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
        file.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
        drop(file);
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!((spool.inherited(), spool.damaged_at_open()), (5, 1));
        assert_eq!(fs::metadata(&segment).unwrap().len(), whole);
        assert_eq!(number(&spool.pop().unwrap().unwrap()), 0);
    }

    #[test]
    fn damage_inside_a_segment_skips_that_segment_and_says_how_many() {
        let dir = tempfile::tempdir().unwrap();
        let logger = logger();
        // 64 KiB segments: records 0..n fill the first, later ones the next.
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let mut n = 0;
        while segments(dir.path()) < 2 {
            spool.push(&record(&logger, n)).unwrap();
            n += 1;
        }
        let first_segment = spool.segments[0].records;
        // The full segment was sealed: compressed many times over.
        let sealed = sealed_files(dir.path());
        assert_eq!(sealed.len(), 1, "{sealed:?}");
        let size = fs::metadata(&sealed[0]).unwrap().len();
        assert!(size * 5 < 64 * 1024, "sealed segment of {size} bytes");
        // Damage it in the middle.
        let mut bytes = fs::read(&sealed[0]).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        fs::write(&sealed[0], bytes).unwrap();
        let mut read = 0;
        let lost = loop {
            match spool.pop().unwrap() {
                Ok(record) => {
                    assert_eq!(number(&record), read as i64);
                    read += 1;
                }
                Err(error) => break error.records_lost(),
            }
        };
        assert_eq!(read + lost, first_segment, "read {read}, lost {lost}");
        assert!(!sealed[0].exists());
        // The next segment is read as usual.
        assert_eq!(number(&spool.pop().unwrap().unwrap()), first_segment as i64);
        assert_eq!(spool.len(), n as u64 - first_segment - 1);
    }

    #[test]
    fn a_clean_stop_inside_a_sealed_segment_resumes_there() {
        let dir = tempfile::tempdir().unwrap();
        let logger = logger();
        let mut n = 0;
        {
            let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
            while sealed_files(dir.path()).len() < 2 {
                spool.push(&record(&logger, n)).unwrap();
                n += 1;
            }
            for expected in 0..5 {
                assert_eq!(number(&spool.pop().unwrap().unwrap()), expected);
            }
            spool.close().unwrap();
        }
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.inherited(), n as u64 - 5);
        let back: Vec<i64> = std::iter::from_fn(|| spool.pop())
            .map(|r| number(&r.unwrap()))
            .collect();
        assert_eq!(back, (5..n).collect::<Vec<_>>());
        assert_eq!(segments(dir.path()), 0);
    }

    #[test]
    fn a_crash_while_sealing_leaves_a_readable_spool() {
        let dir = tempfile::tempdir().unwrap();
        let logger = logger();
        let mut n = 0;
        {
            let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
            while sealed_files(dir.path()).is_empty() {
                spool.push(&record(&logger, n)).unwrap();
                n += 1;
            }
            spool.close().unwrap();
        }
        // As if the agent died after the rename and before deleting the raw
        // copy, with another segment's compression half written.
        let sealed = &sealed_files(dir.path())[0];
        let raw = dir.path().join(format!("{:020}{SEGMENT_SUFFIX}", 0));
        fs::write(&raw, {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(File::open(sealed).unwrap())
                .read_to_end(&mut plain)
                .unwrap();
            plain
        })
        .unwrap();
        fs::write(
            dir.path().join("00000000000000000009-3.otlp.gz.tmp"),
            b"partial",
        )
        .unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.inherited(), n as u64);
        assert!(!raw.exists());
        let back: Vec<i64> = std::iter::from_fn(|| spool.pop())
            .map(|r| number(&r.unwrap()))
            .collect();
        assert_eq!(back, (0..n).collect::<Vec<_>>());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "only the lock is left"
        );
    }

    #[test]
    fn zeros_at_the_end_of_a_segment_are_not_records() {
        // A machine crash can leave a file extended with zeros.
        let dir = tempfile::tempdir().unwrap();
        let logger = logger();
        {
            let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
            spool.push(&record(&logger, 1)).unwrap();
            spool.close().unwrap();
        }
        let segment = dir.path().join(format!("{:020}{SEGMENT_SUFFIX}", 0));
        let whole = fs::metadata(&segment).unwrap().len();
        let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
        file.write_all(&[0; 64]).unwrap();
        drop(file);
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!((spool.inherited(), spool.damaged_at_open()), (1, 1));
        assert_eq!(fs::metadata(&segment).unwrap().len(), whole);
        assert_eq!(number(&spool.pop().unwrap().unwrap()), 1);
        assert!(spool.pop().is_none());
    }

    #[test]
    fn a_damaged_segment_still_being_written_is_dropped_and_a_new_one_started() {
        let dir = tempfile::tempdir().unwrap();
        let logger = logger();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        for n in 0..3 {
            spool.push(&record(&logger, n)).unwrap();
        }
        spool.flush().unwrap();
        let path = dir.path().join(format!("{:020}{SEGMENT_SUFFIX}", 0));
        let mut bytes = fs::read(&path).unwrap();
        let first = 8 + u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        bytes[first + 30] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        assert_eq!(number(&spool.pop().unwrap().unwrap()), 0);
        let error = spool.pop().unwrap().unwrap_err();
        assert_eq!(error.records_lost(), 2, "{error}");
        assert!(error.to_string().contains("checksum"), "{error}");
        assert!(spool.is_empty() && !path.exists());
        // Writing goes on, in a new segment, and reads back correctly.
        spool.push(&record(&logger, 3)).unwrap();
        assert_eq!(number(&spool.pop().unwrap().unwrap()), 3);
    }

    #[test]
    fn a_closed_spool_refuses_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.close().unwrap();
        let error = spool.push(&record(&logger(), 0)).unwrap_err();
        assert!(matches!(error, SpoolError::Closed), "{error}");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(u8),
        Pop(u8),
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<u8>().prop_map(Op::Push),
            3 => any::<u8>().prop_map(Op::Pop),
            1 => Just(Op::Restart),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Pushes, pops and clean restarts in any order behave like a FIFO
        /// queue, and the files hold exactly what is waiting.
        #[test]
        fn behaves_like_a_queue_across_restarts(ops in proptest::collection::vec(op(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let logger = logger();
            let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
            let mut model = VecDeque::new();
            let mut next = 0;
            for op in ops {
                match op {
                    Op::Push(k) => for _ in 0..k {
                        spool.push(&record(&logger, next)).unwrap();
                        model.push_back(next);
                        next += 1;
                    },
                    Op::Pop(k) => for _ in 0..k {
                        let got = spool.pop().map(|r| number(&r.unwrap()));
                        prop_assert_eq!(got, model.pop_front());
                    },
                    Op::Restart => {
                        spool.close().unwrap();
                        drop(spool);
                        spool = Spool::open(dir.path(), 1 << 20).unwrap();
                        prop_assert_eq!(spool.inherited(), model.len() as u64);
                    }
                }
                prop_assert_eq!(spool.len(), model.len() as u64);
            }
            spool.flush().unwrap();
            if model.is_empty() {
                prop_assert_eq!(segments(dir.path()), 0);
            }
        }
    }
}
