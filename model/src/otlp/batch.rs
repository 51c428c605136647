//! [`Batch`]: encoded records grouped by resource, and the OTLP request
//! they become.

use std::collections::HashMap;

use super::record::EncodedRecord;
use super::wire::{len_field_len, put_bytes, put_len_header};

/// One record in a batch: where its `LogRecord` bytes are, its resource
/// group, and the next record of that group.
#[derive(Debug, Clone, Copy)]
struct Entry {
    start: u32,
    len: u32,
    group: u32,
    next: u32,
}

/// Records sharing one resource (one process, as the kernel saw it).
#[derive(Debug, Clone, Copy)]
struct Group {
    hash: u64,
    start: u32,
    len: u32,
    first: u32,
    last: u32,
    /// Bytes of the `log_records` fields of this group's records.
    logs_len: usize,
}

const NONE: u32 = u32::MAX;

/// Encoded log records, kept in arrival order and grouped by their resource
/// bytes: a request has one `ResourceLogs` per process (or container), as
/// the semantic conventions intend, not one per record.
///
/// ```
/// use mapwatch_model::otlp::{Batch, EncodedRecord, Preamble};
/// use opentelemetry::logs::LogRecord as _;
///
/// let mut batch = Batch::default();
/// let mut record = EncodedRecord::default();
/// for pid in [1, 2, 1] {
///     record.clear();
///     record.add_attribute("process.pid", pid);
///     record.add_attribute("mmap.len", 4096);
///     batch.push(&record);
/// }
/// assert_eq!((batch.len(), batch.resources()), (3, 2));
/// let mut request = Vec::new();
/// batch.write_request(&Preamble::default(), &mut request);
/// assert!(!request.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct Batch {
    arena: Vec<u8>,
    records: Vec<Entry>,
    groups: Vec<Group>,
    /// First group of each resource hash.
    index: HashMap<u64, u32>,
}

/// The parts of a request that are the same in every batch: the agent's own
/// resource attributes and the instrumentation scope, already encoded.
#[derive(Debug, Clone, Default)]
pub struct Preamble {
    /// `Resource.attributes` fields describing the agent and its host.
    pub resource: Vec<u8>,
    /// The content of the `InstrumentationScope` message.
    pub scope: Vec<u8>,
}

