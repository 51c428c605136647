//! Shaping: what the reader makes of a decoded event beyond its one record.
//!
//! * **Library audit** (`[libraries]`): the first executable mapping of a
//!   file (by identity) in a process makes a `mapwatch.shared_object_loaded`
//!   record with the file's build id (read by `crate::host::objects`).
//! * **Volume** (`[volume]`): per event kind, `all` keeps every record,
//!   `suspicious` only those with a reason, `first` one per (process, file
//!   identity or anonymous, protection) and counts the rest, reported as a
//!   `mapwatch.mapping_repeated` record per key when the process exits or
//!   execs (or its state is evicted).
//! * **Exceptions** (`[[exceptions]]`): the matching exceptions of a record
//!   with reasons (the model decides; this only holds them).
//!
//! State is per process, keyed by (pid, start time), bounded twice (processes
//! remembered, keys per process) and dropped at the process's exit or exec.
//! Every record held back and every eviction is counted here, in
//! [`PipelineStats`]: nothing leaves silently. Held back is not lost: the
//! exit line reports it with the other records not sent on purpose.

use std::collections::HashMap;
use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use lru::LruCache;
use mapwatch_config::{Config, VolumeMode};
use mapwatch_kernel::abi::{Context, Event, File};
use mapwatch_model::{
    EVENT_DO_MMAP, EVENT_SECURITY_FILE_MPROTECT, EVENT_SECURITY_MMAP_FILE, Exception, Exceptions,
    Excused, ObjectFacts, ProcessInfo, Reasons, Repeats, comm_of, executable_file_mapping,
    file_strings,
};

use crate::host::objects::{FileIdentity, ObjectReader, is_executable_of};
use crate::telemetry::PipelineStats;

/// A process, as long as it lives: pid and start time.
type ProcessKey = (u32, u64);

/// Everything the shaper does, and its state.
pub struct Shaper {
    exceptions: Exceptions,
    volume: [VolumeMode; 3],
    first: Option<First>,
    loaded: Option<Loaded>,
    stats: Arc<PipelineStats>,
}

/// A `shared_object_loaded` to make: the facts and whether the file is the
/// process's executable.
pub struct SharedObject {
    /// The file's facts.
    pub facts: Arc<ObjectFacts>,
    /// The file is the process's own executable.
    pub is_executable: bool,
}

impl Shaper {
    /// The shaper `config` asks for (everything off by default), counting
    /// into `stats`.
    pub fn new(config: &Config, stats: Arc<PipelineStats>) -> Shaper {
        let objects = stats.objects.clone();
        let exceptions = Exceptions(
            config
                .exceptions
                .iter()
                .map(|e| Exception {
                    name: Arc::from(e.name.as_str()),
                    reasons: e.reasons.iter().filter_map(|r| Reasons::from_name(r)).fold(
                        Reasons::empty(),
                        |mut all, r| {
                            all.insert(r);
                            all
                        },
                    ),
                    executable_paths: e.executable_paths.clone(),
                    comms: e.comms.clone(),
                    cgroups: e.cgroups.clone(),
                    container_ids: e.container_ids.clone(),
                })
                .collect(),
        );
        let v = &config.volume;
        let volume = [v.do_mmap, v.security_mmap_file, v.security_file_mprotect];
        let first = volume.contains(&VolumeMode::First).then(|| First {
            processes: LruCache::new(
                NonZeroUsize::new(v.first_processes).unwrap_or(NonZeroUsize::MIN),
            ),
            per_process: v.first_keys_per_process,
            evicted: Vec::new(),
        });
        let l = &config.libraries;
        let loaded = l.shared_object_loaded.then(|| Loaded {
            processes: LruCache::new(NonZeroUsize::new(l.processes).unwrap_or(NonZeroUsize::MIN)),
            per_process: l.files_per_process,
            reader: ObjectReader::new(l, objects),
        });
        Shaper {
            exceptions,
            volume,
            first,
            loaded,
            stats,
        }
    }

