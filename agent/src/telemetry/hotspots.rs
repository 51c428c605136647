//! Hot spots (`[hot_spots]`): OTel metrics of the mappings themselves, so a
//! dashboard shows who maps how much without storing one record per call.
//!
//! Every event read (before `[volume]`, admission or export decide its
//! record's fate) adds one to `mapwatch.mappings` and its length to
//! `mapwatch.mappings.bytes` for (`process.executable.name`,
//! `mapwatch.event`, `mapwatch.mapping.kind`, `mapwatch.prot.class`), and a
//! failed do_mmap one to `mapwatch.mappings.failed` for (name, `error.type`).
//!
//! **Cardinality.** Names are thread names (`comm`), which any process sets:
//! unbounded. The first `max_executables` distinct names get series of their
//! own; every later one is counted under `other`. Not a "top N by volume":
//! these are cumulative counters, and a name cannot leave its series for
//! `other` (or back) without breaking monotonicity. The other attributes
//! are fixed sets: 3 events x 3 kinds x 8 protection classes, and errno
//! names (at most ~130). So at most (`max_executables` + 1) x 72 series per
//! metric.
//!
//! Cost on the reader's thread: one uncontended lock and two small hash
//! lookups per event, no allocation but for a new series.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mapwatch_kernel::abi::{COMM_LEN, Event, FileSource};
use opentelemetry::KeyValue;

use super::metrics::Observations;

/// Attribute: the event kind.
const EVENT: &str = "mapwatch.event";
/// Attribute: file-backed, anonymous or shared memory.
const KIND: &str = "mapwatch.mapping.kind";
/// Attribute: the protection, as letters.
const PROT: &str = "mapwatch.prot.class";
/// Attribute: the executable's name (semconv).
const NAME: &str = "process.executable.name";
/// The name standing for every name over the cap.
pub const OTHER: &str = "other";

const EVENTS: [&str; 3] = [
    "mapwatch.do_mmap",
    "mapwatch.security_mmap_file",
    "mapwatch.security_file_mprotect",
];
const KINDS: [&str; 3] = ["file", "anonymous", "shared"];
const PROTS: [&str; 8] = ["none", "r", "w", "rw", "x", "rx", "wx", "rwx"];

/// `MAP_SHARED` and `MAP_SHARED_VALIDATE` (the mapping type bits).
const MAP_TYPE: u64 = 0x3;
const MAP_PRIVATE: u64 = 0x2;
/// `VM_SHARED` in the previous protection of a mprotect record.
const VM_SHARED: u64 = 0x8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    name: u16,
    event: u8,
    kind: u8,
    prot: u8,
}

#[derive(Debug, Default)]
struct Table {
    /// Names with series of their own; index 0 is `other`.
    names: Vec<Arc<str>>,
    ids: HashMap<[u8; COMM_LEN], u16>,
    series: HashMap<Key, (u64, u64)>,
    failed: HashMap<(u16, i32), u64>,
}

/// The hot-spot counters, shared by the reader (adding) and the metrics
/// callbacks (reading).
#[derive(Debug)]
pub struct HotSpots {
    max_names: usize,
    table: Mutex<Table>,
}

impl HotSpots {
    /// Counters keeping at most `max_names` names apart.
    pub fn new(max_names: usize) -> HotSpots {
        HotSpots {
            max_names,
            table: Mutex::new(Table {
                names: vec![Arc::from(OTHER)],
                ..Table::default()
            }),
        }
    }

    /// Counts `event` (process exits and execs are not mappings).
    pub fn observe(&self, event: &Event<'_>) {
        let (context, slot, kind, prot, bytes, error) = match event {
            Event::DoMmap(e) => {
                let kind = kind_of(e.flags, e.file.is_some() || asked_for_a_file(e.file_source));
                (&e.context, 0, kind, e.prot, e.len, e.error)
            }
            Event::SecurityMmapFile(e) => {
                let kind = kind_of(e.flags, e.file.is_some() || asked_for_a_file(e.file_source));
                (&e.context, 1, kind, e.prot, 0, None)
            }
            Event::SecurityFileMprotect(e) => {
                let kind = match (e.vma, &e.file) {
                    (Some((_, _, prev)), _) if prev & VM_SHARED != 0 => 2,
                    (_, Some(_)) => 0,
                    _ => 1,
                };
                let len = e.range.map_or(0, |(_, len)| len);
                (&e.context, 2, kind, e.reqprot, len, None)
            }
            Event::ProcessExit(_) | Event::ProcessExec(_) => return,
        };
        let Ok(mut t) = self.table.lock() else {
            return;
        };
        let name = match t.ids.get(&context.comm) {
            Some(&id) => id,
            None if t.names.len() <= self.max_names => {
                let id = t.names.len() as u16;
                let text: Arc<str> = Arc::from(&*String::from_utf8_lossy(context.comm()));
                t.names.push(text);
                t.ids.insert(context.comm, id);
                id
            }
            None => 0,
        };
        match error {
            Some(err) => *t.failed.entry((name, -err)).or_default() += 1,
            None => {
                let key = Key {
                    name,
                    event: slot,
                    kind,
                    prot: (prot & 0x7) as u8,
                };
                let entry = t.series.entry(key).or_default();
                entry.0 += 1;
                entry.1 += bytes;
            }
        }
    }

