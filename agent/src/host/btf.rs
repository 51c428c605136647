//! What the running kernel's BTF says about the functions we hook: whether
//! they exist and how many parameters they take. (`do_mmap` gained a
//! parameter in 6.5, which moves `pgoff` for the kprobe and fexit programs.)
//!
//! A small reader of the BTF format, enough for FUNC and FUNC_PROTO lookups.

use std::collections::HashMap;
use std::path::Path;

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;

/// Why the BTF could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The file could not be read.
    #[error("cannot read kernel BTF at {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not BTF as this reader knows it.
    #[error("kernel BTF is malformed: {0}")]
    Malformed(&'static str),
}

/// Kernel functions described by BTF: name -> parameter count.
#[derive(Debug, Default)]
pub struct KernelFunctions {
    arity: HashMap<String, usize>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Bytes that follow the 12-byte common part of a type, by kind.
fn trailing(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
        3 => 12,                      // ARRAY
        4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
        6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
        2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
        _ => return None,
    })
}

impl KernelFunctions {
    /// Reads `/sys/kernel/btf/vmlinux` (or another BTF file).
    pub fn load(path: &Path) -> Result<KernelFunctions, BtfError> {
        let bytes = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        KernelFunctions::parse(&bytes)
    }

    /// Parses raw BTF (little-endian).
    pub fn parse(b: &[u8]) -> Result<KernelFunctions, BtfError> {
        let bad = BtfError::Malformed;
        if u16_at(b, 0) != Some(BTF_MAGIC) {
            return Err(bad("bad magic (big-endian BTF is not supported)"));
        }
        let hdr_len = u32_at(b, 4).ok_or(bad("short header"))? as usize;
        let type_off = u32_at(b, 8).ok_or(bad("short header"))? as usize;
        let type_len = u32_at(b, 12).ok_or(bad("short header"))? as usize;
        let str_off = u32_at(b, 16).ok_or(bad("short header"))? as usize;
        let str_len = u32_at(b, 20).ok_or(bad("short header"))? as usize;
        let types = b
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(bad("type section out of bounds"))?;
        let strings = b
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(bad("string section out of bounds"))?;

        // Type ids start at 1; keep (kind, name offset, referenced type, vlen).
        let mut all = vec![(0u32, 0u32, 0u32, 0usize)];
        let mut at = 0;
        while at < types.len() {
            let name_off = u32_at(types, at).ok_or(bad("truncated type"))?;
            let info = u32_at(types, at + 4).ok_or(bad("truncated type"))?;
            let size_or_type = u32_at(types, at + 8).ok_or(bad("truncated type"))?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            all.push((kind, name_off, size_or_type, vlen));
            at += 12 + trailing(kind, vlen).ok_or(bad("unknown type kind"))?;
        }

        let name = |off: u32| -> Option<&str> {
            let rest = strings.get(off as usize..)?;
            let end = rest.iter().position(|&c| c == 0)?;
            std::str::from_utf8(&rest[..end]).ok()
        };
        let mut arity = HashMap::new();
        for &(kind, name_off, proto, _) in &all {
            if kind != KIND_FUNC {
                continue;
            }
            if let (Some(fname), Some(&(KIND_FUNC_PROTO, _, _, vlen))) =
                (name(name_off), all.get(proto as usize))
            {
                arity.insert(fname.to_owned(), vlen);
            }
        }
        Ok(KernelFunctions { arity })
    }

    /// The parameter count of `function`, if the kernel has it.
    pub fn arity(&self, function: &str) -> Option<usize> {
        self.arity.get(function).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_running_kernel() {
        let path = Path::new(crate::host::preflight::VMLINUX_BTF);
        if !path.exists() {
            eprintln!("SKIP: no {} on this machine", path.display());
            return;
        }
        let functions = KernelFunctions::load(path).expect("parse vmlinux BTF");
        // The hooks of mapwatch, on every kernel it supports.
        let do_mmap = functions.arity("do_mmap").expect("do_mmap in BTF");
        assert!(
            (8..=9).contains(&do_mmap),
            "do_mmap has {do_mmap} parameters"
        );
        assert_eq!(functions.arity("security_mmap_file"), Some(3));
        assert_eq!(functions.arity("no_such_function_in_any_kernel"), None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(KernelFunctions::parse(b"not btf at all").is_err());
        assert!(KernelFunctions::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0]).is_err());
    }
}
