//! The usage journal: an append-only local file that every metered request is written to
//! before its response completes. Two entries per request: `Start` before the upstream call
//! (so a request cut short by a crash is still billed) and `Finish` with the final usage.
//!
//! Durability: an append returns once its line is in the kernel, written by `write(2)` under a
//! lock — so a process crash (SIGKILL included) loses nothing acknowledged, because the kernel
//! holds the bytes. `fdatasync` runs every `usage.fsync_interval_ms`, bounding what an OS crash
//! or power loss can take. Each process start writes new segment files, so segments of earlier
//! runs are sealed; the [`loader`](crate::loader) moves entries into the database.
//!
//! Group commit: lines wait in a buffer and one `write(2)` takes all that are waiting. A
//! request's append ([`Journal::append_grouped`]) may let the scheduler run the other ready
//! tasks once before it writes, so that their entries join its write: under load one system
//! call carries several requests' entries. It only waits while waiting has paid off — while
//! others' entries joined recent writes — and tries again every [`PROBE_EVERY`] appends, so at
//! a low rate an append is one write as before.
//!
//! The file is the record; the loader of this process need not read it back. Once a loader has
//! attached, every appended entry is also kept in memory with its position in the file (the
//! *tail*), and the loader takes entries from there, in file order, without parsing them again.
//! The tail is bounded: past [`TAIL_MAX`] entries not yet taken it stops collecting and says so,
//! and the loader reads the file instead, as it does on start.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aihub_core::config::UsageConfig;
use aihub_core::{Currency, KeyId, OrgId, TeamId, UserId};
use aihub_store::UsageRecord;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

mod encode;

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t")]
pub enum Entry {
    #[serde(rename = "start")]
    Start(StartEntry),
    /// The request's usage record.
    #[serde(rename = "finish")]
    Finish(UsageRecord),
}

/// Written before the upstream call: enough to bill the request if no `Finish` ever follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartEntry {
    pub request_id: Uuid,
    /// The process run that wrote it.
    pub boot: Uuid,
    pub org_id: OrgId,
    pub user_id: Option<UserId>,
    pub key_id: Option<KeyId>,
    pub team_id: Option<TeamId>,
    pub endpoint: String,
    pub model: String,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub streamed: bool,
    /// Prompt tokens estimated before the call.
    pub prompt_tokens: u64,
    /// Cost of those prompt tokens at the price in effect (0 when unpriced).
    pub prompt_cost_micros: i64,
    pub currency: Currency,
    pub created_at_ms: i64,
}

impl StartEntry {
    /// The record of a request whose process ended before it finished: billed for its prompt
    /// (estimated), with no response.
    #[must_use]
    pub fn interrupted(&self) -> UsageRecord {
        UsageRecord {
            request_id: self.request_id,
            org_id: self.org_id,
            user_id: self.user_id,
            key_id: self.key_id,
            team_id: self.team_id,
            endpoint: self.endpoint.clone(),
            model: self.model.clone(),
            provider: self.provider.clone(),
            upstream_model: self.upstream_model.clone(),
            prompt_tokens: i64::try_from(self.prompt_tokens).unwrap_or(i64::MAX),
            completion_tokens: 0,
            cached_tokens: 0,
            cost_micros: self.prompt_cost_micros,
            currency: self.currency,
            status: 0,
            error_code: Some("interrupted".to_owned()),
            latency_ms: 0,
            ttft_ms: None,
            streamed: self.streamed,
            estimated: true,
            created_at: aihub_core::time::from_millis(self.created_at_ms),
        }
    }
}

const SEGMENT_PREFIX: &str = "usage-";
const SEGMENT_SUFFIX: &str = ".jsonl";

/// Path of segment `seq` in `dir`.
#[must_use]
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{seq:020}{SEGMENT_SUFFIX}"))
}

/// Sequence numbers of the segments in `dir`, ascending.
pub fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name
            .strip_prefix(SEGMENT_PREFIX)
            .and_then(|r| r.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|n| n.parse().ok())
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// A position in the journal: segment and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub seq: u64,
    pub offset: u64,
}

/// Most entries the tail holds for the loader; beyond it the loader reads the file. Two entries
/// per request: 16 seconds of requests at 2,000 a second, 1.3 at 25,000. At saturation the
/// loader shares the cores with the requests and a step can take a few hundred milliseconds;
/// a tail that overflows then sends it to re-read and re-parse the files, which costs the
/// requests CPU and makes the next step slower still. A quarter of this (the limit before)
/// overflowed that way on two cores at 25,000 requests a second.
pub const TAIL_MAX: usize = 65_536;

