//! Names of `PROT_*`, `MAP_*` and `O_*` bits and of errno values (x86-64 and
//! the generic Linux ABI).
//!
//! ```
//! use mapwatch_model::names::{prot_names, map_flag_names};
//! let names: Vec<String> = prot_names(5).iter().map(|n| n.to_string()).collect();
//! assert_eq!(names, ["PROT_READ", "PROT_EXEC"]);
//! let names: Vec<String> = map_flag_names(0x22).iter().map(|n| n.to_string()).collect();
//! assert_eq!(names, ["MAP_PRIVATE", "MAP_ANONYMOUS"]);
//! ```

use std::borrow::Cow;

/// `PROT_READ`.
pub const PROT_READ: u64 = 0x1;
/// `PROT_WRITE`.
pub const PROT_WRITE: u64 = 0x2;
/// `PROT_EXEC`.
pub const PROT_EXEC: u64 = 0x4;
/// `MAP_ANONYMOUS`.
pub const MAP_ANONYMOUS: u64 = 0x20;
/// Mask of the mapping type in the flags.
const MAP_TYPE: u64 = 0x0f;

const PROT_BITS: &[(u64, &str)] = &[
    (PROT_READ, "PROT_READ"),
    (PROT_WRITE, "PROT_WRITE"),
    (PROT_EXEC, "PROT_EXEC"),
    (0x8, "PROT_SEM"),
    (0x0100_0000, "PROT_GROWSDOWN"),
    (0x0200_0000, "PROT_GROWSUP"),
];

const MAP_BITS: &[(u64, &str)] = &[
    (0x10, "MAP_FIXED"),
    (MAP_ANONYMOUS, "MAP_ANONYMOUS"),
    (0x40, "MAP_32BIT"),
    (0x100, "MAP_GROWSDOWN"),
    (0x800, "MAP_DENYWRITE"),
    (0x1000, "MAP_EXECUTABLE"),
    (0x2000, "MAP_LOCKED"),
    (0x4000, "MAP_NORESERVE"),
    (0x8000, "MAP_POPULATE"),
    (0x10000, "MAP_NONBLOCK"),
    (0x20000, "MAP_STACK"),
    (0x40000, "MAP_HUGETLB"),
    (0x80000, "MAP_SYNC"),
    (0x100000, "MAP_FIXED_NOREPLACE"),
    (0x4000000, "MAP_UNINITIALIZED"),
];

const OPEN_BITS: &[(u64, &str)] = &[
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o10000, "O_DSYNC"),
    (0o20000, "FASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o4000000, "O_SYNC"),
    (0o10000000, "O_PATH"),
    (0o20000000, "O_TMPFILE"),
];

/// Hands `f` the names of the bits of `value` found in `table`, then one hex
/// entry for whatever bits remain.
fn each_bit_name(
    mut value: u64,
    table: &[(u64, &'static str)],
    f: &mut impl FnMut(Cow<'static, str>),
) {
    for &(bit, name) in table {
        if value & bit == bit {
            f(Cow::Borrowed(name));
            value &= !bit;
        }
    }
    if value != 0 {
        f(Cow::Owned(format!("{value:#x}")));
    }
}

/// Hands `f` each name [`prot_names`] would list, in order, without collecting
/// them (no allocation unless a bit has no name).
pub fn for_each_prot_name(prot: u64, mut f: impl FnMut(Cow<'static, str>)) {
    if prot == 0 {
        f(Cow::Borrowed("PROT_NONE"));
    } else {
        each_bit_name(prot, PROT_BITS, &mut f);
    }
}

/// Hands `f` each name [`map_flag_names`] would list, in order.
pub fn for_each_map_flag_name(flags: u64, mut f: impl FnMut(Cow<'static, str>)) {
    match flags & MAP_TYPE {
        0x1 => f(Cow::Borrowed("MAP_SHARED")),
        0x2 => f(Cow::Borrowed("MAP_PRIVATE")),
        0x3 => f(Cow::Borrowed("MAP_SHARED_VALIDATE")),
        0 => {}
        other => f(Cow::Owned(format!("{other:#x}"))),
    }
    each_bit_name(flags & !MAP_TYPE, MAP_BITS, &mut f);
}

/// Hands `f` each name [`open_flag_names`] would list, in order.
pub fn for_each_open_flag_name(flags: u32, mut f: impl FnMut(Cow<'static, str>)) {
    let flags = u64::from(flags);
    f(Cow::Borrowed(match flags & 0o3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    }));
    each_bit_name(flags & !0o3, OPEN_BITS, &mut f);
}

/// Names of the `PROT_*` bits of `prot`; `["PROT_NONE"]` for 0.
pub fn prot_names(prot: u64) -> Vec<Cow<'static, str>> {
    let mut out = Vec::with_capacity(3);
    for_each_prot_name(prot, |n| out.push(n));
    out
}

/// Names of the `MAP_*` flags; the mapping type comes first.
pub fn map_flag_names(flags: u64) -> Vec<Cow<'static, str>> {
    let mut out = Vec::with_capacity(3);
    for_each_map_flag_name(flags, |n| out.push(n));
    out
}

/// Names of the `O_*` flags of an open file; the access mode comes first.
pub fn open_flag_names(flags: u32) -> Vec<Cow<'static, str>> {
    let mut out = Vec::with_capacity(3);
    for_each_open_flag_name(flags, |n| out.push(n));
    out
}

/// The symbolic name of a (positive) errno, or `E<number>` for an unlisted one.
pub fn errno_name(errno: i32) -> Cow<'static, str> {
    let name = match errno {
        1 => "EPERM",
        2 => "ENOENT",
        4 => "EINTR",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        19 => "ENODEV",
        22 => "EINVAL",
        23 => "ENFILE",
        24 => "EMFILE",
        26 => "ETXTBSY",
        27 => "EFBIG",
        75 => "EOVERFLOW",
        95 => "EOPNOTSUPP",
        _ => return Cow::Owned(format!("E{errno}")),
    };
    Cow::Borrowed(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_bits_are_kept_in_hex() {
        assert_eq!(prot_names(0x1 | 0x40), ["PROT_READ", "0x40"]);
        assert_eq!(
            map_flag_names(0x2 | 0x8000_0000),
            ["MAP_PRIVATE", "0x80000000"]
        );
    }

    #[test]
    fn prot_none_is_named() {
        assert_eq!(prot_names(0), ["PROT_NONE"]);
    }

    #[test]
    fn open_flags_start_with_access_mode() {
        assert_eq!(open_flag_names(0o2 | 0o100000), ["O_RDWR", "O_LARGEFILE"]);
        assert_eq!(open_flag_names(0), ["O_RDONLY"]);
    }

    #[test]
    fn for_each_matches_the_lists() {
        for value in [0u64, 1, 3, 7, 0x41, 0x0100_0005, u64::MAX] {
            let mut seen = Vec::new();
            for_each_prot_name(value, |n| seen.push(n));
            assert_eq!(seen, prot_names(value));
            seen.clear();
            for_each_map_flag_name(value, |n| seen.push(n));
            assert_eq!(seen, map_flag_names(value));
            seen.clear();
            for_each_open_flag_name(value as u32, |n| seen.push(n));
            assert_eq!(seen, open_flag_names(value as u32));
        }
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(12), "ENOMEM");
        assert_eq!(errno_name(999), "E999");
    }
}
