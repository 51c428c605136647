//! The admission decision: what happens to a record the reader has decoded.
//!
//! One place decides, from the export queue's free slots, the when-full
//! policy and whether spooled records are waiting:
//!
//! | policy        | queue has room        | queue full                 |
//! | ------------- | --------------------- | -------------------------- |
//! | `drop_newest` | emit                  | drop (counted)             |
//! | `block`       | emit                  | wait: the record stays in the ring buffer |
//! | `spool`       | emit, unless spooled records wait (then spool, to keep the order) | spool |
//!
//! Under `block` the slot is taken *before* the record leaves the source
//! ([`Admission::reserve`]); a reserved slot that no record uses goes back
//! ([`Admission::unreserve`]). Every emitted record holds one slot until its
//! export ends (`crate::export::queue`).

use std::sync::Arc;

use mapwatch_config::WhenFull;

use crate::export::queue::ExportQueue;
use crate::spool::SpoolHandle;

/// What the queue does when it is full, as the reader applies it.
#[derive(Debug, Clone)]
pub enum Policy {
    /// The newest record is dropped and counted.
    DropNewest,
    /// The reader waits; records wait in the ring buffer.
    Block,
    /// Records go to the on-disk spool.
    Spool(SpoolHandle),
}

/// The verdict for one decoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the export queue (it holds a slot).
    Emit,
    /// Write it to the spool.
    Spool,
    /// Drop it: the queue is full (`drop_newest`).
    Drop,
}

/// The gate between the reader and the export queue (see the module docs).
#[derive(Debug, Clone)]
pub struct Admission {
    queue: Arc<ExportQueue>,
    policy: Policy,
}

impl Admission {
    /// Admits through `queue` by its when-full policy; `spool` is the spool
    /// for `WhenFull::Spool` (without one, a full queue drops, as under
    /// `drop_newest`).
    ///
    /// ```
    /// use mapwatch::export::queue::ExportQueue;
    /// use mapwatch::pipeline::admission::{Admission, Verdict};
    /// use mapwatch_config::WhenFull;
    /// let admission = Admission::new(ExportQueue::new(1, WhenFull::DropNewest), None);
    /// assert_eq!(admission.admit(), Verdict::Emit);
    /// assert_eq!(admission.admit(), Verdict::Drop);
    /// ```
    pub fn new(queue: Arc<ExportQueue>, spool: Option<SpoolHandle>) -> Admission {
        let policy = match (queue.policy(), spool) {
            (WhenFull::Block, _) => Policy::Block,
            (WhenFull::Spool, Some(spool)) => Policy::Spool(spool),
            _ => Policy::DropNewest,
        };
        Admission { queue, policy }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The export queue.
    pub fn queue(&self) -> &Arc<ExportQueue> {
        &self.queue
    }

    /// The spool, under the `spool` policy.
    pub fn spool(&self) -> Option<&SpoolHandle> {
        match &self.policy {
            Policy::Spool(spool) => Some(spool),
            _ => None,
        }
    }

    /// Before taking the next record from the source: under `block`, takes
    /// its slot, and `false` means wait (the queue is full). Always `true`
    /// under the other policies, which decide after decoding.
    pub fn reserve(&self) -> bool {
        match self.policy {
            Policy::Block => self.queue.try_admit(),
            _ => true,
        }
    }

    /// Gives back a slot [`reserve`](Self::reserve) took for a record that
    /// turned out not to be one to export (none waiting, a process-exit
    /// notice, an undecodable record).
    pub fn unreserve(&self) {
        if let Policy::Block = self.policy {
            self.queue.release(1);
        }
    }

    /// The verdict for a record the agent makes itself (derived from one it
    /// read, `super::shaping`): no slot was reserved for it, so under
    /// `block` it takes one now or is dropped (counted as export queue
    /// full) rather than stall the record it came with.
    pub fn admit_extra(&self) -> Verdict {
        match &self.policy {
            Policy::Block if self.queue.try_admit() => Verdict::Emit,
            Policy::Block => Verdict::Drop,
            _ => self.admit(),
        }
    }

    /// The verdict for a decoded record; an `Emit` holds a slot.
    pub fn admit(&self) -> Verdict {
        match &self.policy {
            // The slot was reserved before the record was read.
            Policy::Block => Verdict::Emit,
            Policy::DropNewest if self.queue.try_admit() => Verdict::Emit,
            Policy::DropNewest => Verdict::Drop,
            // Behind spooled records, or when the queue is full.
            Policy::Spool(spool) if !spool.is_empty() || !self.queue.try_admit() => Verdict::Spool,
            Policy::Spool(_) => Verdict::Emit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_reserves_before_reading_and_gives_unused_slots_back() {
        let admission = Admission::new(ExportQueue::new(2, WhenFull::Block), None);
        assert!(admission.reserve());
        assert_eq!(admission.admit(), Verdict::Emit);
        assert!(admission.reserve());
        assert!(!admission.reserve(), "two slots, both taken");
        admission.unreserve();
        assert_eq!(admission.queue().depth(), 1);
    }

    #[test]
    fn spool_without_a_spool_drops_like_drop_newest() {
        let admission = Admission::new(ExportQueue::new(1, WhenFull::Spool), None);
        assert!(matches!(admission.policy(), Policy::DropNewest));
        assert_eq!(admission.admit(), Verdict::Emit);
        assert_eq!(admission.admit(), Verdict::Drop);
    }

    #[test]
    fn spool_keeps_the_order_behind_spooled_records() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolHandle::new(crate::spool::Spool::open(dir.path(), 1 << 20).unwrap());
        let admission = Admission::new(ExportQueue::new(1, WhenFull::Spool), Some(spool.clone()));
        assert_eq!(admission.admit(), Verdict::Emit);
        assert_eq!(admission.admit(), Verdict::Spool, "queue full");
        admission.queue().release(1);
        spool.push(b"", b"").unwrap();
        assert_eq!(
            admission.admit(),
            Verdict::Spool,
            "room again, but a spooled record waits"
        );
        assert_eq!(
            admission.queue().depth(),
            0,
            "a spooled record holds no slot"
        );
    }
}