/// An entry as appended: the entry itself and where its line is in the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub entry: Entry,
    /// Where the line starts.
    pub at: Position,
    /// Offset just after the line (in the same segment).
    pub end: u64,
}

/// What [`Journal::take_tail`] hands over.
#[derive(Debug, Default)]
pub struct Tail {
    /// Entries appended since the last take, in file order.
    pub entries: Vec<Appended>,
    /// Some entries since the last take are not among them (the tail was full, or a write
    /// failed): the file has them.
    pub incomplete: bool,
}

/// Grouped appends try waiting for others once in this many appends while waiting is off.
pub const PROBE_EVERY: u32 = 64;

/// Consecutive waits that no other entry joined, after which appends stop waiting.
const MISSES_TO_STOP: u32 = 8;

/// How a write of waiting lines went, for every append among them.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    /// `Err` with the error's kind when the write failed.
    result: Result<(), io::ErrorKind>,
    /// Entries the write carried.
    entries: usize,
}

/// The lines waiting for one write; each append holds the batch its line is in.
#[derive(Default)]
struct Batch {
    outcome: OnceLock<Outcome>,
}

struct Writer {
    file: File,
    seq: u64,
    len: u64,
    /// Encoded lines waiting for the next write, in submission order.
    pending: Vec<u8>,
    /// Their entries and line lengths, for the tail.
    pending_entries: Vec<(Entry, usize)>,
    /// The batch the waiting lines belong to; after a write that appends waited on, a new one.
    batch: Arc<Batch>,
    /// `None` until a loader attaches.
    tail: Option<Tail>,
}

/// Whether grouped appends currently wait for others (see the module documentation).
#[derive(Default)]
struct Grouping {
    waiting: AtomicBool,
    misses: AtomicU32,
    appends: AtomicU32,
}

impl Grouping {
    fn should_wait(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
            || self
                .appends
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(PROBE_EVERY)
    }

    /// After a wait: the write that carried the entry carried `entries` in all.
    fn observe(&self, entries: usize) {
        if entries > 1 {
            self.misses.store(0, Ordering::Relaxed);
            self.waiting.store(true, Ordering::Relaxed);
        } else if self.misses.fetch_add(1, Ordering::Relaxed) + 1 >= MISSES_TO_STOP {
            self.misses.store(0, Ordering::Relaxed);
            self.waiting.store(false, Ordering::Relaxed);
        }
    }
}

pub struct Journal {
    dir: PathBuf,
    boot: Uuid,
    first_seq: u64,
    segment_max: u64,
    writer: Mutex<Writer>,
    /// Entries in the last tail taken: the next tail's buffer is sized by it, outside the lock.
    tail_hint: AtomicUsize,
    grouping: Grouping,
    /// Entries in the tail at which the loader is woken before its interval is up: a full
    /// batch of records (`usage.load_batch`, two entries each), at most half the tail. Under
    /// load the tail is taken long before it fills (a full tail would send the loader to the
    /// file).
    wake_at: usize,
    /// Signalled when the tail reaches `wake_at` entries.
    tail_filling: Notify,
    /// `write(2)`s of lines so far.
    writes: AtomicU64,
}

impl Journal {
    /// Opens the journal directory (creating it) and starts a new segment for this run.
    pub fn open(config: &UsageConfig) -> io::Result<Self> {
        std::fs::create_dir_all(&config.journal_dir)?;
        let first_seq = segments(&config.journal_dir)?.last().map_or(1, |s| s + 1);
        let file = open_segment(&config.journal_dir, first_seq)?;
        Ok(Self {
            dir: config.journal_dir.clone(),
            boot: Uuid::now_v7(),
            first_seq,
            segment_max: config.segment_max_bytes.max(4096),
            tail_hint: AtomicUsize::new(0),
            writer: Mutex::new(Writer {
                file,
                seq: first_seq,
                len: 0,
                pending: Vec::with_capacity(4096),
                pending_entries: Vec::with_capacity(16),
                batch: Arc::default(),
                tail: None,
            }),
            grouping: Grouping::default(),
            wake_at: config.load_batch.max(1).saturating_mul(2).min(TAIL_MAX / 2),
            tail_filling: Notify::new(),
            writes: AtomicU64::new(0),
        })
    }

