//! The bounded export queue's admission gate.
//!
//! One slot per record from the moment the reader admits it (into its open
//! batch, see `crate::export::batcher`) until its export has ended
//! (delivered, failed or spooled), and never more than the queue's capacity,
//! so:
//!
//! * memory is bound: batches waiting for an export thread, being exported
//!   or retried all hold their records' slots;
//! * a full queue is seen *before* a record is emitted, and the configured
//!   [`WhenFull`] policy decides: `drop_newest` counts the record as dropped
//!   (`export queue full`), `block` leaves it in the kernel's ring buffer and
//!   the reader waits for a free slot, `spool` writes it to the on-disk spool
//!   (`crate::spool`), from which it comes back through this gate;
//! * the queue depth is exact (`capacity - free slots`), for the metrics and
//!   the exit line (records still queued at the deadline are measured, not
//!   derived).

use std::sync::Arc;

use mapwatch_config::WhenFull;
use tokio::sync::Semaphore;

/// Slots for the records between the reader and the end of their export.
#[derive(Debug)]
pub struct ExportQueue {
    slots: Semaphore,
    capacity: usize,
    policy: WhenFull,
}

impl ExportQueue {
    /// A queue of `capacity` records with the given when-full `policy`.
    pub fn new(capacity: usize, policy: WhenFull) -> Arc<ExportQueue> {
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(ExportQueue {
            slots: Semaphore::new(capacity),
            capacity,
            policy,
        })
    }

    /// What happens when the queue is full.
    pub fn policy(&self) -> WhenFull {
        self.policy
    }

    /// Takes a slot if one is free.
    pub fn try_admit(&self) -> bool {
        match self.slots.try_acquire() {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
        }
    }

    /// Waits until a slot is free (without taking it).
    pub async fn wait_for_room(&self) {
        if let Ok(permit) = self.slots.acquire().await {
            drop(permit);
        }
    }

    /// Gives back `n` slots: their records left the queue (exported, failed
    /// or never emitted).
    pub fn release(&self, n: usize) {
        if n > 0 {
            self.slots.add_permits(n);
        }
    }

    /// Records waiting for export or being exported now.
    pub fn depth(&self) -> usize {
        self.capacity.saturating_sub(self.slots.available_permits())
    }

    /// The most records the queue holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl crate::telemetry::metrics::QueueGauge for ExportQueue {
    fn depth(&self) -> usize {
        ExportQueue::depth(self)
    }

    fn capacity(&self) -> usize {
        ExportQueue::capacity(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_and_given_back() {
        let queue = ExportQueue::new(2, WhenFull::DropNewest);
        assert!(queue.try_admit());
        assert!(queue.try_admit());
        assert!(!queue.try_admit(), "full");
        assert_eq!(queue.depth(), 2);
        queue.release(1);
        assert_eq!(queue.depth(), 1);
        assert!(queue.try_admit());
        queue.release(2);
        assert_eq!(queue.depth(), 0);
    }

    #[test]
    fn waiting_for_room_takes_no_slot() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let queue = ExportQueue::new(1, WhenFull::Block);
        runtime.block_on(queue.wait_for_room());
        assert_eq!(queue.depth(), 0);
        assert!(queue.try_admit());
    }
}
