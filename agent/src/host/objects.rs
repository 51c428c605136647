//! Facts about mapped files read from the files themselves: the ELF GNU
//! build id and, opt-in, the SHA-256 of the contents, once per file identity
//! (device, inode, ctime) and remembered in a bounded cache.
//!
//! **Which file is read.** The kernel's record names the mapped file by
//! identity and by a path relative to the mapping process's root. The agent
//! opens, in order:
//!
//! 1. `/proc/PID/map_files/START-END`: the very file of the mapping, even if
//!    it was renamed, replaced or deleted since, or lives in another mount
//!    namespace. Needs the mapping to still exist with exactly these bounds
//!    (`do_mmap`: the address and the length rounded to pages; a mapping
//!    merged with a neighbour or already unmapped is not found) and
//!    `CAP_SYS_ADMIN` (the agent runs as root for BPF).
//! 2. `/proc/PID/root/PATH`: the path as the process sees it (containers
//!    included). Racy: the path may name another file by now.
//!
//! Either way the opened file is checked with `fstat` against the kernel's
//! device, inode and ctime (nanoseconds): a mismatch (the path was replaced,
//! the file was modified since the mapping: a write changes ctime) gives no
//! facts (`identity_changed`, counted, not cached) rather than another
//! file's. What remains: a file modified in place *without* a ctime change
//! cannot be (every write updates ctime, short of a clock set back), and the
//! contents may change between the check and the read (a writer with the
//! file open); the mapping itself would then show other bytes too, and the
//! next identity is read again. btrfs and overlayfs report a per-subvolume
//! `st_dev` that differs from the kernel's superblock device: files there
//! read as `identity_changed` (docs/semantic-conventions.md notes the same
//! for `mmap.file.dev`).
//!
//! Failures are not cached (the next process mapping the file tries again);
//! hashing over the rate budget is retried at the next load.

use std::fs::File as StdFile;
use std::io::{Read, Seek, SeekFrom};
use std::num::NonZeroUsize;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use lru::LruCache;
use mapwatch_config::LibrariesConfig;
use mapwatch_kernel::abi::File;
use mapwatch_model::ObjectFacts;
use sha2::{Digest, Sha256};

/// A file's identity as the kernel reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// Kernel-internal device number (`major << 20 | minor`).
    pub dev: u32,
    /// Inode number.
    pub inode: u64,
    /// Inode change time, ns since the epoch.
    pub ctime_ns: u64,
}

impl FileIdentity {
    /// The identity of `file`.
    pub fn of(file: &File<'_>) -> FileIdentity {
        FileIdentity {
            dev: file.dev,
            inode: file.inode,
            ctime_ns: file.ctime_ns,
        }
    }

    /// Whether `meta` (from `fstat`) is this file.
    fn matches(&self, meta: &std::fs::Metadata) -> bool {
        let dev = meta.dev();
        let ctime_ns = (meta.ctime() as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(meta.ctime_nsec() as u64);
        libc::major(dev) == self.dev >> 20
            && libc::minor(dev) == self.dev & ((1 << 20) - 1)
            && meta.ino() == self.inode
            && ctime_ns == self.ctime_ns
    }
}

/// What reading files cost and what it could not do: counted where it
/// happens, exported as metrics (`mapwatch.libraries.*`).
#[derive(Debug, Default)]
pub struct ObjectStats {
    /// Facts found in the cache.
    pub cache_hits: AtomicU64,
    /// Facts read from a file.
    pub cache_misses: AtomicU64,
    /// Identities forgotten to make room (read again if mapped again).
    pub cache_evictions: AtomicU64,
    /// Files opened through `/proc/PID/map_files`.
    pub opened_map_files: AtomicU64,
    /// Files opened through `/proc/PID/root/PATH`.
    pub opened_root_path: AtomicU64,
    /// Files whose device, inode or ctime was not the mapped one.
    pub identity_changed: AtomicU64,
    /// Files that could not be opened or read.
    pub unreadable: AtomicU64,
    /// Bytes hashed.
    pub hashed_bytes: AtomicU64,
    /// Files not hashed: larger than `sha256_max_file_bytes`.
    pub hash_too_large: AtomicU64,
    /// Files not hashed: over `sha256_bytes_per_second`.
    pub hash_rate_limited: AtomicU64,
}

/// Reads and remembers [`ObjectFacts`].
pub struct ObjectReader {
    cache: LruCache<FileIdentity, Arc<ObjectFacts>>,
    sha256: bool,
    max_hash_bytes: u64,
    bucket: TokenBucket,
    stats: Arc<ObjectStats>,
}

impl ObjectReader {
    /// A reader with the limits of `config`, counting into `stats`.
    pub fn new(config: &LibrariesConfig, stats: Arc<ObjectStats>) -> ObjectReader {
        let cap = NonZeroUsize::new(config.cache_entries).unwrap_or(NonZeroUsize::MIN);
        ObjectReader {
            cache: LruCache::new(cap),
            sha256: config.sha256,
            max_hash_bytes: config.sha256_max_file_bytes,
            // The bucket holds one second of budget, and at least one file of
            // the largest size hashed (else such files could never be).
            bucket: TokenBucket::new(
                config.sha256_bytes_per_second,
                config
                    .sha256_bytes_per_second
                    .max(config.sha256_max_file_bytes),
            ),
            stats,
        }
    }