    /// Writes of lines to the file so far: with group commit, fewer than the entries appended.
    #[must_use]
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Identifies this process run in `Start` entries.
    #[must_use]
    pub fn boot(&self) -> Uuid {
        self.boot
    }

    /// The first segment written by this run; lower ones are sealed.
    #[must_use]
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends one entry, with the lines of others waiting, in one write. Returns once the
    /// kernel has the bytes.
    pub fn append(&self, entry: Entry) -> io::Result<()> {
        let mut w = self.lock();
        self.queue(&mut w, entry);
        self.write_pending(&mut w).map(|_| ())
    }

    /// Appends one entry like [`Journal::append`], letting the other ready tasks run once first
    /// while that has been joining their entries to the write (group commit). Returns once
    /// the kernel has the bytes.
    pub async fn append_grouped(&self, entry: Entry) -> io::Result<()> {
        if !self.grouping.should_wait() {
            return self.append(entry);
        }
        let batch = {
            let mut w = self.lock();
            self.queue(&mut w, entry);
            w.batch.clone()
        };
        tokio::task::yield_now().await;
        let mut w = self.lock();
        let outcome = match batch.outcome.get() {
            // Another append wrote this line with its own.
            Some(o) => *o,
            None => match self.write_pending(&mut w) {
                Ok(entries) => Outcome {
                    result: Ok(()),
                    entries,
                },
                Err(e) => {
                    drop(w);
                    self.grouping.observe(1);
                    return Err(e);
                }
            },
        };
        drop(w);
        self.grouping.observe(outcome.entries);
        outcome
            .result
            .map_err(|kind| io::Error::new(kind, "the usage journal write failed"))
    }

    /// Encodes `entry` as a line waiting for the next write.
    fn queue(&self, w: &mut Writer, entry: Entry) {
        let start = w.pending.len();
        encode::entry(&mut w.pending, &entry);
        w.pending.push(b'\n');
        let len = w.pending.len() - start;
        w.pending_entries.push((entry, len));
    }

    /// Writes every waiting line with one write and completes their batch. Returns how many
    /// entries it wrote.
    fn write_pending(&self, w: &mut Writer) -> io::Result<usize> {
        let entries = w.pending_entries.len();
        if entries == 0 {
            return Ok(0);
        }
        let result = self.write_locked(w);
        if Arc::get_mut(&mut w.batch).is_none() {
            // Appends are waiting on this batch: they read the outcome, and the next lines
            // form a new one. (Otherwise the batch is reused as it is: no allocation.)
            let _ = w.batch.outcome.set(Outcome {
                result: result.as_ref().copied().map_err(io::Error::kind),
                entries,
            });
            w.batch = Arc::default();
        }
        w.pending.clear();
        w.pending_entries.clear();
        result.map(|()| entries)
    }

    fn write_locked(&self, w: &mut Writer) -> io::Result<()> {
        let mut written = Ok(());
        if w.len > 0 && w.len + w.pending.len() as u64 > self.segment_max {
            written = w.file.sync_data().and_then(|()| {
                let seq = w.seq + 1;
                w.file = open_segment(&self.dir, seq)?;
                w.seq = seq;
                w.len = 0;
                Ok(())
            });
        }
        if written.is_ok() {
            self.writes.fetch_add(1, Ordering::Relaxed);
            written = w.file.write_all(&w.pending);
        }
        if written.is_err() {
            // Part of the lines may have reached the file: offsets are re-read from it, and the
            // loader goes to the file for what follows.
            w.len = w.file.metadata().map_or(w.len, |m| m.len());
            if let Some(tail) = &mut w.tail {
                tail.incomplete = true;
            }
            return written;
        }
        let (seq, mut offset) = (w.seq, w.len);
        w.len += w.pending.len() as u64;
        if let Some(tail) = &mut w.tail {
            let before = tail.entries.len();
            for (entry, len) in w.pending_entries.drain(..) {
                let at = Position { seq, offset };
                offset += len as u64;
                if tail.entries.len() < TAIL_MAX {
                    tail.entries.push(Appended {
                        entry,
                        at,
                        end: offset,
                    });
                } else {
                    tail.incomplete = true;
                }
            }
            if before < self.wake_at && tail.entries.len() >= self.wake_at {
                self.tail_filling.notify_one();
            }
        }
        Ok(())
    }