    /// Whether the shaper changes anything (else the reader skips it).
    pub fn is_active(&self) -> bool {
        !self.exceptions.0.is_empty()
            || self.loaded.is_some()
            || self.volume.iter().any(|m| *m != VolumeMode::All)
    }

    /// The exceptions matching `reasons` of `event`'s process.
    pub fn excuse(
        &self,
        reasons: Reasons,
        context: &Context,
        info: Option<&ProcessInfo>,
    ) -> Option<Excused> {
        self.exceptions.judge(reasons, context.comm(), info)
    }

    /// A `shared_object_loaded` for `event` when it is the first executable
    /// mapping of its file in its process.
    pub fn shared_object(&mut self, event: &Event<'_>) -> Option<SharedObject> {
        let loaded = self.loaded.as_mut()?;
        let (context, file, addr, _) = executable_file_mapping(event)?;
        let key = (context.pid, context.process_start_ns);
        let id = FileIdentity::of(file);
        let files = match loaded.processes.get_mut(&key) {
            Some(files) => files,
            None => {
                if let Some((old, _)) = loaded.processes.push(key, HashSet::new())
                    && old != key
                {
                    self.stats
                        .loaded_processes_evicted
                        .fetch_add(1, Ordering::Relaxed);
                }
                loaded.processes.get_mut(&key)?
            }
        };
        if files.contains(&id) {
            return None;
        }
        if files.len() < loaded.per_process {
            files.insert(id);
        } else {
            // Reported again at its next load: a duplicate, not a loss.
            self.stats.loaded_untracked.fetch_add(1, Ordering::Relaxed);
        }
        let end = match event {
            Event::DoMmap(e) => addr + e.len.div_ceil(4096) * 4096,
            Event::SecurityFileMprotect(e) => e.vma.map_or(0, |(_, end, _)| end),
            _ => 0,
        };
        let start = match event {
            Event::SecurityFileMprotect(e) => e.vma.map_or(addr, |(s, _, _)| s),
            _ => addr,
        };
        let facts = loaded.reader.facts(context.pid, file, start, end);
        Some(SharedObject {
            facts,
            is_executable: is_executable_of(context.pid, file),
        })
    }

    /// Whether `event`'s record is sent under `[volume]`; a record held
    /// back is counted by why.
    pub fn keep(&mut self, event: &Event<'_>, reasons: Reasons) -> bool {
        let (slot, name) = match event {
            Event::DoMmap(_) => (0, EVENT_DO_MMAP),
            Event::SecurityMmapFile(_) => (1, EVENT_SECURITY_MMAP_FILE),
            Event::SecurityFileMprotect(_) => (2, EVENT_SECURITY_FILE_MPROTECT),
            _ => return true,
        };
        match self.volume[slot] {
            VolumeMode::All => true,
            VolumeMode::Suspicious => {
                if reasons.is_empty() {
                    self.stats
                        .volume_not_suspicious
                        .fetch_add(1, Ordering::Relaxed);
                    false
                } else {
                    true
                }
            }
            // A record with a reason always goes out: a repeat of an earlier
            // suspicious key must not let the next one pass unseen.
            VolumeMode::First if !reasons.is_empty() => true,
            VolumeMode::First => {
                let Some(first) = &mut self.first else {
                    return true;
                };
                first.keep(event, slot as u8, name, &self.stats)
            }
        }
    }

    /// Forgets a process that exited or exec'd; its repeats are reported.
    pub fn process_gone(&mut self, context: &Context) -> Vec<Repeats> {
        let key = (context.pid, context.process_start_ns);
        if let Some(loaded) = &mut self.loaded {
            loaded.processes.pop(&key);
        }
        let Some(first) = &mut self.first else {
            return Vec::new();
        };
        let mut out = std::mem::take(&mut first.evicted);
        if let Some(keys) = first.processes.pop(&key) {
            out.extend(keys.into_values().filter(|r| r.count > 0));
        }
        out
    }

