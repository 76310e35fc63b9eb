//! Moves usage from the journal into the database: takes new entries from the journal's
//! in-memory tail (or, on start and whenever the tail is incomplete, reads new lines from the
//! segments), pairs `Start` with `Finish` entries, inserts finished records in batches
//! (idempotent on the request id), and advances a checkpoint. The checkpoint never passes a
//! `Start` whose `Finish` has not been loaded, so a crash at any point loses nothing; replaying
//! lines already loaded inserts nothing twice. `Start`s left without a `Finish` by an earlier run
//! (it crashed mid-request) are billed as `interrupted`. When the database is down, usage waits
//! in the journal.
//!
//! The file side (reading, parsing, the checkpoint) runs on Tokio's blocking pool, never on the
//! runtime's workers: parsing a batch takes milliseconds, and on a worker it would hold up every
//! request queued behind it.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aihub_store::{Store, UsageRecord};
use rustc_hash::FxHashMap;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use crate::journal::Position;
use crate::journal::{Entry, Journal, StartEntry, segment_path, segments};

const CHECKPOINT: &str = "checkpoint";
/// Most bytes read from a segment per step.
const READ_CHUNK: u64 = 8 * 1024 * 1024;
/// Records held in memory waiting for the database, in batches; beyond it reading pauses.
const MAX_BACKLOG_BATCHES: usize = 10;

pub struct Loader {
    journal: Arc<Journal>,
    store: Store,
    batch_size: usize,
    /// The file side; `None` only while it is out on the blocking pool.
    reader: Option<Reader>,
}

/// What the loader knows of the journal: where it is, and what it read but has not committed.
struct Reader {
    journal: Arc<Journal>,
    /// Where reading continues.
    pos: Position,
    /// Starts waiting for their finish, with where each was read.
    /// Keyed by request ids this gateway made (UUIDv7), so a fast hash is safe.
    pending: FxHashMap<Uuid, (StartEntry, Position)>,
    /// Finished records read but not yet committed.
    batch: Vec<UsageRecord>,
    /// Checkpoint on disk.
    saved: Position,
    /// Reused for parsing lines.
    scratch: Vec<u8>,
    /// `pos` is the end of everything appended before the entries now in the journal's tail,
    /// so the tail continues from it. False until the file has been read to its end once.
    synced: bool,
}

impl Loader {
    pub fn new(journal: Arc<Journal>, store: Store, batch_size: usize) -> std::io::Result<Self> {
        journal.attach_tail();
        let reader = Reader::open(journal.clone())?;
        Ok(Self {
            journal,
            store,
            batch_size: batch_size.max(1),
            reader: Some(reader),
        })
    }