    /// Resolves when a full batch of records is waiting in the tail (or was before this call,
    /// if no one was waiting then).
    pub async fn tail_filling(&self) {
        self.tail_filling.notified().await;
    }

    /// Starts keeping appended entries for a loader (see the module documentation).
    pub fn attach_tail(&self) {
        self.lock().tail.get_or_insert_with(Tail::default);
    }

    /// The entries appended since the last take (empty before [`Journal::attach_tail`]).
    pub fn take_tail(&self) -> Tail {
        // The next buffer is allocated before the lock: requests append under it.
        let fresh = Tail {
            entries: Vec::with_capacity(self.tail_hint.load(Ordering::Relaxed).min(TAIL_MAX)),
            incomplete: false,
        };
        let taken = {
            let mut w = self.lock();
            match &mut w.tail {
                Some(tail) => std::mem::replace(tail, fresh),
                None => Tail::default(),
            }
        };
        self.tail_hint.store(taken.entries.len(), Ordering::Relaxed);
        taken
    }

    /// Forces appended entries to stable storage, writing any lines still waiting first.
    pub fn sync(&self) -> io::Result<()> {
        let file = {
            let mut w = self.lock();
            self.write_pending(&mut w)?;
            w.file.try_clone()?
        };
        file.sync_data()
    }

    /// Syncs every `every` until `stop`, then once more.
    pub async fn run_sync(self: std::sync::Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let this = self.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || this.sync()).await {
                tracing::error!(error = %e, "usage journal fsync failed");
            }
        }
        if let Err(e) = self.sync() {
            tracing::error!(error = %e, "usage journal fsync failed");
        }
    }
}