    /// The facts of `file`, mapped by process `pid` at `start..end` (`end`
    /// 0 when not known).
    pub fn facts(&mut self, pid: u32, file: &File<'_>, start: u64, end: u64) -> Arc<ObjectFacts> {
        let id = FileIdentity::of(file);
        if let Some(facts) = self.cache.get(&id) {
            let retry_hash = self.sha256 && facts.sha256_skipped == Some("rate_limited");
            if !retry_hash {
                self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                return facts.clone();
            }
        }
        self.stats.cache_misses.fetch_add(1, Ordering::Relaxed);
        let facts = Arc::new(self.read(pid, file, id, start, end));
        let cacheable = facts.build_id_missing != Some("identity_changed")
            && facts.build_id_missing != Some("unreadable");
        if cacheable
            && let Some((old, _)) = self.cache.push(id, facts.clone())
            && old != id
        {
            self.stats.cache_evictions.fetch_add(1, Ordering::Relaxed);
        }
        facts
    }

    /// Identities remembered now.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    fn open(&self, pid: u32, file: &File<'_>, id: FileIdentity, start: u64, end: u64) -> Opened {
        let mut seen = false;
        if end > start {
            let path = format!("/proc/{pid}/map_files/{start:x}-{end:x}");
            if let Ok(f) = StdFile::open(path) {
                match f.metadata() {
                    Ok(meta) if id.matches(&meta) => {
                        self.stats.opened_map_files.fetch_add(1, Ordering::Relaxed);
                        return Opened::Yes(f, meta.len());
                    }
                    Ok(_) => seen = true,
                    Err(_) => {}
                }
            }
        }
        if !file.path.starts_with(b"/") || file.path_truncated || file.deleted {
            return if seen { Opened::Changed } else { Opened::No };
        }
        let mut path = format!("/proc/{pid}/root").into_bytes();
        path.extend_from_slice(file.path);
        let path: std::ffi::OsString = std::os::unix::ffi::OsStringExt::from_vec(path);
        match StdFile::open(path) {
            Ok(f) => match f.metadata() {
                Ok(meta) if id.matches(&meta) => {
                    self.stats.opened_root_path.fetch_add(1, Ordering::Relaxed);
                    Opened::Yes(f, meta.len())
                }
                Ok(_) => Opened::Changed,
                Err(_) if seen => Opened::Changed,
                Err(_) => Opened::No,
            },
            Err(_) if seen => Opened::Changed,
            Err(_) => Opened::No,
        }
    }

