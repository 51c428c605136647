//! The seam between the kernel and the pipeline: where records come from.
//!
//! The reader takes records one at a time, and under `batch.when_full =
//! "block"` it must decide *before* taking the next one whether there is
//! room for it (a record left in the ring buffer waits there, lossless).
//! So a source hands out one record per call, and a record not asked for
//! stays in the source.

use std::collections::VecDeque;
use std::ops::Deref;

use aya::maps::{MapData, RingBuf};

/// Where encoded kernel records come from, one at a time.
pub trait EventSource {
    /// One record's bytes, borrowed from the source until dropped.
    type Record<'a>: Deref<Target = [u8]>
    where
        Self: 'a;

    /// The next record, or `None` when none is waiting now.
    fn next_record(&mut self) -> Option<Self::Record<'_>>;
}

impl EventSource for RingBuf<MapData> {
    type Record<'a> = aya::maps::ring_buf::RingBufItem<'a>;

    fn next_record(&mut self) -> Option<Self::Record<'_>> {
        self.next()
    }
}

/// Records held in memory: what tests and tools feed the pipeline with
/// instead of the kernel (encoded with `mapwatch_kernel::abi::encode`).
///
/// ```
/// use mapwatch::pipeline::source::{EventSource, Records};
/// let mut source = Records::default();
/// source.push(vec![1, 2, 3]);
/// assert_eq!(source.next_record().as_deref(), Some(&[1u8, 2, 3][..]));
/// assert!(source.next_record().is_none());
/// ```
#[derive(Debug, Default, Clone)]
pub struct Records {
    waiting: VecDeque<Vec<u8>>,
}

impl Records {
    /// Appends one encoded record.
    pub fn push(&mut self, record: Vec<u8>) {
        self.waiting.push_back(record);
    }

    /// Records not taken yet.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether every record was taken.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

impl EventSource for Records {
    type Record<'a> = Vec<u8>;

    fn next_record(&mut self) -> Option<Vec<u8>> {
        self.waiting.pop_front()
    }
}