fn open_segment(dir: &Path, seq: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, seq))?;
    // Make the new file's directory entry durable too.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn finish(id: Uuid) -> UsageRecord {
        UsageRecord {
            request_id: id,
            org_id: OrgId::new(),
            user_id: None,
            key_id: None,
            team_id: None,
            endpoint: "chat.completions".into(),
            model: "m".into(),
            provider: None,
            upstream_model: None,
            prompt_tokens: 1,
            completion_tokens: 2,
            cached_tokens: 0,
            cost_micros: 3,
            currency: Currency::USD,
            status: 200,
            error_code: None,
            latency_ms: 4,
            ttft_ms: None,
            streamed: false,
            estimated: false,
            created_at: aihub_core::time::from_millis(5),
        }
    }

    /// A journal in `dir` whose segments rotate every 4 KiB.
    fn small_segments(dir: &Path) -> UsageConfig {
        UsageConfig {
            journal_dir: dir.join("j"),
            segment_max_bytes: 4096,
            ..UsageConfig::default()
        }
    }

    #[test]
    fn appends_lines_and_rotates_segments() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = small_segments(dir.path());
        let j = Journal::open(&cfg).unwrap();
        assert_eq!(j.first_seq(), 1);
        for _ in 0..100 {
            j.append(Entry::Finish(finish(Uuid::now_v7()))).unwrap();
        }
        j.sync().unwrap();
        let segs = segments(&cfg.journal_dir).unwrap();
        assert!(segs.len() > 1, "rotated: {segs:?}");
        let mut lines = 0;
        for s in &segs {
            let text = std::fs::read_to_string(segment_path(&cfg.journal_dir, *s)).unwrap();
            assert!(text.len() as u64 <= 4096 + 1024);
            for line in text.lines() {
                let e: Entry = serde_json::from_str(line).unwrap();
                assert!(matches!(e, Entry::Finish(_)));
                lines += 1;
            }
        }
        assert_eq!(lines, 100);
        // A new run starts after the last segment.
        let again = Journal::open(&cfg).unwrap();
        assert_eq!(again.first_seq(), segs.last().unwrap() + 1);
        assert_ne!(again.boot(), j.boot());
    }

    #[test]
    fn the_tail_holds_each_entry_with_where_its_line_is() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = small_segments(dir.path());
        let j = Journal::open(&cfg).unwrap();
        j.append(Entry::Finish(finish(Uuid::now_v7()))).unwrap();
        let before = j.take_tail();
        assert!(
            before.entries.is_empty() && !before.incomplete,
            "no loader yet"
        );
        j.attach_tail();
        let written: Vec<Entry> = (0..40)
            .map(|_| Entry::Finish(finish(Uuid::now_v7())))
            .collect();
        for e in &written {
            j.append(e.clone()).unwrap();
        }
        let tail = j.take_tail();
        assert!(!tail.incomplete);
        let got: Vec<Entry> = tail.entries.iter().map(|a| a.entry.clone()).collect();
        assert_eq!(got, written);
        let seqs: std::collections::BTreeSet<u64> = tail.entries.iter().map(|a| a.at.seq).collect();
        assert!(seqs.len() > 1, "rotated while collecting: {seqs:?}");
        for a in &tail.entries {
            let text = std::fs::read(segment_path(&cfg.journal_dir, a.at.seq)).unwrap();
            let line =
                &text[usize::try_from(a.at.offset).unwrap()..usize::try_from(a.end).unwrap()];
            assert_eq!(line.last(), Some(&b'\n'));
            let parsed: Entry = serde_json::from_slice(line).unwrap();
            assert_eq!(parsed, a.entry);
        }
        assert!(j.take_tail().entries.is_empty(), "taken once");
    }

    #[test]
    fn a_full_tail_stops_collecting_and_says_so() {
        let (_dir, _, j) = fresh();
        j.attach_tail();
        let e = Entry::Finish(finish(Uuid::now_v7()));
        for _ in 0..=TAIL_MAX {
            j.append(e.clone()).unwrap();
        }
        let tail = j.take_tail();
        assert_eq!(tail.entries.len(), TAIL_MAX);
        assert!(tail.incomplete);
        j.append(e).unwrap();
        let next = j.take_tail();
        assert_eq!(next.entries.len(), 1);
        assert!(!next.incomplete, "collecting again after a take");
    }

    /// A journal with the default settings in a new temporary directory (kept while it lives).
    fn fresh() -> (tempfile::TempDir, UsageConfig, Arc<Journal>) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = UsageConfig {
            journal_dir: dir.path().join("j"),
            ..UsageConfig::default()
        };
        let j = Arc::new(Journal::open(&cfg).unwrap());
        (dir, cfg, j)
    }

    /// `n` grouped appends, each awaited before the next: none can join another's write.
    async fn one_at_a_time(j: &Journal, n: u32) {
        for _ in 0..n {
            j.append_grouped(Entry::Finish(finish(Uuid::now_v7())))
                .await
                .unwrap();
        }
    }

    /// `n` grouped appends in tasks of their own, all spawned before any runs, on this thread.
    async fn grouped_wave(j: &Arc<Journal>, n: usize) -> Vec<io::Result<()>> {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let j = j.clone();
                tokio::spawn(async move {
                    j.append_grouped(Entry::Finish(finish(Uuid::now_v7())))
                        .await
                })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        results
    }

    fn lines_in(cfg: &UsageConfig) -> usize {
        segments(&cfg.journal_dir)
            .unwrap()
            .iter()
            .map(|s| {
                let text = std::fs::read_to_string(segment_path(&cfg.journal_dir, *s)).unwrap();
                text.lines()
                    .inspect(|l| {
                        serde_json::from_str::<Entry>(l).unwrap();
                    })
                    .count()
            })
            .sum()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_appends_share_a_write_once_waiting_pays_off() {
        let (_dir, cfg, j) = fresh();
        j.attach_tail();

        // One at a time, nothing can join: one write each, and appends stop waiting.
        one_at_a_time(&j, 100).await;
        assert_eq!(j.writes(), 100);
        assert!(!j.grouping.waiting.load(Ordering::Relaxed));

        // Many at once: a probing append finds others' lines joined to its write...
        let first = grouped_wave(&j, 2 * PROBE_EVERY as usize).await;
        assert!(first.iter().all(Result::is_ok));
        assert!(
            j.grouping.waiting.load(Ordering::Relaxed),
            "waiting pays off"
        );
        let before = j.writes();
        assert!(before < 100 + 2 * u64::from(PROBE_EVERY));

        // ...so the next wave waits, and its 200 entries take one write.
        let second = grouped_wave(&j, 200).await;
        assert!(second.iter().all(Result::is_ok));
        assert_eq!(j.writes(), before + 1);

        // Every line is in the file once, and in the tail in file order.
        let total = 100 + 2 * PROBE_EVERY as usize + 200;
        assert_eq!(lines_in(&cfg), total);
        let tail = j.take_tail();
        assert_eq!(tail.entries.len(), total);
        assert!(!tail.incomplete);
        assert!(tail.entries.windows(2).all(|w| w[0].end == w[1].at.offset));

        // Back to one at a time: after a few waits that no one joins, appends stop waiting.
        one_at_a_time(&j, MISSES_TO_STOP).await;
        assert!(!j.grouping.waiting.load(Ordering::Relaxed));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_write_fails_every_append_it_carried() {
        let (_dir, cfg, j) = fresh();
        j.attach_tail();
        j.grouping.waiting.store(true, Ordering::Relaxed);
        let path = segment_path(&cfg.journal_dir, j.first_seq());
        // A descriptor that cannot write stands in for a full or failing disk.
        j.lock().file = File::open(&path).unwrap();
        let results = grouped_wave(&j, 5).await;
        assert_eq!(results.len(), 5);
        assert!(results.iter().all(Result::is_err), "{results:?}");
        assert!(j.append(Entry::Finish(finish(Uuid::now_v7()))).is_err());
        let tail = j.take_tail();
        assert!(
            tail.entries.is_empty() && tail.incomplete,
            "the loader reads the file"
        );

        // Once writes work again, so do appends; nothing failed is left waiting.
        j.lock().file = OpenOptions::new().append(true).open(&path).unwrap();
        assert!(grouped_wave(&j, 3).await.iter().all(Result::is_ok));
        assert_eq!(lines_in(&cfg), 3);
    }

    #[test]
    fn sync_writes_lines_still_waiting() {
        let (_dir, cfg, j) = fresh();
        {
            let mut w = j.lock();
            j.queue(&mut w, Entry::Finish(finish(Uuid::now_v7())));
        }
        assert_eq!(lines_in(&cfg), 0);
        j.sync().unwrap();
        assert_eq!(lines_in(&cfg), 1);
        j.sync().unwrap();
        assert_eq!(j.writes(), 1, "nothing left to write");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_loader_is_woken_when_the_tail_fills() {
        let (_dir, cfg, j) = fresh();
        j.attach_tail();
        let e = Entry::Finish(finish(Uuid::now_v7()));
        let wait = Duration::from_millis(50);
        // A batch of `load_batch` records is twice as many entries (start and finish).
        for _ in 1..2 * cfg.load_batch {
            j.append(e.clone()).unwrap();
        }
        assert!(tokio::time::timeout(wait, j.tail_filling()).await.is_err());
        j.append(e.clone()).unwrap();
        assert!(tokio::time::timeout(wait, j.tail_filling()).await.is_ok());
        // Once per filling: more entries before a take do not wake it again.
        j.append(e).unwrap();
        assert!(tokio::time::timeout(wait, j.tail_filling()).await.is_err());
    }

    #[test]
    fn a_batch_larger_than_the_tail_still_wakes_the_loader_before_it_fills() {
        let dir = tempfile::tempdir().unwrap();
        let open = |load_batch| {
            Journal::open(&UsageConfig {
                journal_dir: dir.path().join("j"),
                load_batch,
                ..UsageConfig::default()
            })
            .unwrap()
        };
        assert_eq!(open(1_000).wake_at, 2_000);
        assert_eq!(open(1_000_000).wake_at, TAIL_MAX / 2);
        assert_eq!(open(0).wake_at, 2);
    }

    #[test]
    fn interrupted_records_bill_the_prompt() {
        let s = StartEntry {
            request_id: Uuid::now_v7(),
            boot: Uuid::now_v7(),
            org_id: OrgId::new(),
            user_id: Some(UserId::new()),
            key_id: Some(KeyId::new()),
            team_id: None,
            endpoint: "chat.completions".into(),
            model: "m".into(),
            provider: Some("p".into()),
            upstream_model: Some("u".into()),
            streamed: true,
            prompt_tokens: 42,
            prompt_cost_micros: 99,
            currency: Currency::CNY,
            created_at_ms: 1_000,
        };
        let f = s.interrupted();
        assert_eq!(
            (f.prompt_tokens, f.completion_tokens, f.cost_micros),
            (42, 0, 99)
        );
        assert_eq!(
            (f.status, f.error_code.as_deref(), f.estimated),
            (0, Some("interrupted"), true)
        );
        let r = f;
        assert_eq!(r.request_id, s.request_id);
        assert_eq!(r.currency, Currency::CNY);
        assert_eq!(r.created_at.timestamp_millis(), 1_000);
    }
}