    /// Mappings and bytes per series, as metric observations.
    pub fn mappings(&self) -> (Observations, Observations) {
        let Ok(t) = self.table.lock() else {
            return Default::default();
        };
        let mut count = Vec::with_capacity(t.series.len());
        let mut bytes = Vec::with_capacity(t.series.len());
        for (key, &(n, b)) in &t.series {
            let attrs = vec![
                KeyValue::new(
                    NAME,
                    opentelemetry::StringValue::from(t.names[key.name as usize].clone()),
                ),
                KeyValue::new(EVENT, EVENTS[key.event as usize]),
                KeyValue::new(KIND, KINDS[key.kind as usize]),
                KeyValue::new(PROT, PROTS[key.prot as usize]),
            ];
            count.push((n, attrs.clone()));
            bytes.push((b, attrs));
        }
        (count, bytes)
    }

    /// Failed mappings per name and errno, as metric observations.
    pub fn failed(&self) -> Observations {
        let Ok(t) = self.table.lock() else {
            return Vec::new();
        };
        t.failed
            .iter()
            .map(|(&(name, errno), &n)| {
                (
                    n,
                    vec![
                        KeyValue::new(
                            NAME,
                            opentelemetry::StringValue::from(t.names[name as usize].clone()),
                        ),
                        KeyValue::new(
                            "error.type",
                            mapwatch_model::names::errno_name(errno).into_owned(),
                        ),
                    ],
                )
            })
            .collect()
    }
}

/// Whether a call whose file is not named asked for one (as the model's
/// `Target::of` decides): a failed call, or a mapping the kernel could not read.
fn asked_for_a_file(source: FileSource) -> bool {
    source.unresolved_reason().is_some()
}

/// 0 file, 1 anonymous, 2 shared (`MAP_SHARED`, file or not).
fn kind_of(flags: u64, has_file: bool) -> u8 {
    if flags & MAP_TYPE != 0 && flags & MAP_TYPE != MAP_PRIVATE {
        2
    } else if has_file && flags & 0x20 == 0 {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mapwatch_kernel::abi::{RawDoMmap, decode, encode};

    fn anon(comm: &[u8], prot: u64, len: u64, error: i32) -> Vec<u8> {
        let mut raw = RawDoMmap::default();
        raw.hdr.backend = encode::BACKEND_SYSCALL_TRACEPOINT;
        raw.hdr.comm[..comm.len()].copy_from_slice(comm);
        (raw.prot, raw.mmap_flags, raw.len, raw.error) = (prot, 0x22, len, error);
        encode::do_mmap(raw, b"")
    }

    fn value(obs: &[(u64, Vec<KeyValue>)], name: &str, prot: &str) -> u64 {
        obs.iter()
            .filter(|(_, a)| {
                a.iter()
                    .any(|kv| kv.key.as_str() == NAME && kv.value.as_str() == name)
                    && a.iter()
                        .any(|kv| kv.key.as_str() == PROT && kv.value.as_str() == prot)
            })
            .map(|(n, _)| *n)
            .sum()
    }

    #[test]
    fn counts_per_name_and_class_and_caps_the_names() {
        let h = HotSpots::new(2);
        for (comm, prot) in [(&b"a"[..], 3), (b"a", 3), (b"b", 7), (b"c", 3), (b"d", 3)] {
            h.observe(&decode(&anon(comm, prot, 4096, 0)).unwrap());
        }
        h.observe(&decode(&anon(b"a", 3, 4096, -12)).unwrap());
        let (count, bytes) = h.mappings();
        assert_eq!(value(&count, "a", "rw"), 2);
        assert_eq!(value(&bytes, "a", "rw"), 8192);
        assert_eq!(value(&count, "b", "rwx"), 1);
        assert_eq!(value(&count, OTHER, "rw"), 2, "c and d are over the cap");
        let failed = h.failed();
        assert_eq!(failed.len(), 1);
        assert!(failed[0].1.iter().any(|kv| kv.value.as_str() == "ENOMEM"));
    }
}
