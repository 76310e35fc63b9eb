//! In-process counters: exact on a single node. One mutex guards every counter, so all checks
//! and reservations of a request happen as one atomic step; the critical section is a few
//! hash lookups and never awaits.

use std::sync::Mutex;

use rustc_hash::FxHashMap;

use super::checks::{Cell, CellKind, Checks, LedgerKey, Refusal};
use super::gcra;
use super::{RateHeaders, Settled};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerState {
    pub spent: i64,
    pub reserved: i64,
    /// Unix ms after which the entry may be dropped (its period is over).
    pub expires_ms: Option<i64>,
}

/// Keyed by ids the server minted (rules, budgets, organizations), never by client input, so
/// the fast non-keyed hash is safe here.
#[derive(Default)]
struct State {
    tats: FxHashMap<Cell, i64>,
    running: FxHashMap<Cell, u64>,
    ledgers: FxHashMap<LedgerKey, LedgerState>,
}

/// What an admission attempt found.
#[derive(Debug)]
pub enum Outcome {
    Admitted(RateHeaders),
    Refused(Refusal, RateHeaders),
    /// These ledgers (indices into `Checks::ledgers`) have no spend loaded yet.
    NeedBase(Vec<usize>),
}

/// Which parts of the checks a call covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    pub limits: bool,
    pub ledgers: bool,
}

#[derive(Default)]
pub struct Local {
    state: Mutex<State>,
}

impl Local {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks everything in `parts` and, if all pass, takes it: rate cells advance, running
    /// counts grow, ledgers reserve.
    pub fn admit(&self, c: &Checks, parts: Parts, now_us: i64) -> Outcome {
        let mut st = self.lock();
        if parts.ledgers {
            let missing: Vec<usize> = c
                .ledgers
                .iter()
                .enumerate()
                .filter(|(_, l)| !st.ledgers.contains_key(&l.key))
                .map(|(i, _)| i)
                .collect();
            if !missing.is_empty() {
                return Outcome::NeedBase(missing);
            }
        }
        let mut headers = RateHeaders::default();
        let mut refusal: Option<Refusal> = None;
        let mut new_tats: Vec<(Cell, i64)> = Vec::with_capacity(c.rates.len() + 1);
        if parts.limits {
            for r in &c.rates {
                let d = gcra::check(r.per_minute, st.tats.get(&r.cell).copied(), r.cost, now_us);
                let w = super::checks::window(r.per_minute, d.remaining, d.reset_us);
                match r.cell.kind {
                    CellKind::Tpm => headers.merge_tokens(w),
                    _ => headers.merge_requests(w),
                }
                if d.allowed {
                    new_tats.push((r.cell, d.new_tat));
                } else {
                    let worse = match &refusal {
                        Some(Refusal::Rate {
                            retry_after_us: Some(prev),
                            ..
                        }) => d.retry_after_us.is_none_or(|r| r > *prev),
                        Some(_) => false,
                        None => true,
                    };
                    if worse {
                        refusal = Some(Refusal::Rate {
                            kind: r.cell.kind,
                            per_minute: r.per_minute,
                            origin: r.origin,
                            per_model: r.per_model,
                            retry_after_us: d.retry_after_us,
                        });
                    }
                }
            }
            if refusal.is_none() {
                for k in &c.concurrency {
                    if st.running.get(&k.cell).copied().unwrap_or(0) >= k.limit {
                        refusal = Some(Refusal::Concurrency {
                            limit: k.limit,
                            origin: k.origin,
                            per_model: k.per_model,
                        });
                        break;
                    }
                }
            }
        }
        if parts.ledgers && refusal.is_none() {
            for (index, l) in c.ledgers.iter().enumerate() {
                let Some(&s) = st.ledgers.get(&l.key) else {
                    continue; // just checked: every ledger is loaded
                };
                if l.amount > 0
                    && s.spent.saturating_add(s.reserved).saturating_add(l.amount) > l.limit
                {
                    let throttled = l.throttle.as_ref().and_then(|t| {
                        let d = gcra::check(t.per_minute, st.tats.get(&t.cell).copied(), 1, now_us);
                        d.allowed.then_some((t.cell, d.new_tat))
                    });
                    match throttled {
                        Some(tat) => new_tats.push(tat),
                        None => {
                            refusal = Some(Refusal::Ledger {
                                index,
                                spent: s.spent,
                            });
                            break;
                        }
                    }
                }
            }
        }
        if let Some(r) = refusal {
            return Outcome::Refused(r, headers);
        }
        for (cell, tat) in new_tats {
            st.tats.insert(cell, tat);
        }
        if parts.limits {
            for k in &c.concurrency {
                *st.running.entry(k.cell).or_insert(0) += 1;
            }
        }
        if parts.ledgers {
            for l in &c.ledgers {
                if let Some(s) = st.ledgers.get_mut(&l.key) {
                    s.reserved = s.reserved.saturating_add(l.amount);
                }
            }
        }
        Outcome::Admitted(headers)
    }

    /// Sets a ledger's spend loaded from the database, unless it is already known.
    pub fn seed(&self, key: LedgerKey, spent: i64, expires_ms: Option<i64>) {
        self.lock().ledgers.entry(key).or_insert(LedgerState {
            spent,
            reserved: 0,
            expires_ms,
        });
    }

    /// Ends an admitted request: frees its concurrency slots, corrects its token charge to
    /// `tokens`, and turns each reservation into the actual spend (`cost`, or `tokens` for
    /// token quotas). Returns each ledger's spend before and after.
    pub fn settle(
        &self,
        c: &Checks,
        parts: Parts,
        tokens: u64,
        cost: i64,
        now_us: i64,
    ) -> Vec<Settled> {
        let mut st = self.lock();
        if parts.limits {
            for r in c.rates.iter().filter(|r| r.cell.kind == CellKind::Tpm) {
                if let Some(tat) = st.tats.get_mut(&r.cell) {
                    *tat = gcra::correct(r.per_minute, *tat, r.cost, tokens, now_us);
                }
            }
            for k in &c.concurrency {
                if let Some(n) = st.running.get_mut(&k.cell) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        let mut out = Vec::new();
        if parts.ledgers {
            for (index, l) in c.ledgers.iter().enumerate() {
                let actual = if l.counts_tokens() {
                    i64::try_from(tokens).unwrap_or(i64::MAX)
                } else {
                    cost
                };
                if let Some(s) = st.ledgers.get_mut(&l.key) {
                    let before = s.spent;
                    s.reserved = s.reserved.saturating_sub(l.amount).max(0);
                    s.spent = s.spent.saturating_add(actual);
                    out.push(Settled {
                        index,
                        before,
                        after: s.spent,
                    });
                }
            }
        }
        out
    }

    /// A ledger's current spend and reservations, if loaded.
    pub fn status(&self, key: &LedgerKey) -> Option<LedgerState> {
        self.lock().ledgers.get(key).copied()
    }

    /// Drops state that no longer matters: full buckets, idle concurrency counters, ledgers of
    /// periods that are over.
    pub fn sweep(&self, now_us: i64) {
        let now_ms = now_us / 1000;
        let mut st = self.lock();
        st.tats.retain(|_, tat| *tat > now_us);
        st.running.retain(|_, n| *n > 0);
        st.ledgers
            .retain(|_, l| l.reserved > 0 || l.expires_ms.is_none_or(|e| e > now_ms));
    }

    #[cfg(test)]
    pub(crate) fn running(&self, cell: &Cell) -> u64 {
        self.lock().running.get(cell).copied().unwrap_or(0)
    }
}
