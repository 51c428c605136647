//! Protocol buffers wire format: the few primitives OTLP logs need.
//!
//! Messages are written field by field into a `Vec<u8>`; a nested message is
//! written with its length first, which the callers know (every value is at
//! hand before its field is written), so nothing is encoded twice.
//!
//! ```
//! use mapwatch_model::otlp::wire::{Field, fields, put_bytes, put_varint_field};
//! // LogRecord { severity_number: 13, event_name: "mapwatch.do_mmap" }
//! let mut out = Vec::new();
//! put_varint_field(&mut out, 2, 13);
//! put_bytes(&mut out, 12, b"mapwatch.do_mmap");
//! let read: Vec<_> = fields(&out).flatten().collect();
//! assert_eq!(read, [Field::Varint(2, 13), Field::Len(12, b"mapwatch.do_mmap")]);
//! ```

/// Wire type of varint fields (ints, bools, enums).
pub const VARINT: u8 = 0;
/// Wire type of 64-bit fields (fixed64, double).
pub const FIXED64: u8 = 1;
/// Wire type of length-delimited fields (strings, bytes, messages).
pub const LEN: u8 = 2;
/// Wire type of 32-bit fields (fixed32).
pub const FIXED32: u8 = 5;

/// Bytes `value` takes as a varint.
pub const fn varint_len(value: u64) -> usize {
    // 1 byte per 7 bits, at least 1.
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends `value` as a varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends the key of field `field` with wire type `wire`.
#[inline]
pub fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, u64::from(field << 3 | u32::from(wire)));
}

/// Bytes the key of `field` takes.
pub const fn key_len(field: u32) -> usize {
    varint_len((field as u64) << 3)
}

/// Bytes a length-delimited field of `len` bytes of content takes.
pub const fn len_field_len(field: u32, len: usize) -> usize {
    key_len(field) + varint_len(len as u64) + len
}

/// Appends the key and length of a length-delimited field whose content
/// (`len` bytes) the caller writes next.
#[inline]
pub fn put_len_header(out: &mut Vec<u8>, field: u32, len: usize) {
    put_key(out, field, LEN);
    put_varint(out, len as u64);
}

/// Appends a length-delimited field.
#[inline]
pub fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_len_header(out, field, bytes.len());
    out.extend_from_slice(bytes);
}

/// Appends a varint field.
#[inline]
pub fn put_varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    put_key(out, field, VARINT);
    put_varint(out, value);
}

/// Appends a fixed64 field.
#[inline]
pub fn put_fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
    put_key(out, field, FIXED64);
    out.extend_from_slice(&value.to_le_bytes());
}

/// Appends a fixed32 field.
#[inline]
pub fn put_fixed32(out: &mut Vec<u8>, field: u32, value: u32) {
    put_key(out, field, FIXED32);
    out.extend_from_slice(&value.to_le_bytes());
}

/// One field read back by [`fields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    /// A varint field.
    Varint(u32, u64),
    /// A length-delimited field.
    Len(u32, &'a [u8]),
    /// A fixed-width field (its number and bytes).
    Fixed(u32, &'a [u8]),
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

/// The fields of one message, in order; `None` at the first malformed one.
pub fn fields(bytes: &[u8]) -> impl Iterator<Item = Option<Field<'_>>> + '_ {
    let mut at = 0;
    let mut broken = false;
    std::iter::from_fn(move || {
        if broken || at >= bytes.len() {
            return None;
        }
        let field = (|| {
            let key = get_varint(bytes, &mut at)?;
            let number = u32::try_from(key >> 3).ok()?;
            let take = |at: &mut usize, n: usize| {
                let slice = bytes.get(*at..at.checked_add(n)?)?;
                *at += n;
                Some(slice)
            };
            match (key & 7) as u8 {
                VARINT => Some(Field::Varint(number, get_varint(bytes, &mut at)?)),
                FIXED64 => Some(Field::Fixed(number, take(&mut at, 8)?)),
                FIXED32 => Some(Field::Fixed(number, take(&mut at, 4)?)),
                LEN => {
                    let n = usize::try_from(get_varint(bytes, &mut at)?).ok()?;
                    Some(Field::Len(number, take(&mut at, n)?))
                }
                _ => None,
            }
        })();
        broken = field.is_none();
        Some(field)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_with_their_length() {
        for value in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value), "{value}");
            let mut at = 0;
            assert_eq!(get_varint(&out, &mut at), Some(value));
            assert_eq!(at, out.len());
        }
    }

    #[test]
    fn fields_read_back_and_stop_at_damage() {
        let mut out = Vec::new();
        put_varint_field(&mut out, 2, 13);
        put_bytes(&mut out, 12, b"mapwatch.do_mmap");
        put_fixed64(&mut out, 1, 7);
        let read: Vec<_> = fields(&out).collect();
        assert_eq!(
            read,
            [
                Some(Field::Varint(2, 13)),
                Some(Field::Len(12, b"mapwatch.do_mmap")),
                Some(Field::Fixed(1, &7u64.to_le_bytes())),
            ]
        );
        let cut = &out[..out.len() - 1];
        assert_eq!(fields(cut).last(), Some(None));
    }
}
