//! The on-disk format: frames `[length: u32 LE][CRC-32: u32 LE][payload]`
//! in segment files, raw (`<number>.otlp`) or sealed (`<number>-<records>.otlp.gz`).

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};

/// Bytes of a frame's header: payload length and CRC-32.
pub(super) const FRAME_HEADER: u64 = 8;
/// A payload larger than this is damage (records are a few KiB at most).
pub(super) const MAX_PAYLOAD: u32 = 16 * 1024 * 1024;
/// Segments are read through a buffer of this size.
pub(super) const READ_BUFFER: usize = 64 * 1024;
/// Frames are written to the file in chunks of about this size.
pub(super) const WRITE_CHUNK: usize = 64 * 1024;
pub(super) const SEGMENT_SUFFIX: &str = ".otlp";
/// A sealed segment, compressed: `<number>-<records>.otlp.gz`.
pub(super) const SEALED_SUFFIX: &str = ".otlp.gz";
pub(super) const POSITION_FILE: &str = "position";

/// Reads the frames of a segment file (inflating a sealed one), buffered.
pub(super) fn segment_reader(file: File, sealed: bool) -> Box<dyn Read + Send> {
    if sealed {
        Box::new(BufReader::with_capacity(
            READ_BUFFER,
            flate2::read::GzDecoder::new(file),
        ))
    } else {
        Box::new(BufReader::with_capacity(READ_BUFFER, file))
    }
}

/// CRC-32 of a frame's length bytes and payload: a run of zero bytes (a
/// file extended but never written) is not a valid frame.
pub(super) fn checksum(len: &[u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len);
    hasher.update(payload);
    hasher.finalize()
}

/// Reads one frame's payload into `buf`; `Ok(None)` at a clean end of file,
/// an error for a torn or damaged frame.
pub(super) fn read_frame(file: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<Option<u64>> {
    let mut header = [0u8; FRAME_HEADER as usize];
    match file.read_exact(&mut header[..1]) {
        Err(error) if error.kind() == ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    file.read_exact(&mut header[1..])?;
    let len: [u8; 4] = header[..4].try_into().expect("4 bytes");
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    let size = u32::from_le_bytes(len);
    if size == 0 || size > MAX_PAYLOAD {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            format!("implausible frame length {size}"),
        ));
    }
    buf.resize(size as usize, 0);
    file.read_exact(buf)?;
    if checksum(&len, buf) != crc {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            "checksum mismatch",
        ));
    }
    Ok(Some(u64::from(size)))
}
