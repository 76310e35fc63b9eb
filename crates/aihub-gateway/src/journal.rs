//! The usage journal: an append-only local file that every metered request is written to
//! before its response completes. Two entries per request: `Start` before the upstream call
//! (so a request cut short by a crash is still billed) and `Finish` with the final usage.
//!
//! Durability: each entry is one `write(2)` of one line, under a lock, before the caller
//! proceeds — so a process crash (SIGKILL included) loses nothing acknowledged, because the
//! kernel holds the bytes. `fdatasync` runs every `usage.fsync_interval_ms`, bounding what an OS
//! crash or power loss can take. Each process start writes new segment files, so segments of
//! earlier runs are sealed; the [`loader`](crate::loader) moves entries into the database.
//!
//! The file is the record; the loader of this process need not read it back. Once a loader has
//! attached, every appended entry is also kept in memory with its position in the file (the
//! *tail*), and the loader takes entries from there, in file order, without parsing them again.
//! The tail is bounded: past [`TAIL_MAX`] entries not yet taken it stops collecting and says so,
//! and the loader reads the file instead, as it does on start.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aihub_core::config::UsageConfig;
use aihub_core::{Currency, KeyId, OrgId, TeamId, UserId};
use aihub_store::UsageRecord;
use serde::{Deserialize, Serialize};
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

/// Most entries the tail holds for the loader; beyond it the loader reads the file. About
/// eight seconds of requests at 2,000 a second, a few megabytes.
pub const TAIL_MAX: usize = 16_384;

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

struct Writer {
    file: File,
    seq: u64,
    len: u64,
    buf: Vec<u8>,
    /// `None` until a loader attaches.
    tail: Option<Tail>,
}

pub struct Journal {
    dir: PathBuf,
    boot: Uuid,
    first_seq: u64,
    segment_max: u64,
    writer: Mutex<Writer>,
    /// Entries in the last tail taken: the next tail's buffer is sized by it, outside the lock.
    tail_hint: AtomicUsize,
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
                buf: Vec::with_capacity(1024),
                tail: None,
            }),
        })
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

    /// Appends one entry with a single write. Returns once the kernel has the bytes.
    pub fn append(&self, entry: Entry) -> io::Result<()> {
        let mut w = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let w = &mut *w;
        w.buf.clear();
        encode::entry(&mut w.buf, &entry);
        w.buf.push(b'\n');
        if w.len > 0 && w.len + w.buf.len() as u64 > self.segment_max {
            w.file.sync_data()?;
            let seq = w.seq + 1;
            w.file = open_segment(&self.dir, seq)?;
            w.seq = seq;
            w.len = 0;
        }
        let at = Position {
            seq: w.seq,
            offset: w.len,
        };
        if let Err(e) = w.file.write_all(&w.buf) {
            // Part of the line may have reached the file: offsets are re-read from it, and the
            // loader goes to the file for what follows.
            w.len = w.file.metadata().map_or(w.len, |m| m.len());
            if let Some(tail) = &mut w.tail {
                tail.incomplete = true;
            }
            return Err(e);
        }
        w.len += w.buf.len() as u64;
        if let Some(tail) = &mut w.tail {
            if tail.entries.len() < TAIL_MAX {
                tail.entries.push(Appended {
                    entry,
                    at,
                    end: w.len,
                });
            } else {
                tail.incomplete = true;
            }
        }
        Ok(())
    }

    /// Starts keeping appended entries for a loader (see the module documentation).
    pub fn attach_tail(&self) {
        let mut w = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        w.tail.get_or_insert_with(Tail::default);
    }

    /// The entries appended since the last take (empty before [`Journal::attach_tail`]).
    pub fn take_tail(&self) -> Tail {
        // The next buffer is allocated before the lock: requests append under it.
        let fresh = Tail {
            entries: Vec::with_capacity(self.tail_hint.load(Ordering::Relaxed).min(TAIL_MAX)),
            incomplete: false,
        };
        let taken = {
            let mut w = self
                .writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match &mut w.tail {
                Some(tail) => std::mem::replace(tail, fresh),
                None => Tail::default(),
            }
        };
        self.tail_hint.store(taken.entries.len(), Ordering::Relaxed);
        taken
    }

    /// Forces appended entries to stable storage.
    pub fn sync(&self) -> io::Result<()> {
        let file = {
            let w = self
                .writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        let dir = tempfile::tempdir().unwrap();
        let cfg = UsageConfig {
            journal_dir: dir.path().join("j"),
            ..UsageConfig::default()
        };
        let j = Journal::open(&cfg).unwrap();
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
