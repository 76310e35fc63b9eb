//! Moves usage from the journal into the database: reads new lines from the segments, pairs
//! `Start` with `Finish` entries, inserts finished records in batches (idempotent on the request
//! id), and advances a checkpoint. The checkpoint never passes a `Start` whose `Finish` has not
//! been loaded, so a crash at any point loses nothing; replaying lines already loaded inserts
//! nothing twice. `Start`s left without a `Finish` by an earlier run (it crashed mid-request)
//! are billed as `interrupted`. When the database is down, usage waits in the journal.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aihub_store::{Store, UsageRecord};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::journal::{Entry, Journal, StartEntry, segment_path, segments};

/// A position in the journal: segment and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub seq: u64,
    pub offset: u64,
}

const CHECKPOINT: &str = "checkpoint";
/// Most bytes read from a segment per step.
const READ_CHUNK: u64 = 8 * 1024 * 1024;
/// Records held in memory waiting for the database, in batches; beyond it reading pauses.
const MAX_BACKLOG_BATCHES: usize = 10;

pub struct Loader {
    journal: Arc<Journal>,
    store: Store,
    batch_size: usize,
    /// Where reading continues.
    pos: Position,
    /// Starts waiting for their finish, with where each was read.
    pending: HashMap<Uuid, (StartEntry, Position)>,
    /// Finished records read but not yet committed.
    batch: Vec<UsageRecord>,
    /// Checkpoint on disk.
    saved: Position,
}

impl Loader {
    pub fn new(journal: Arc<Journal>, store: Store, batch_size: usize) -> std::io::Result<Self> {
        let saved = read_checkpoint(journal.dir())?.unwrap_or(Position { seq: 0, offset: 0 });
        Ok(Self {
            journal,
            store,
            batch_size: batch_size.max(1),
            pos: saved,
            pending: HashMap::new(),
            batch: Vec::new(),
            saved,
        })
    }

    /// Reads what is new and loads it. Returns the number of records committed.
    pub async fn step(&mut self) -> std::io::Result<u64> {
        // While the database is unreachable the backlog stays on disk, not in memory.
        if self.batch.len() < self.batch_size * MAX_BACKLOG_BATCHES {
            self.read_new()?;
        }
        self.bill_orphans();
        if self.batch.is_empty() {
            self.save_checkpoint()?;
            return Ok(0);
        }
        let mut committed = 0;
        while !self.batch.is_empty() {
            let n = self.batch.len().min(self.batch_size);
            let chunk: Vec<UsageRecord> =
                self.batch.get(..n).map(<[_]>::to_vec).unwrap_or_default();
            match self.store.insert_usage(&chunk).await {
                Ok(new) => {
                    committed += new;
                    self.batch.drain(..n);
                }
                Err(e) => {
                    // The records stay in memory and in the journal; the checkpoint stays put.
                    tracing::warn!(error = %e, waiting = self.batch.len(), "usage not loaded yet; will retry");
                    return Ok(committed);
                }
            }
        }
        self.save_checkpoint()?;
        Ok(committed)
    }

