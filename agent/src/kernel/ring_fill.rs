//! How full the BPF ring buffer is, read from its own control pages.

use std::os::fd::AsFd;

use aya::maps::{MapData, RingBuf};

/// How much of the BPF ring buffer is in use: the kernel's producer position
/// minus the consumer's, read from the ring buffer's own control pages
/// (mapped read-only). In bytes, record headers and padding included.
pub struct RingFill {
    pages: *const u8,
    page: usize,
    size: u64,
}

// SAFETY: the mapping is read-only and lives as long as the struct; the two
// positions are read with atomic loads.
unsafe impl Send for RingFill {}
// SAFETY: as above.
unsafe impl Sync for RingFill {}

impl RingFill {
    /// Maps the consumer and producer pages of `ring` (of `size` bytes).
    pub fn new(ring: &RingBuf<MapData>, size: u32) -> std::io::Result<RingFill> {
        use std::os::fd::AsRawFd;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // SAFETY: a read-only shared mapping of the ring buffer map's first
        // two pages (consumer and producer positions), which the kernel allows.
        let pages = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                ring.as_fd().as_raw_fd(),
                0,
            )
        };
        if pages == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(RingFill {
            pages: pages.cast(),
            page,
            size: u64::from(size),
        })
    }

    fn position(&self, offset: usize) -> u64 {
        // SAFETY: `offset` is 0 or one page into a live two-page mapping; the
        // kernel keeps an aligned u64 position at the start of each page.
        let atomic = unsafe { &*(self.pages.add(offset) as *const std::sync::atomic::AtomicU64) };
        atomic.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Bytes written by the kernel and not yet consumed by the reader.
    pub fn used(&self) -> u64 {
        let consumer = self.position(0);
        let producer = self.position(self.page);
        producer.saturating_sub(consumer).min(self.size)
    }

    /// The ring buffer's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for RingFill {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.pages as *mut libc::c_void, 2 * self.page) };
    }
}
