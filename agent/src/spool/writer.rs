//! Appending records: frames buffered and written in chunks, segments
//! rotated and sealed (compressed) once full, a clean close.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use super::error::io;
use super::format::{FRAME_HEADER, POSITION_FILE, WRITE_CHUNK, checksum};
use super::{Appender, Segment, Spool, SpoolError};

impl Spool {
    /// Appends a record (its resource and `LogRecord` bytes, see
    /// `crate::export::encode`); fails with [`SpoolError::Full`] when it
    /// would pass `max_bytes`.
    pub fn push(&mut self, resource: &[u8], log: &[u8]) -> Result<(), SpoolError> {
        if self.closed {
            return Err(SpoolError::Closed);
        }
        self.scratch.clear();
        self.scratch.resize(FRAME_HEADER as usize, 0);
        mapwatch_model::otlp::write_envelope(resource, log, &mut self.scratch);
        let payload = self.scratch.len() - FRAME_HEADER as usize;
        let len = (payload as u32).to_le_bytes();
        self.scratch[..4].copy_from_slice(&len);
        let crc = checksum(&len, &self.scratch[FRAME_HEADER as usize..]);
        self.scratch[4..8].copy_from_slice(&crc.to_le_bytes());
        let frame = self.scratch.len() as u64;
        if self.bytes + frame > self.max_bytes {
            return Err(SpoolError::Full {
                dir: self.dir.clone(),
                max_bytes: self.max_bytes,
            });
        }
        let rotate = match (&self.appender, self.segments.back()) {
            (Some(appender), Some(last)) => {
                appender.number != last.number
                    || (last.bytes > 0 && last.bytes + frame > self.segment_bytes)
            }
            _ => true,
        };
        if rotate {
            self.start_segment()?;
        }
        let appender = self.appender.as_mut().expect("a segment was just started");
        appender.buffer.extend_from_slice(&self.scratch);
        appender.buffered_records += 1;
        let last = self.segments.back_mut().expect("the appender's segment");
        last.bytes += frame;
        last.records += 1;
        self.bytes += frame;
        self.records += 1;
        if self
            .appender
            .as_ref()
            .is_some_and(|a| a.buffer.len() >= WRITE_CHUNK)
        {
            return self.write_buffer().map_err(|error| match error {
                // The caller counts the record being written itself.
                SpoolError::WriteFailed {
                    path,
                    source,
                    records,
                } => SpoolError::WriteFailed {
                    path,
                    source,
                    records: records - 1,
                },
                other => other,
            });
        }
        Ok(())
    }

    /// Writes the appender's buffer to its file. On failure, the file is cut
    /// back to its last good length, the buffered records are given up, and
    /// the next record starts a new segment.
    pub(super) fn write_buffer(&mut self) -> Result<(), SpoolError> {
        let Some(appender) = &mut self.appender else {
            return Ok(());
        };
        if appender.buffer.is_empty() {
            return Ok(());
        }
        match appender.file.write_all(&appender.buffer) {
            Ok(()) => {
                appender.written += appender.buffer.len() as u64;
                appender.buffer.clear();
                appender.buffered_records = 0;
                Ok(())
            }
            Err(source) => {
                let appender = self.appender.take().expect("checked above");
                let lost_bytes = appender.buffer.len() as u64;
                let lost = appender.buffered_records;
                // Keep the whole frames only (best effort: the records
                // counted in the segment end there).
                let _ = appender.file.set_len(appender.written);
                if let Some(last) = self.segments.back_mut()
                    && last.number == appender.number
                {
                    last.bytes -= lost_bytes;
                    last.records -= lost;
                }
                self.bytes -= lost_bytes;
                self.records -= lost;
                Err(SpoolError::WriteFailed {
                    path: self.segment_path(appender.number),
                    source,
                    records: lost,
                })
            }
        }
    }

    pub(super) fn start_segment(&mut self) -> Result<(), SpoolError> {
        if self.appender.is_some() {
            self.write_buffer()?;
            if let Some(old) = self.appender.take() {
                // The finished segment is complete on disk before it is read back.
                old.file
                    .sync_data()
                    .map_err(io("sync", &self.segment_path(old.number)))?;
                self.seal(old.number);
            }
        }
        let number = self.next_number;
        self.next_number += 1;
        let path = self.segment_path(number);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(io("create", &path))?;
        self.appender = Some(Appender {
            number,
            file,
            buffer: Vec::with_capacity(WRITE_CHUNK + 4096),
            buffered_records: 0,
            written: 0,
        });
        self.segments.push_back(Segment {
            number,
            path,
            bytes: 0,
            records: 0,
            sealed: false,
        });
        Ok(())
    }

    /// Hands buffered records to the kernel (they then survive a crash of
    /// the agent, not of the machine).
    pub fn flush(&mut self) -> Result<(), SpoolError> {
        self.write_buffer()
    }

    /// Compresses the full segment `number` into `<number>-<records>.otlp.gz`
    /// (written aside, synced, renamed, then the raw file deleted), unless it
    /// is being read. Records repeat most of their bytes, so a segment
    /// shrinks about fifteen-fold. On failure the segment stays raw.
    pub(super) fn seal(&mut self, number: u64) {
        let Some(index) = self.segments.iter().position(|s| s.number == number) else {
            return;
        };
        let segment = &self.segments[index];
        if segment.sealed
            || segment.records == 0
            || self.cursor.as_ref().is_some_and(|c| c.number == number)
        {
            return;
        }
        let records = segment.records;
        let raw = self.segment_path(number);
        let sealed = self.sealed_path(number, records);
        let temporary = sealed.with_extension("gz.tmp");
        let compress = || -> std::io::Result<u64> {
            let mut input = File::open(&raw)?;
            let output = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&temporary)?;
            let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::fast());
            std::io::copy(&mut input, &mut encoder)?;
            let output = encoder.finish()?;
            output.sync_all()?;
            let size = output.metadata()?.len();
            fs::rename(&temporary, &sealed)?;
            Ok(size)
        };
        match compress() {
            Ok(size) => {
                let segment = &mut self.segments[index];
                self.bytes = self.bytes - segment.bytes + size;
                segment.bytes = size;
                segment.sealed = true;
                segment.path = sealed;
                if let Err(error) = fs::remove_file(&raw) {
                    tracing::warn!(
                        "spool: cannot delete {} after sealing it: {error}",
                        raw.display()
                    );
                }
            }
            Err(error) => {
                let _ = fs::remove_file(&temporary);
                tracing::warn!(
                    "spool: cannot compress {} ({error}); it stays uncompressed",
                    raw.display()
                );
            }
        }
    }

    /// Makes everything written durable, records where reading stopped for
    /// the next run, and refuses further records.
    pub fn close(&mut self) -> Result<(), SpoolError> {
        self.closed = true;
        self.write_buffer()?;
        if let Some(appender) = &self.appender {
            appender
                .file
                .sync_data()
                .map_err(io("sync", &self.segment_path(appender.number)))?;
        }
        let position = self.dir.join(POSITION_FILE);
        if let Some(cursor) = &self.cursor
            && cursor.offset > 0
            && self.records > 0
        {
            let temporary = self.dir.join("position.new");
            fs::write(&temporary, format!("{} {}\n", cursor.number, cursor.offset))
                .and_then(|()| File::open(&temporary)?.sync_all())
                .map_err(io("write", &temporary))?;
            fs::rename(&temporary, &position).map_err(io("rename to", &position))?;
        }
        // New, renamed and deleted files are durable once the directory is.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", &self.dir))
    }
}