    /// Repeats of processes whose state was evicted, to report now.
    pub fn take_evicted(&mut self) -> Vec<Repeats> {
        self.first
            .as_mut()
            .map(|f| std::mem::take(&mut f.evicted))
            .unwrap_or_default()
    }

    /// Repeats held for every process (at shutdown).
    pub fn drain_all(&mut self) -> Vec<Repeats> {
        let Some(first) = &mut self.first else {
            return Vec::new();
        };
        let mut out = std::mem::take(&mut first.evicted);
        while let Some((_, keys)) = first.processes.pop_lru() {
            out.extend(keys.into_values().filter(|r| r.count > 0));
        }
        out
    }
}

/// The key of `first`: event kind, file identity (zero for anonymous memory
/// or a file not named) and protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FirstKey {
    slot: u8,
    file: Option<FileIdentity>,
    prot: u64,
}

struct First {
    processes: LruCache<ProcessKey, HashMap<FirstKey, Repeats>>,
    per_process: usize,
    /// Repeats of evicted processes, reported at the next exit or drain.
    evicted: Vec<Repeats>,
}

impl First {
    fn keep(
        &mut self,
        event: &Event<'_>,
        slot: u8,
        name: &'static str,
        stats: &PipelineStats,
    ) -> bool {
        let (context, file, prot): (&Context, Option<&File<'_>>, u64) = match event {
            Event::DoMmap(e) => (&e.context, e.file.as_ref(), e.prot),
            Event::SecurityMmapFile(e) => (&e.context, e.file.as_ref(), e.prot),
            Event::SecurityFileMprotect(e) => (&e.context, e.file.as_ref(), e.reqprot),
            _ => return true,
        };
        let key = FirstKey {
            slot,
            file: file.map(FileIdentity::of),
            prot,
        };
        let pkey = (context.pid, context.process_start_ns);
        if !self.processes.contains(&pkey)
            && let Some((old, keys)) = self.processes.push(pkey, HashMap::new())
            && old != pkey
        {
            stats
                .first_processes_evicted
                .fetch_add(1, Ordering::Relaxed);
            self.evicted
                .extend(keys.into_values().filter(|r| r.count > 0));
        }
        let Some(keys) = self.processes.get_mut(&pkey) else {
            return true;
        };
        if let Some(r) = keys.get_mut(&key) {
            r.count += 1;
            r.last_ktime_ns = context.ktime_ns;
            stats.volume_repeat.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if keys.len() >= self.per_process {
            // Not remembered: sent, every time (counted).
            stats.first_untracked.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        keys.insert(
            key,
            Repeats {
                pid: context.pid,
                comm: comm_of(context),
                event: name,
                file: file.map(file_strings),
                prot,
                count: 0,
                last_ktime_ns: context.ktime_ns,
            },
        );
        true
    }
}

struct Loaded {
    processes: LruCache<ProcessKey, HashSet<FileIdentity>>,
    per_process: usize,
    reader: ObjectReader,
}

#[cfg(test)]
mod tests {
    use super::*;
    use mapwatch_kernel::abi::{RawDoMmap, decode, encode};

    /// A do_mmap of `inode` (0: anonymous) with `prot`, by process `pid`.
    fn mapping(pid: u32, inode: u64, prot: u64) -> Vec<u8> {
        let mut raw = RawDoMmap::default();
        raw.hdr.backend = encode::BACKEND_SYSCALL_TRACEPOINT;
        raw.hdr.tgid = pid;
        raw.hdr.process_start_ns = 1000 + u64::from(pid);
        (raw.prot, raw.len, raw.addr) = (prot, 4096, 0x10000);
        if inode == 0 {
            raw.mmap_flags = 0x22;
            return encode::do_mmap(raw, b"");
        }
        raw.mmap_flags = 0x2;
        raw.file.inode = inode;
        raw.file.dev = 8 << 20;
        raw.file.flags = encode::file_flags(true, false, false);
        encode::do_mmap(raw, b"/data")
    }

    fn shaper(edit: impl FnOnce(&mut Config)) -> (Shaper, Arc<PipelineStats>) {
        let mut config = Config::default();
        config.volume.do_mmap = VolumeMode::First;
        edit(&mut config);
        let stats = Arc::new(PipelineStats::default());
        (Shaper::new(&config, stats.clone()), stats)
    }

    fn keep(s: &mut Shaper, bytes: &[u8]) -> bool {
        let event = decode(bytes).unwrap();
        let reasons = mapwatch_model::event_reasons(&event);
        s.keep(&event, reasons)
    }

    #[test]
    fn first_keeps_one_per_key_and_counts_the_rest() {
        let (mut s, stats) = shaper(|_| {});
        assert!(keep(&mut s, &mapping(1, 7, 1)));
        assert!(!keep(&mut s, &mapping(1, 7, 1)));
        assert!(!keep(&mut s, &mapping(1, 7, 1)));
        assert!(keep(&mut s, &mapping(1, 7, 5)), "another protection");
        assert!(keep(&mut s, &mapping(1, 8, 1)), "another file");
        assert!(keep(&mut s, &mapping(2, 7, 1)), "another process");
        assert!(keep(&mut s, &mapping(1, 0, 3)), "anonymous memory");
        assert!(!keep(&mut s, &mapping(1, 0, 3)));
        assert_eq!(stats.volume_repeat.load(Ordering::Relaxed), 3);
        let bytes = mapping(1, 7, 1);
        let event = decode(&bytes).unwrap();
        let mut repeats = s.process_gone(event.context());
        repeats.sort_by_key(|r| r.count);
        let counts: Vec<u64> = repeats.iter().map(|r| r.count).collect();
        assert_eq!(counts, [1, 2], "only keys that repeated are reported");
        assert!(
            keep(&mut s, &mapping(1, 7, 1)),
            "a new lifetime starts over"
        );
    }

    #[test]
    fn first_state_is_bounded_and_every_overflow_counted() {
        let (mut s, stats) = shaper(|c| {
            c.volume.first_processes = 2;
            c.volume.first_keys_per_process = 2;
        });
        assert!(keep(&mut s, &mapping(1, 7, 1)));
        assert!(!keep(&mut s, &mapping(1, 7, 1)));
        assert!(keep(&mut s, &mapping(1, 8, 1)));
        // The table of process 1 is full: a third key passes, every time.
        assert!(keep(&mut s, &mapping(1, 9, 1)));
        assert!(keep(&mut s, &mapping(1, 9, 1)));
        assert_eq!(stats.first_untracked.load(Ordering::Relaxed), 2);
        // A third process evicts the least recently seen, whose repeats
        // are handed out at once.
        assert!(keep(&mut s, &mapping(2, 7, 1)));
        assert!(keep(&mut s, &mapping(3, 7, 1)));
        assert_eq!(stats.first_processes_evicted.load(Ordering::Relaxed), 1);
        let evicted = s.take_evicted();
        assert_eq!(evicted.len(), 1);
        assert_eq!((evicted[0].pid, evicted[0].count), (1, 1));
    }

    #[test]
    fn suspicious_keeps_only_records_with_a_reason() {
        let (mut s, stats) = shaper(|c| c.volume.do_mmap = VolumeMode::Suspicious);
        assert!(!keep(&mut s, &mapping(1, 7, 1)));
        assert!(keep(&mut s, &mapping(1, 0, 7)), "RWX anonymous");
        assert_eq!(stats.volume_not_suspicious.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn defaults_leave_the_shaper_out() {
        let stats = Arc::new(PipelineStats::default());
        assert!(!Shaper::new(&Config::default(), stats).is_active());
    }
}