    fn read(
        &mut self,
        pid: u32,
        file: &File<'_>,
        id: FileIdentity,
        start: u64,
        end: u64,
    ) -> ObjectFacts {
        let (mut f, size) = match self.open(pid, file, id, start, end) {
            Opened::Yes(f, size) => (f, size),
            Opened::Changed => {
                self.stats.identity_changed.fetch_add(1, Ordering::Relaxed);
                return missing("identity_changed", self.sha256);
            }
            Opened::No => {
                self.stats.unreadable.fetch_add(1, Ordering::Relaxed);
                return missing("unreadable", self.sha256);
            }
        };
        let mut facts = ObjectFacts {
            size: Some(size),
            ..ObjectFacts::default()
        };
        match build_id(&f) {
            Ok(Some(id)) => facts.build_id = Some(Arc::from(hex(&id))),
            Ok(None) => facts.build_id_missing = Some("no_build_id"),
            Err(why) => facts.build_id_missing = Some(why),
        }
        if self.sha256 {
            if size > self.max_hash_bytes {
                self.stats.hash_too_large.fetch_add(1, Ordering::Relaxed);
                facts.sha256_skipped = Some("too_large");
            } else if !self.bucket.take(size, Instant::now()) {
                self.stats.hash_rate_limited.fetch_add(1, Ordering::Relaxed);
                facts.sha256_skipped = Some("rate_limited");
            } else {
                match sha256(&mut f, size) {
                    Some(hash) => {
                        self.stats.hashed_bytes.fetch_add(size, Ordering::Relaxed);
                        facts.sha256 = Some(Arc::from(hash));
                    }
                    None => {
                        self.stats.unreadable.fetch_add(1, Ordering::Relaxed);
                        facts.sha256_skipped = Some("unreadable");
                    }
                }
            }
        }
        facts
    }
}

enum Opened {
    Yes(StdFile, u64),
    /// A file was found, but not the mapped one.
    Changed,
    No,
}

fn missing(why: &'static str, sha256: bool) -> ObjectFacts {
    ObjectFacts {
        build_id_missing: Some(why),
        sha256_skipped: sha256.then_some(why),
        ..ObjectFacts::default()
    }
}

/// The GNU build id in the ELF notes of `file` (read through a cache of the
/// parts needed: headers and notes, not the whole file).
pub fn build_id(file: &StdFile) -> Result<Option<Vec<u8>>, &'static str> {
    use object::Object as _;
    let data = object::ReadCache::new(file);
    let object = object::File::parse(&data).map_err(|_| "not_elf")?;
    if !matches!(object.format(), object::BinaryFormat::Elf) {
        return Err("not_elf");
    }
    match object.build_id() {
        Ok(id) => Ok(id.map(<[u8]>::to_vec)),
        Err(_) => Err("not_elf"),
    }
}

/// SHA-256 of `size` bytes of `file` from its start, lowercase hex; `None`
/// if reading failed or the file was not `size` bytes long.
fn sha256(file: &mut StdFile, size: u64) -> Option<String> {
    file.seek(SeekFrom::Start(0)).ok()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    (total == size).then(|| hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Whether `file` is the executable of process `pid` (`/proc/PID/exe` has
/// its device and inode).
pub fn is_executable_of(pid: u32, file: &File<'_>) -> bool {
    std::fs::metadata(format!("/proc/{pid}/exe")).is_ok_and(|m| {
        m.ino() == file.inode
            && libc::major(m.dev()) == file.dev_major()
            && libc::minor(m.dev()) == file.dev_minor()
    })
}

/// Bytes allowed per second, with a burst of `capacity`.
struct TokenBucket {
    rate: u64,
    capacity: u64,
    tokens: u64,
    last: Option<Instant>,
}

impl TokenBucket {
    fn new(rate: u64, capacity: u64) -> TokenBucket {
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            last: None,
        }
    }

    fn take(&mut self, n: u64, now: Instant) -> bool {
        if let Some(last) = self.last {
            let earned = (now.duration_since(last).as_secs_f64() * self.rate as f64) as u64;
            self.tokens = self.tokens.saturating_add(earned).min(self.capacity);
        }
        self.last = Some(now);
        if n > self.tokens {
            return false;
        }
        self.tokens -= n;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_bucket_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 100);
        assert!(b.take(100, t0));
        assert!(!b.take(1, t0));
        assert!(b.take(50, t0 + Duration::from_millis(500)));
        assert!(!b.take(10, t0 + Duration::from_millis(500)));
    }

    #[test]
    fn this_test_binary_has_the_build_id_readelf_prints() {
        let exe = std::env::current_exe().unwrap();
        let Ok(out) = std::process::Command::new("readelf")
            .arg("-n")
            .arg(&exe)
            .output()
        else {
            println!("SKIP: no readelf");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let expected = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Build ID: "))
            .map(str::to_owned);
        let ours = build_id(&StdFile::open(&exe).unwrap())
            .unwrap()
            .map(|b| hex(&b));
        assert_eq!(ours, expected);
    }

    #[test]
    fn a_text_file_is_not_elf() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), b"#!/bin/sh\necho hi\n").unwrap();
        assert_eq!(build_id(&StdFile::open(f.path()).unwrap()), Err("not_elf"));
    }
}