/// A multiply-mix over 8 bytes at a time: enough to tell processes apart
/// in a batch (equal hashes are compared byte by byte).
fn hash(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ bytes.len() as u64;
    let (words, rest) = bytes.as_chunks::<8>();
    for word in words {
        h = (h ^ u64::from_le_bytes(*word))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
    for b in rest {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Batch {
    /// An empty batch with room for `records` records.
    pub fn with_capacity(records: usize) -> Batch {
        Batch {
            arena: Vec::with_capacity(records * 512),
            records: Vec::with_capacity(records),
            groups: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Distinct resources (processes) in the batch.
    pub fn resources(&self) -> usize {
        self.groups.len()
    }

    fn bytes(&self, start: u32, len: u32) -> &[u8] {
        &self.arena[start as usize..(start + len) as usize]
    }

    fn append(&mut self, bytes: &[u8]) -> (u32, u32) {
        let start = self.arena.len() as u32;
        self.arena.extend_from_slice(bytes);
        (start, bytes.len() as u32)
    }

    /// The group of `resource`, made if new.
    fn group(&mut self, resource: &[u8]) -> u32 {
        // Records come in runs from one process: the last record's group
        // first, by comparing bytes (no hash).
        if let Some(last) = self.records.last() {
            let g = self.groups[last.group as usize];
            if self.bytes(g.start, g.len) == resource {
                return last.group;
            }
        }
        let h = hash(resource);
        if let Some(&first) = self.index.get(&h) {
            let same = (first as usize..self.groups.len()).find(|&g| {
                let group = self.groups[g];
                group.hash == h && self.bytes(group.start, group.len) == resource
            });
            if let Some(g) = same {
                return g as u32;
            }
        }
        let (start, len) = self.append(resource);
        let g = self.groups.len() as u32;
        self.groups.push(Group {
            hash: h,
            start,
            len,
            first: NONE,
            last: NONE,
            logs_len: 0,
        });
        self.index.entry(h).or_insert(g);
        g
    }

    /// Appends a record (its bytes are copied).
    pub fn push(&mut self, record: &EncodedRecord) {
        self.push_parts(record.resource(), record.log());
    }

    /// Appends a record from its resource and `LogRecord` bytes.
    pub fn push_parts(&mut self, resource: &[u8], log: &[u8]) {
        let group = self.group(resource);
        let (start, len) = self.append(log);
        let i = self.records.len() as u32;
        self.records.push(Entry {
            start,
            len,
            group,
            next: NONE,
        });
        let g = &mut self.groups[group as usize];
        g.logs_len += len_field_len(2, log.len());
        match g.last {
            NONE => g.first = i,
            last => self.records[last as usize].next = i,
        }
        self.groups[group as usize].last = i;
    }

    /// Each record's resource and `LogRecord` bytes, in arrival order.
    pub fn records(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.records.iter().map(|e| {
            let g = self.groups[e.group as usize];
            (self.bytes(g.start, g.len), self.bytes(e.start, e.len))
        })
    }

    /// Appends the `ExportLogsServiceRequest` of this batch to `out`: one
    /// `ResourceLogs` per resource, the agent's attributes first, then the
    /// process's; one `ScopeLogs` in each; records in arrival order.
    pub fn write_request(&self, preamble: &Preamble, out: &mut Vec<u8>) {
        out.reserve(self.arena.len() + self.groups.len() * (preamble.resource.len() + 64));
        let scope_field = len_field_len(1, preamble.scope.len());
        for g in &self.groups {
            let resource_len = preamble.resource.len() + g.len as usize;
            let scope_logs_len = scope_field + g.logs_len;
            let resource_logs_len =
                len_field_len(1, resource_len) + len_field_len(2, scope_logs_len);
            // ExportLogsServiceRequest.resource_logs
            put_len_header(out, 1, resource_logs_len);
            // ResourceLogs.resource
            put_len_header(out, 1, resource_len);
            out.extend_from_slice(&preamble.resource);
            out.extend_from_slice(self.bytes(g.start, g.len));
            // ResourceLogs.scope_logs
            put_len_header(out, 2, scope_logs_len);
            put_bytes(out, 1, &preamble.scope);
            let mut i = g.first;
            while i != NONE {
                let e = self.records[i as usize];
                // ScopeLogs.log_records
                put_bytes(out, 2, self.bytes(e.start, e.len));
                i = e.next;
            }
        }
    }
}

/// The spool's frame for one record: a `ResourceLogs` message holding the
/// record's resource and, in one `ScopeLogs`, the record. Self-describing:
/// any OTLP decoder reads it.
pub fn write_envelope(resource: &[u8], log: &[u8], out: &mut Vec<u8>) {
    put_bytes(out, 1, resource);
    let scope_logs_len = len_field_len(2, log.len());
    put_len_header(out, 2, scope_logs_len);
    put_bytes(out, 2, log);
}

/// The resource and `LogRecord` bytes of a spooled frame. A frame written
/// before records carried their resource is a bare `LogRecord` (it never
/// starts with field 1 as length-delimited, which an envelope always does):
/// it is read with no resource of its own.
pub fn read_envelope(frame: &[u8]) -> Option<(&[u8], &[u8])> {
    use super::wire::{Field, fields};
    if frame.first() != Some(&0x0a) {
        return Some((&[], frame));
    }
    let (mut resource, mut scope_logs) = (None, None);
    for field in fields(frame) {
        match field? {
            Field::Len(1, bytes) => resource = Some(bytes),
            Field::Len(2, bytes) => scope_logs = Some(bytes),
            _ => {}
        }
    }
    let log = fields(scope_logs?).find_map(|f| match f {
        Some(Field::Len(2, bytes)) => Some(bytes),
        _ => None,
    })?;
    Some((resource?, log))
}
