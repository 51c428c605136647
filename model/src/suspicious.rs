//! Why a mapping deserves attention.

/// A set of reasons a mapping is suspicious; each has a stable name used in
/// the `mapwatch.suspicious.reasons` attribute.
///
/// ```
/// use mapwatch_model::Reasons;
/// let mut r = Reasons::empty();
/// r.insert(Reasons::WRITE_EXECUTE);
/// assert_eq!(r.names().collect::<Vec<_>>(), ["write_execute"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reasons(u16);

impl Reasons {
    /// Writable and executable at once: code can be written, then run.
    pub const WRITE_EXECUTE: Reasons = Reasons(1 << 0);
    /// Executable memory with no file behind it: code that was never on disk.
    pub const EXECUTE_ANONYMOUS: Reasons = Reasons(1 << 1);
    /// Executable mapping of a memfd: fileless code loading.
    pub const EXECUTE_MEMFD: Reasons = Reasons(1 << 2);
    /// Executable mapping of a file that was deleted: code whose file is gone.
    pub const EXECUTE_DELETED_FILE: Reasons = Reasons(1 << 3);
    /// Executable mapping of a file in a directory anyone can write (/tmp, /dev/shm, ...).
    pub const EXECUTE_FROM_WORLD_WRITABLE_DIR: Reasons = Reasons(1 << 4);
    /// Executable mapping of a file that is open for writing: code that can change under it.
    pub const EXECUTE_FILE_OPEN_FOR_WRITE: Reasons = Reasons(1 << 5);

    /// Memory that was writable made executable (by mprotect): code written,
    /// then run, the classic injection path. Also when the memory was made
    /// non-writable first and executable later (the kernel's W->X history).
    pub const WRITE_THEN_EXECUTE: Reasons = Reasons(1 << 6);
    /// Executable memory made writable and executable (by mprotect): code
    /// patched in place.
    pub const EXECUTE_THEN_WRITE: Reasons = Reasons(1 << 7);
    /// Executable memory whose facts could not be read (its file, or the
    /// memory's previous protection): no rule could clear it, so it is
    /// flagged (fail closed).
    pub const EXECUTE_UNVERIFIED: Reasons = Reasons(1 << 8);
    /// Memory made executable where the kernel's W->X history cannot tell
    /// whether it was writable (ranges merged for room, or no room for the
    /// address space): flagged (fail closed).
    pub const WRITE_HISTORY_INCOMPLETE: Reasons = Reasons(1 << 9);

    const NAMES: [(Reasons, &'static str); 10] = [
        (Reasons::WRITE_EXECUTE, "write_execute"),
        (Reasons::EXECUTE_ANONYMOUS, "execute_anonymous"),
        (Reasons::EXECUTE_MEMFD, "execute_memfd"),
        (Reasons::EXECUTE_DELETED_FILE, "execute_deleted_file"),
        (
            Reasons::EXECUTE_FROM_WORLD_WRITABLE_DIR,
            "execute_from_world_writable_dir",
        ),
        (
            Reasons::EXECUTE_FILE_OPEN_FOR_WRITE,
            "execute_file_open_for_write",
        ),
        (Reasons::WRITE_THEN_EXECUTE, "write_then_execute"),
        (Reasons::EXECUTE_THEN_WRITE, "execute_then_write"),
        (Reasons::EXECUTE_UNVERIFIED, "execute_unverified"),
        (
            Reasons::WRITE_HISTORY_INCOMPLETE,
            "write_history_incomplete",
        ),
    ];

    /// The reasons of raw bits (the kernel's `MW_REASON_*`, which enforcement
    /// sends); unknown bits are kept and named by no one.
    ///
    /// ```
    /// use mapwatch_model::Reasons;
    /// let r = Reasons::from_bits(0b11);
    /// assert_eq!(r.names().collect::<Vec<_>>(), ["write_execute", "execute_anonymous"]);
    /// ```
    pub const fn from_bits(bits: u16) -> Reasons {
        Reasons(bits)
    }

    /// No reason.
    pub const fn empty() -> Reasons {
        Reasons(0)
    }

    /// Whether there is no reason.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every reason of `other` is in `self`.
    pub fn contains(self, other: Reasons) -> bool {
        self.0 & other.0 == other.0
    }

    /// Adds the reasons of `other`.
    pub fn insert(&mut self, other: Reasons) {
        self.0 |= other.0;
    }

    /// The reason named `name` (as in `mapwatch.suspicious.reasons`).
    ///
    /// ```
    /// use mapwatch_model::Reasons;
    /// assert_eq!(Reasons::from_name("write_execute"), Some(Reasons::WRITE_EXECUTE));
    /// assert_eq!(Reasons::from_name("jit"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Reasons> {
        Reasons::NAMES
            .into_iter()
            .find(|(_, n)| *n == name)
            .map(|(r, _)| r)
    }

    /// Every reason's name, in a fixed order.
    pub fn all_names() -> impl Iterator<Item = &'static str> {
        Reasons::NAMES.into_iter().map(|(_, n)| n)
    }

    /// The reasons of `self` that are not in `other`.
    pub fn without(self, other: Reasons) -> Reasons {
        Reasons(self.0 & !other.0)
    }

    /// The names of the reasons, in a fixed order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Reasons::NAMES
            .into_iter()
            .filter(move |(r, _)| self.contains(*r))
            .map(|(_, n)| n)
    }
}