    /// Runs `f` on the reader, on the blocking pool.
    async fn on_reader<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Reader) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let mut reader = match self.reader.take() {
            Some(r) => r,
            None => Reader::open(self.journal.clone())?,
        };
        match tokio::task::spawn_blocking(move || {
            let out = f(&mut reader);
            (reader, out)
        })
        .await
        {
            Ok((reader, out)) => {
                self.reader = Some(reader);
                out
            }
            // The reader was lost with the task; the next call starts again from the
            // checkpoint, which only replays what is idempotent to replay.
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// Reads what is new and loads it. Returns the number of records committed.
    pub async fn step(&mut self) -> std::io::Result<u64> {
        let batch_size = self.batch_size;
        let waiting = self
            .on_reader(move |r| {
                // While the database is unreachable the backlog stays on disk, not in memory.
                if r.batch.len() < batch_size * MAX_BACKLOG_BATCHES {
                    r.read_new()?;
                }
                r.bill_orphans();
                // Nothing to insert: the checkpoint moves now, in this one trip to the pool.
                if r.batch.is_empty() {
                    r.save_checkpoint()?;
                }
                Ok(r.batch.len())
            })
            .await?;
        if waiting == 0 {
            return Ok(0);
        }
        let mut committed = 0;
        while let Some(reader) = self.reader.as_mut() {
            let n = reader.batch.len().min(batch_size);
            let Some(chunk) = reader.batch.get(..n).filter(|c| !c.is_empty()) else {
                break;
            };
            match self.store.insert_usage(chunk).await {
                Ok(new) => {
                    committed += new;
                    reader.batch.drain(..n);
                }
                Err(e) => {
                    // The records stay in memory and in the journal; the checkpoint stays put.
                    tracing::warn!(error = %e, waiting = reader.batch.len(), "usage not loaded yet; will retry");
                    return Ok(committed);
                }
            }
        }
        self.on_reader(Reader::save_checkpoint).await?;
        Ok(committed)
    }

    /// Runs until `stop`, then loads what remains (for at most `drain` more).
    pub async fn run(mut self, every: Duration, stop: CancellationToken, drain: Duration) {
        let every = every.max(Duration::from_millis(5));
        loop {
            // Early when a full batch is waiting: under load the tail would otherwise fill, and
            // a full tail sends the loader to the file.
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(every) => {}
                () = self.journal.tail_filling() => {}
            }
            if let Err(e) = self.step().await {
                tracing::error!(error = %e, "usage journal read failed");
            }
        }
        let deadline = tokio::time::Instant::now() + drain;
        loop {
            match self.step().await {
                Ok(_) if self.backlog() == 0 => break,
                Ok(_) | Err(_) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(
                        waiting = self.backlog(),
                        "usage left in the journal at shutdown; loaded on next start"
                    );
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Records read and waiting to be committed (for tests and metrics).
    #[must_use]
    pub fn backlog(&self) -> usize {
        self.reader.as_ref().map_or(0, |r| r.batch.len())
    }
}

impl Reader {
    fn open(journal: Arc<Journal>) -> std::io::Result<Self> {
        let saved = read_checkpoint(journal.dir())?.unwrap_or(Position { seq: 0, offset: 0 });
        Ok(Self {
            journal,
            pos: saved,
            pending: FxHashMap::default(),
            batch: Vec::new(),
            saved,
            scratch: Vec::new(),
            synced: false,
        })
    }

    /// Takes what was appended since the last call: from the journal's tail while it continues
    /// exactly where reading stands, else from the files.
    fn read_new(&mut self) -> std::io::Result<()> {
        let tail = self.journal.take_tail();
        let mut complete = self.synced && !tail.incomplete;
        for t in tail.entries {
            if !complete {
                break;
            }
            if t.at < self.pos {
                continue; // already read from the file
            }
            if t.at != self.pos && !self.follows_sealed(t.at) {
                complete = false;
                break;
            }
            self.pos = Position {
                seq: t.at.seq,
                offset: t.end,
            };
            self.take(t.entry, t.at);
        }
        if complete {
            return Ok(());
        }
        // Everything not taken above is in the files, from `pos` on.
        self.read_files()?;
        self.synced = true;
        Ok(())
    }

    /// Whether `at` starts the segment after the one reading stands in, and reading stands at
    /// that (sealed) segment's end.
    fn follows_sealed(&self, at: Position) -> bool {
        at.offset == 0
            && at.seq == self.pos.seq + 1
            && std::fs::metadata(segment_path(self.journal.dir(), self.pos.seq))
                .is_ok_and(|m| m.len() == self.pos.offset)
    }

    /// Reads complete lines from the read position to the end of the journal.
    fn read_files(&mut self) -> std::io::Result<()> {
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
            for range in read.lines {
                let at = Position {
                    seq: self.pos.seq,
                    offset: self.pos.offset + range.start as u64,
                };
                if let Some(line) = read.buf.get(range) {
                    self.apply(line, at);
                }
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
        match parse_entry(line, &mut self.scratch) {
            Ok(entry) => self.take(entry, at),
            Err(e) => {
                tracing::warn!(error = %e, segment = at.seq, offset = at.offset, "unreadable journal line skipped")
            }
        }
    }

    fn take(&mut self, entry: Entry, at: Position) {
        match entry {
            Entry::Start(s) => {
                self.pending.insert(s.request_id, (s, at));
            }
            Entry::Finish(record) => {
                self.pending.remove(&record.request_id);
                self.batch.push(record);
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
                self.batch.push(start.interrupted());
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
}

/// Parses one journal line. The journal writes the entry's tag first (`{"t":"finish",…`), so
/// the body after it is parsed straight into its struct; serde's generic path for tagged enums
/// would first copy every field into an intermediate tree. Anything else takes that path.
fn parse_entry(line: &[u8], scratch: &mut Vec<u8>) -> serde_json::Result<Entry> {
    const FINISH: &[u8] = br#"{"t":"finish","#;
    const START: &[u8] = br#"{"t":"start","#;
    let mut body = |rest: &[u8]| {
        scratch.clear();
        scratch.push(b'{');
        scratch.extend_from_slice(rest);
    };
    if let Some(rest) = line.strip_prefix(FINISH) {
        body(rest);
        return serde_json::from_slice(scratch).map(Entry::Finish);
    }
    if let Some(rest) = line.strip_prefix(START) {
        body(rest);
        return serde_json::from_slice(scratch).map(Entry::Start);
    }
    serde_json::from_slice(line)
}

struct Lines {
    /// What was read, and where each complete, non-empty line is in it.
    buf: Vec<u8>,
    lines: Vec<Range<usize>>,
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
                buf: Vec::new(),
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
        if nl > start {
            lines.push(start..nl);
        }
        start = nl + 1;
    }
    let consumed = start as u64;
    Ok(Lines {
        buf,
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use aihub_core::config::UsageConfig;
    use aihub_core::{Currency, OrgId};
    use aihub_store::BackendKind;
    use aihub_store::testing::TestDb;

    use super::*;
    use crate::journal::StartEntry;

    fn record(org: OrgId) -> UsageRecord {
        UsageRecord {
            request_id: Uuid::now_v7(),
            org_id: org,
            user_id: None,
            key_id: None,
            team_id: None,
            endpoint: "chat.completions".into(),
            model: "m".into(),
            provider: None,
            upstream_model: None,
            prompt_tokens: 3,
            completion_tokens: 4,
            cached_tokens: 0,
            cost_micros: 5,
            currency: Currency::USD,
            status: 200,
            error_code: None,
            latency_ms: 1,
            ttft_ms: None,
            streamed: false,
            estimated: false,
            created_at: aihub_core::time::now(),
        }
    }

    fn start_of(r: &UsageRecord, boot: Uuid) -> StartEntry {
        StartEntry {
            request_id: r.request_id,
            boot,
            org_id: r.org_id,
            user_id: None,
            key_id: None,
            team_id: None,
            endpoint: r.endpoint.clone(),
            model: r.model.clone(),
            provider: None,
            upstream_model: None,
            streamed: false,
            prompt_tokens: 10,
            prompt_cost_micros: 7,
            currency: Currency::USD,
            created_at_ms: aihub_core::time::to_millis(r.created_at),
        }
    }

    fn config(dir: &Path) -> UsageConfig {
        UsageConfig {
            journal_dir: dir.join("journal"),
            segment_max_bytes: 4096,
            ..UsageConfig::default()
        }
    }

    #[tokio::test]
    async fn loads_pairs_replays_idempotently_and_bills_orphans() {
        let db = TestDb::new(BackendKind::Sqlite).await;
        let store = db.store().await;
        let dir = tempfile::tempdir().unwrap();
        let org = OrgId::new();

        // A first run: three finished requests (enough to rotate segments), one cut off.
        let first = Arc::new(Journal::open(&config(dir.path())).unwrap());
        let done: Vec<UsageRecord> = (0..30).map(|_| record(org)).collect();
        for r in &done {
            first
                .append(Entry::Start(start_of(r, first.boot())))
                .unwrap();
            first.append(Entry::Finish(r.clone())).unwrap();
        }
        let cut = record(org);
        first
            .append(Entry::Start(start_of(&cut, first.boot())))
            .unwrap();
        // A torn last line, as a crash in the middle of a write leaves it.
        let last = *segments(first.dir()).unwrap().last().unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(segment_path(first.dir(), last))
            .unwrap();
        f.write_all(b"{\"t\":\"finish\",\"request_id\":").unwrap();
        drop(f);

        let mut loader = Loader::new(first.clone(), store.clone(), 7).unwrap();
        assert_eq!(loader.step().await.unwrap(), 30);
        assert!(
            store.usage_record(cut.request_id).await.unwrap().is_none(),
            "still in flight in this run"
        );
        // Loading again finds nothing new.
        assert_eq!(loader.step().await.unwrap(), 0);

        // A second run (the first crashed): the cut-off request is billed as interrupted, and
        // re-reading from the checkpoint inserts nothing twice.
        let second = Arc::new(Journal::open(&config(dir.path())).unwrap());
        assert!(second.first_seq() > last);
        let mut loader = Loader::new(second.clone(), store.clone(), 7).unwrap();
        assert_eq!(loader.step().await.unwrap(), 1);
        let billed = store.usage_record(cut.request_id).await.unwrap().unwrap();
        assert_eq!(
            (
                billed.status,
                billed.error_code.as_deref(),
                billed.prompt_tokens,
                billed.cost_micros
            ),
            (0, Some("interrupted"), 10, 7)
        );
        assert_eq!(store.usage_count().await.unwrap(), 31);
        assert_eq!(loader.backlog(), 0);
        // Segments behind the checkpoint are gone; the checkpoint survives a new loader.
        assert!(
            segments(second.dir())
                .unwrap()
                .iter()
                .all(|s| *s >= second.first_seq() - 1)
        );
        let mut again = Loader::new(second.clone(), store.clone(), 7).unwrap();
        assert_eq!(again.step().await.unwrap(), 0);
        assert_eq!(store.usage_count().await.unwrap(), 31);
    }

    #[tokio::test]
    async fn usage_waits_in_the_journal_while_the_database_is_down() {
        let db = TestDb::new(BackendKind::Sqlite).await;
        let store = db.store().await;
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::open(&config(dir.path())).unwrap());
        let r = record(OrgId::new());
        journal
            .append(Entry::Start(start_of(&r, journal.boot())))
            .unwrap();
        journal.append(Entry::Finish(r.clone())).unwrap();

        let down = Store::connect(&db.config).await.unwrap();
        down.close().await;
        let mut loader = Loader::new(journal.clone(), down, 100).unwrap();
        assert_eq!(loader.step().await.unwrap(), 0);
        assert_eq!(loader.backlog(), 1, "kept for the next attempt");
        let cp = read_checkpoint(journal.dir()).unwrap();
        assert!(
            cp.is_none_or(|p| p.offset == 0),
            "the checkpoint did not move: {cp:?}"
        );

        // Back up: a new loader (as after a restart) loads it exactly once.
        let mut loader = Loader::new(journal, store.clone(), 100).unwrap();
        assert_eq!(loader.step().await.unwrap(), 1);
        assert_eq!(store.usage_record(r.request_id).await.unwrap().unwrap(), r);
    }

    /// Overwrites every line of the journal's segments with spaces, keeping lengths and line
    /// breaks: whatever is loaded afterwards cannot have come from the files.
    fn blank_segments(journal: &Journal) {
        for seq in segments(journal.dir()).unwrap() {
            let path = segment_path(journal.dir(), seq);
            let blank: Vec<u8> = std::fs::read(&path)
                .unwrap()
                .into_iter()
                .map(|b| if b == b'\n' { b } else { b' ' })
                .collect();
            std::fs::write(&path, blank).unwrap();
        }
    }

    #[tokio::test]
    async fn this_runs_entries_come_from_the_tail_across_segments() {
        let db = TestDb::new(BackendKind::Sqlite).await;
        let store = db.store().await;
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::open(&config(dir.path())).unwrap());
        let org = OrgId::new();
        let early = record(org);
        journal.append(Entry::Finish(early.clone())).unwrap();
        let mut loader = Loader::new(journal.clone(), store.clone(), 7).unwrap();
        assert_eq!(
            loader.step().await.unwrap(),
            1,
            "the first step reads the file"
        );

        let done: Vec<UsageRecord> = (0..40).map(|_| record(org)).collect();
        let open = record(org);
        for r in &done {
            journal
                .append(Entry::Start(start_of(r, journal.boot())))
                .unwrap();
            journal.append(Entry::Finish(r.clone())).unwrap();
        }
        journal
            .append(Entry::Start(start_of(&open, journal.boot())))
            .unwrap();
        assert!(segments(journal.dir()).unwrap().len() > 2, "rotated");
        blank_segments(&journal);
        assert_eq!(loader.step().await.unwrap(), 40);
        for r in &done {
            assert_eq!(
                store.usage_record(r.request_id).await.unwrap().as_ref(),
                Some(r)
            );
        }
        // The checkpoint stays at the start still waiting for its finish.
        let cp = read_checkpoint(journal.dir()).unwrap().unwrap();
        let (_, at) = loader.reader.as_ref().unwrap().pending[&open.request_id];
        assert_eq!(cp, at);
        journal.append(Entry::Finish(open.clone())).unwrap();
        assert_eq!(loader.step().await.unwrap(), 1);
        assert_eq!(store.usage_count().await.unwrap(), 42);
        let end = loader.reader.as_ref().unwrap().pos;
        assert_eq!(read_checkpoint(journal.dir()).unwrap(), Some(end));
        let last = *segments(journal.dir()).unwrap().last().unwrap();
        let len = std::fs::metadata(segment_path(journal.dir(), last))
            .unwrap()
            .len();
        assert_eq!(
            end,
            Position {
                seq: last,
                offset: len
            }
        );
    }

    #[tokio::test]
    async fn what_the_tail_missed_is_read_from_the_file_once() {
        let db = TestDb::new(BackendKind::Sqlite).await;
        let store = db.store().await;
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(
            Journal::open(&UsageConfig {
                journal_dir: dir.path().join("journal"),
                ..UsageConfig::default()
            })
            .unwrap(),
        );
        let mut loader = Loader::new(journal.clone(), store.clone(), 4096).unwrap();
        assert_eq!(loader.step().await.unwrap(), 0);
        let org = OrgId::new();
        // More than the tail holds between two steps.
        let n = crate::journal::TAIL_MAX + 25;
        let records: Vec<UsageRecord> = (0..n).map(|_| record(org)).collect();
        for r in &records {
            journal.append(Entry::Finish(r.clone())).unwrap();
        }
        assert_eq!(loader.step().await.unwrap(), u64::try_from(n).unwrap());
        // A second reader of the same journal took entries this one never saw: the next one
        // after them does not continue where this reader stands, so it goes to the file.
        let gap = record(org);
        journal.append(Entry::Finish(gap.clone())).unwrap();
        let taken = journal.take_tail();
        assert_eq!(taken.entries.len(), 1);
        let after = record(org);
        journal.append(Entry::Finish(after.clone())).unwrap();
        assert_eq!(loader.step().await.unwrap(), 2);
        assert!(store.usage_record(gap.request_id).await.unwrap().is_some());
        assert!(
            store
                .usage_record(after.request_id)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(
            store.usage_count().await.unwrap(),
            i64::try_from(n + 2).unwrap()
        );
        assert_eq!(loader.step().await.unwrap(), 0);
    }

    #[test]
    fn journal_lines_parse_on_the_fast_path_and_the_generic_one() {
        let r = record(OrgId::new());
        let s = start_of(&r, Uuid::now_v7());
        let mut scratch = Vec::new();
        for entry in [Entry::Finish(r.clone()), Entry::Start(s.clone())] {
            let line = serde_json::to_vec(&entry).unwrap();
            assert!(
                line.starts_with(br#"{"t":"finish","#) || line.starts_with(br#"{"t":"start","#),
                "the tag comes first, so the fast path applies"
            );
            assert_eq!(parse_entry(&line, &mut scratch).unwrap(), entry);
            // The tag elsewhere: the generic path reads it the same.
            let mut v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&line).unwrap();
            let tag = v.remove("t").unwrap();
            v.insert("t".into(), tag);
            let moved = serde_json::to_vec(&v).unwrap();
            assert!(!moved.starts_with(b"{\"t\""));
            assert_eq!(parse_entry(&moved, &mut scratch).unwrap(), entry);
        }
        assert!(parse_entry(br#"{"t":"finish","request_id":1}"#, &mut scratch).is_err());
        assert!(parse_entry(br#"{"t":"other"}"#, &mut scratch).is_err());
        assert!(parse_entry(b"not json", &mut scratch).is_err());
    }

    #[test]
    fn checkpoints_round_trip_and_bad_ones_restart_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_checkpoint(dir.path()).unwrap(), None);
        write_checkpoint(dir.path(), Position { seq: 3, offset: 99 }).unwrap();
        assert_eq!(
            read_checkpoint(dir.path()).unwrap(),
            Some(Position { seq: 3, offset: 99 })
        );
        std::fs::write(dir.path().join(CHECKPOINT), "garbage").unwrap();
        assert_eq!(read_checkpoint(dir.path()).unwrap(), None);
    }
}