    /// Runs until `stop`, then loads what remains (for at most `drain` more).
    pub async fn run(mut self, every: Duration, stop: CancellationToken, drain: Duration) {
        let every = every.max(Duration::from_millis(5));
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.step().await {
                tracing::error!(error = %e, "usage journal read failed");
            }
        }
        let deadline = tokio::time::Instant::now() + drain;
        loop {
            match self.step().await {
                Ok(_) if self.batch.is_empty() => break,
                Ok(_) | Err(_) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(
                        waiting = self.batch.len(),
                        "usage left in the journal at shutdown; loaded on next start"
                    );
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Reads complete lines from the read position to the end of the journal.
    fn read_new(&mut self) -> std::io::Result<()> {
        let dir = self.journal.dir().to_path_buf();
        let segs = segments(&dir)?;
        let Some(&last) = segs.last() else {
            return Ok(());
        };
        if !segs.contains(&self.pos.seq) {
            // Start, or the segment was removed: continue at the first one not behind us.
            match segs.iter().find(|s| **s >= self.pos.seq) {
                Some(&s) if s != self.pos.seq => self.pos = Position { seq: s, offset: 0 },
                Some(_) => {}
                None => return Ok(()),
            }
        }
        loop {
            let sealed = self.pos.seq < last;
            let read = read_lines(&segment_path(&dir, self.pos.seq), self.pos.offset)?;
            for (line, at) in read.lines {
                self.apply(
                    &line,
                    Position {
                        seq: self.pos.seq,
                        offset: self.pos.offset + at,
                    },
                );
            }
            self.pos.offset += read.consumed;
            if read.more {
                continue;
            }
            if !sealed {
                return Ok(());
            }
            if read.torn > 0 {
                tracing::warn!(
                    segment = self.pos.seq,
                    bytes = read.torn,
                    "skipping a torn journal line"
                );
            }
            match segs.iter().find(|s| **s > self.pos.seq) {
                Some(&next) => {
                    self.pos = Position {
                        seq: next,
                        offset: 0,
                    }
                }
                None => return Ok(()),
            }
        }
    }

    fn apply(&mut self, line: &[u8], at: Position) {
        match serde_json::from_slice::<Entry>(line) {
            Ok(Entry::Start(s)) => {
                self.pending.insert(s.request_id, (s, at));
            }
            Ok(Entry::Finish(f)) => {
                self.pending.remove(&f.request_id);
                self.batch.push(UsageRecord::from(&f));
            }
            Err(e) => {
                tracing::warn!(error = %e, segment = at.seq, offset = at.offset, "unreadable journal line skipped")
            }
        }
    }

    /// Once every segment of earlier runs has been read, their unfinished starts will never
    /// finish: bill them as interrupted.
    fn bill_orphans(&mut self) {
        if self.pos.seq < self.journal.first_seq() {
            return;
        }
        let boot = self.journal.boot();
        let orphans: Vec<Uuid> = self
            .pending
            .iter()
            .filter(|(_, (s, _))| s.boot != boot)
            .map(|(id, _)| *id)
            .collect();
        for id in orphans {
            if let Some((start, _)) = self.pending.remove(&id) {
                tracing::warn!(request_id = %id, "request interrupted by a restart; billing its prompt");
                self.batch.push(UsageRecord::from(&start.interrupted()));
            }
        }
    }

    /// Moves the checkpoint to the oldest position still needed and deletes segments behind it.
    fn save_checkpoint(&mut self) -> std::io::Result<()> {
        if !self.batch.is_empty() {
            return Ok(());
        }
        let oldest_pending = self.pending.values().map(|(_, p)| *p).min();
        let cp = oldest_pending.map_or(self.pos, |p| p.min(self.pos));
        if cp == self.saved {
            return Ok(());
        }
        write_checkpoint(self.journal.dir(), cp)?;
        self.saved = cp;
        for seq in segments(self.journal.dir())? {
            if seq < cp.seq {
                std::fs::remove_file(segment_path(self.journal.dir(), seq))?;
            }
        }
        Ok(())
    }

    /// Records read and waiting to be committed (for tests and metrics).
    #[must_use]
    pub fn backlog(&self) -> usize {
        self.batch.len()
    }
}

struct Lines {
    lines: Vec<(Vec<u8>, u64)>,
    /// Bytes up to and including the last complete line.
    consumed: u64,
    /// The read stopped at the chunk size; more complete lines may follow.
    more: bool,
    /// Bytes after the last newline (an incomplete line).
    torn: u64,
}

fn read_lines(path: &Path, offset: u64) -> std::io::Result<Lines> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Lines {
                lines: Vec::new(),
                consumed: 0,
                more: false,
                torn: 0,
            });
        }
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    let n = file.take(READ_CHUNK).read_to_end(&mut buf)? as u64;
    let mut lines = Vec::new();
    let mut start = 0usize;
    for nl in memchr::memchr_iter(b'\n', &buf) {
        if let Some(line) = buf.get(start..nl)
            && !line.is_empty()
        {
            lines.push((line.to_vec(), start as u64));
        }
        start = nl + 1;
    }
    let consumed = start as u64;
    Ok(Lines {
        lines,
        consumed,
        more: n == READ_CHUNK && consumed > 0,
        torn: n - consumed,
    })
}

fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join(CHECKPOINT)
}

fn read_checkpoint(dir: &Path) -> std::io::Result<Option<Position>> {
    match std::fs::read_to_string(checkpoint_path(dir)) {
        Ok(s) => {
            let mut it = s.split_whitespace().map(str::parse::<u64>);
            match (it.next(), it.next()) {
                (Some(Ok(seq)), Some(Ok(offset))) => Ok(Some(Position { seq, offset })),
                _ => {
                    tracing::warn!("unreadable journal checkpoint; re-reading the whole journal");
                    Ok(None)
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_checkpoint(dir: &Path, p: Position) -> std::io::Result<()> {
    let tmp = dir.join(format!("{CHECKPOINT}.tmp"));
    std::fs::write(&tmp, format!("{} {}\n", p.seq, p.offset))?;
    std::fs::rename(tmp, checkpoint_path(dir))
}
