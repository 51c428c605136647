//! Taking records back, oldest first; damaged or unreadable segments are
//! given up and counted.

use std::fs::{self, File};

use mapwatch_model::otlp::{EncodedRecord, read_envelope};

use super::error::io;
use super::format::{FRAME_HEADER, read_frame, segment_reader};
use super::{Cursor, Spool, SpoolError};

impl Spool {
    /// Takes the oldest record back, or `None` when the spool is empty.
    pub fn pop(&mut self) -> Option<Result<EncodedRecord, SpoolError>> {
        while self.records > 0 {
            let head = self.segments.front()?;
            let (number, head_records) = (head.number, head.records);
            if head_records == 0 {
                if let Err(error) = self.remove_head() {
                    return Some(Err(error));
                }
                continue;
            }
            if self.appender.as_ref().is_some_and(|a| a.number == number)
                && let Err(error) = self.write_buffer()
            {
                return Some(Err(error));
            }
            let (path, sealed) = self.segments.front().map(|h| (h.path.clone(), h.sealed))?;
            if self.cursor.as_ref().is_none_or(|c| c.number != number) {
                match File::open(&path) {
                    Ok(file) => {
                        self.cursor = Some(Cursor {
                            number,
                            file: segment_reader(file, sealed),
                            offset: 0,
                        })
                    }
                    Err(source) => {
                        let records = self.give_up_head();
                        return Some(Err(SpoolError::Unreadable {
                            path,
                            source,
                            records,
                        }));
                    }
                }
            }
            let cursor = self.cursor.as_mut().expect("opened above");
            let at = cursor.offset;
            let frame = read_frame(&mut cursor.file, &mut self.scratch);
            match frame {
                Ok(Some(len)) => {
                    cursor.offset += FRAME_HEADER + len;
                    self.records -= 1;
                    if let Some(head) = self.segments.front_mut() {
                        head.records -= 1;
                    }
                    let record = read_envelope(&self.scratch)
                        .map(|(resource, log)| EncodedRecord::from_parts(resource, log))
                        .ok_or(SpoolError::NotARecord { path, offset: at });
                    if self.records == 0 {
                        // Caught up: start afresh rather than keep read files.
                        if let Err(error) = self.clear() {
                            return Some(Err(error));
                        }
                    }
                    return Some(record);
                }
                Ok(None) | Err(_) => {
                    let reason = match frame {
                        Ok(None) => "the file ends early".to_owned(),
                        Err(error) => error.to_string(),
                        Ok(Some(_)) => unreachable!(),
                    };
                    let records = self.give_up_head();
                    return Some(Err(SpoolError::Damaged {
                        path,
                        offset: at,
                        reason,
                        records,
                    }));
                }
            }
        }
        None
    }

    /// Gives up the first segment (damaged or unreadable): forgets its
    /// unread records and deletes it; returns how many records were lost.
    pub(super) fn give_up_head(&mut self) -> u64 {
        let Some(head) = self.segments.front_mut() else {
            return 0;
        };
        let records = head.records;
        head.records = 0;
        self.records -= records;
        if let Err(error) = self.remove_head() {
            tracing::warn!("{error}");
        }
        records
    }

    /// Deletes the first segment, stopping to read or write it.
    pub(super) fn remove_head(&mut self) -> Result<(), SpoolError> {
        let Some(head) = self.segments.pop_front() else {
            return Ok(());
        };
        if self
            .cursor
            .as_ref()
            .is_some_and(|c| c.number == head.number)
        {
            self.cursor = None;
        }
        if self
            .appender
            .as_ref()
            .is_some_and(|a| a.number == head.number)
        {
            self.appender = None;
        }
        self.bytes -= head.bytes;
        self.records -= head.records;
        fs::remove_file(&head.path).map_err(io("delete", &head.path))
    }

    pub(super) fn clear(&mut self) -> Result<(), SpoolError> {
        while !self.segments.is_empty() {
            self.remove_head()?;
        }
        Ok(())
    }
}
