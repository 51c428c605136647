//! Opening a spool: the directory lock, the segments an earlier run left
//! (torn tails cut, leftovers of an interrupted seal tidied), and the
//! position a clean stop recorded.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, ErrorKind, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use super::error::io;
use super::format::{
    FRAME_HEADER, POSITION_FILE, READ_BUFFER, SEALED_SUFFIX, SEGMENT_SUFFIX, read_frame,
    segment_reader,
};
use super::{Cursor, Segment, Spool, SpoolError};

/// The segment files found in a spool directory, after tidying.
struct Found {
    /// Raw segments by number.
    raw: BTreeSet<u64>,
    /// Sealed segments by number, with their record count.
    sealed: BTreeMap<u64, u64>,
}

impl Found {
    /// Every segment number, oldest first.
    fn numbers(&self) -> Vec<u64> {
        let mut numbers: Vec<u64> = self.raw.iter().chain(self.sealed.keys()).copied().collect();
        numbers.sort_unstable();
        numbers
    }
}

impl Spool {
    /// Opens (creating with mode 0700) the spool in `dir`, holding at most
    /// `max_bytes`, and takes over the records an earlier run left there.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        let lock = lock_directory(dir)?;
        let found = find_segments(dir)?;
        let numbers = found.numbers();
        let position_path = dir.join(POSITION_FILE);
        let position = read_position(&position_path);
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
            // The position applies to the first segment still holding records.
            let position = position
                .filter(|&(n, _)| n == number && spool.segments.is_empty())
                .map(|(_, offset)| offset);
            match found.sealed.get(&number) {
                Some(&records) => spool.take_over_sealed(number, records, position)?,
                None => spool.take_over_raw(number, position)?,
            }
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

    /// Takes over sealed segment `number`, skipping to `position` (a clean
    /// stop inside it) by reading frames.
    fn take_over_sealed(
        &mut self,
        number: u64,
        mut records: u64,
        position: Option<u64>,
    ) -> Result<(), SpoolError> {
        let path = self.sealed_path(number, records);
        let bytes = fs::metadata(&path).map_err(io("read", &path))?.len();
        if let Some(offset) = position.filter(|&offset| offset > 0) {
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
            self.cursor = Some(Cursor {
                number,
                file,
                offset: at,
            });
        }
        self.add_found(Segment {
            number,
            path,
            bytes,
            records,
            sealed: true,
        });
        Ok(())
    }

    /// Takes over raw segment `number` from `position`, cutting a torn tail;
    /// an empty one is deleted.
    fn take_over_raw(&mut self, number: u64, position: Option<u64>) -> Result<(), SpoolError> {
        let path = self.segment_path(number);
        let start = position.unwrap_or(0);
        let (records, bytes, damaged) = scan(&path, start)?;
        self.damaged_at_open += damaged;
        if records == 0 {
            fs::remove_file(&path).map_err(io("delete", &path))?;
            return Ok(());
        }
        if start > 0 {
            let mut file = File::open(&path).map_err(io("open", &path))?;
            file.seek(SeekFrom::Start(start))
                .map_err(io("read", &path))?;
            self.cursor = Some(Cursor {
                number,
                file: segment_reader(file, false),
                offset: start,
            });
        }
        self.add_found(Segment {
            number,
            path,
            bytes,
            records,
            sealed: false,
        });
        Ok(())
    }

    fn add_found(&mut self, segment: Segment) {
        self.records += segment.records;
        self.bytes += segment.bytes;
        self.segments.push_back(segment);
    }
}

/// Creates `dir` if needed and takes its lock: one agent per spool.
fn lock_directory(dir: &Path) -> Result<File, SpoolError> {
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
    Ok(lock)
}

/// Lists the segments in `dir`, deleting what an interrupted seal left:
/// a `.tmp` file, or the raw copy of a segment that was sealed.
fn find_segments(dir: &Path) -> Result<Found, SpoolError> {
    let mut found = Found {
        raw: BTreeSet::new(),
        sealed: BTreeMap::new(),
    };
    for entry in fs::read_dir(dir).map_err(io("list", dir))? {
        let name = entry.map_err(io("list", dir))?.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(SEALED_SUFFIX) {
            if let Some((number, records)) = stem.split_once('-')
                && let (Ok(number), Ok(records)) = (number.parse::<u64>(), records.parse::<u64>())
            {
                found.sealed.insert(number, records);
            }
        } else if let Some(number) = name
            .strip_suffix(SEGMENT_SUFFIX)
            .and_then(|n| n.parse::<u64>().ok())
        {
            found.raw.insert(number);
        } else if name.ends_with(".tmp") {
            // A segment being sealed when the agent stopped: the raw
            // one is still there.
            let path = dir.join(&*name);
            fs::remove_file(&path).map_err(io("delete", &path))?;
        }
    }
    for number in found.sealed.keys() {
        // Sealed, but the agent stopped before deleting the raw copy.
        if found.raw.remove(number) {
            let path = dir.join(format!("{number:020}{SEGMENT_SUFFIX}"));
            fs::remove_file(&path).map_err(io("delete", &path))?;
        }
    }
    Ok(found)
}

/// The (segment, offset) a clean stop recorded, if any.
fn read_position(path: &Path) -> Option<(u64, u64)> {
    let text = fs::read_to_string(path).ok()?;
    let (number, offset) = text.trim().split_once(' ')?;
    Some((number.parse::<u64>().ok()?, offset.parse::<u64>().ok()?))
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
