//! Per-key linearizability of a history against a register model.
//!
//! The model is one `blacklist` entry: absent, or present with a name. `insert` sets
//! it when absent and otherwise answers `conflict`; `update` renames it when present
//! and otherwise answers `not_found`; `delete` removes it when present and otherwise
//! answers `not_found`; `query` reads it. Keys are independent (P-compositionality),
//! so each key's sub-history is checked on its own.
//!
//! The search is Wing–Gong with Lowe's memoisation: from a configuration (set of
//! operations linearized so far, model state), try each operation that may go next —
//! one invoked before the earliest completion still pending — apply it to the model,
//! and recurse; a configuration already seen is not explored again. The set is kept
//! as a 128-bit Zobrist hash (a random pair per operation, XORed in and out), so the
//! memo stays small on long histories. An ambiguous write (timeout, lost connection,
//! `outcome_unknown`, …) never completes: it may take effect at any point after its
//! invocation, or never, which is the same as taking effect after everything else. A
//! history is linearizable when every completed operation can be placed.

use std::collections::{HashMap, HashSet};

/// Operation kinds of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `blacklist.query`.
    Read,
    /// `blacklist.insert`.
    Insert,
    /// `blacklist.update`.
    Update,
    /// `blacklist.delete`.
    Delete,
}

/// What a client learned of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A write acknowledged.
    Ok,
    /// A read's answer: the name, or `None` when not listed.
    Read(Option<String>),
    /// `not_found`: the entry was absent (update, delete).
    NotFound,
    /// `conflict`: the entry was present (insert).
    Conflict,
    /// A definite failure: nothing was applied (the error code).
    Failed(String),
    /// The write may or may not have been applied (the reason).
    Ambiguous(String),
}

/// One operation of a history; times are nanoseconds since the run began.
#[derive(Debug, Clone)]
pub struct Op {
    /// The client that ran it.
    pub process: usize,
    /// Which node or path it went through (`proxy`, `n1`, …).
    pub via: String,
    /// The key (`id_card`).
    pub key: String,
    /// What it did.
    pub kind: Kind,
    /// The name written (insert, update).
    pub value: Option<String>,
    /// When it was invoked.
    pub invoke: u64,
    /// When its answer arrived (or the client gave up).
    pub complete: u64,
    /// What the client learned.
    pub outcome: Outcome,
}

/// A key whose history is not linearizable.
#[derive(Debug, Clone)]
pub struct Anomaly {
    /// The key.
    pub key: String,
    /// Why, naming the operation that could not be placed.
    pub detail: String,
}

/// The expected answer of a completed operation (`Any` for an ambiguous one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Any,
    Ok,
    NotFound,
    Conflict,
    Read(Option<u32>),
}

/// An operation prepared for the search: value ids instead of names.
#[derive(Debug, Clone, Copy)]
struct Step {
    call: u64,
    ret: u64,
    kind: Kind,
    value: u32,
    expect: Expect,
}

/// The model: applies `s` to `state`; `None` when the answer cannot happen there.
fn apply(state: Option<u32>, s: &Step) -> Option<Option<u32>> {
    let (answer, next) = match (s.kind, state) {
        (Kind::Read, st) => (Expect::Read(st), st),
        (Kind::Insert, None) => (Expect::Ok, Some(s.value)),
        (Kind::Insert, st) => (Expect::Conflict, st),
        (Kind::Update, Some(_)) => (Expect::Ok, Some(s.value)),
        (Kind::Update, None) | (Kind::Delete, None) => (Expect::NotFound, None),
        (Kind::Delete, Some(_)) => (Expect::Ok, None),
    };
    (s.expect == Expect::Any || s.expect == answer).then_some(next)
}

/// Checks every key; the anomalies found (empty when linearizable). `budget` caps the
/// configurations explored per key; a key over it is reported as undecided.
pub fn check(history: &[Op], budget: usize) -> Vec<Anomaly> {
    let mut keys: HashMap<&str, Vec<&Op>> = HashMap::new();
    for op in history {
        keys.entry(op.key.as_str()).or_default().push(op);
    }
    let mut names: Vec<&&str> = keys.keys().collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|k| {
            check_key(&keys[*k], budget).err().map(|detail| Anomaly {
                key: k.to_string(),
                detail,
            })
        })
        .collect()
}

/// Checks one key's operations.
pub fn check_key(ops: &[&Op], budget: usize) -> Result<(), String> {
    // Ids of the names written; a read of any other name is an anomaly at once.
    let mut ids: HashMap<&str, u32> = HashMap::new();
    for op in ops {
        if let Some(v) = &op.value {
            let n = ids.len() as u32;
            ids.entry(v.as_str()).or_insert(n);
        }
    }
    let observed: HashSet<&str> = ops
        .iter()
        .filter_map(|o| match &o.outcome {
            Outcome::Read(Some(v)) => Some(v.as_str()),
            _ => None,
        })
        .collect();
    let mut steps = Vec::new();
    let mut described = Vec::new();
    for op in ops {
        let value = op.value.as_deref().map(|v| ids[v]).unwrap_or(u32::MAX);
        let (expect, ret) = match &op.outcome {
            Outcome::Ok => (Expect::Ok, op.complete),
            Outcome::NotFound => (Expect::NotFound, op.complete),
            Outcome::Conflict => (Expect::Conflict, op.complete),
            Outcome::Read(None) => (Expect::Read(None), op.complete),
            Outcome::Read(Some(v)) => match ids.get(v.as_str()) {
                Some(id) => (Expect::Read(Some(*id)), op.complete),
                None => return Err(format!("read of a name never written: {}", describe(op))),
            },
            // Nothing applied, or a read that learned nothing: no constraint.
            Outcome::Failed(_) => continue,
            Outcome::Ambiguous(_) if op.kind == Kind::Read => continue,
            // An ambiguous rename nobody read changes nothing anyone saw: presence
            // stays as it was, so it can be left out.
            Outcome::Ambiguous(_)
                if op.kind == Kind::Update
                    && !observed.contains(op.value.as_deref().unwrap_or("")) =>
            {
                continue
            }
            Outcome::Ambiguous(_) => (Expect::Any, u64::MAX),
        };
        steps.push(Step {
            call: op.invoke,
            ret,
            kind: op.kind,
            value,
            expect,
        });
        described.push(*op);
    }
    let mut order: Vec<usize> = (0..steps.len()).collect();
    order.sort_by_key(|&i| (steps[i].call, steps[i].ret));
    let steps: Vec<Step> = order.iter().map(|&i| steps[i]).collect();
    let described: Vec<&Op> = order.iter().map(|&i| described[i]).collect();
    Search::new(&steps)
        .run(budget)
        .map_err(|stuck| match stuck {
            None => format!("undecided: over {budget} configurations explored"),
            Some((i, placed)) => format!(
                "not linearizable: after {placed} of {} operations, no order explains {}",
                steps.len(),
                describe(described[i])
            ),
        })
}

/// An operation in words, for failure messages.
pub fn describe(op: &Op) -> String {
    format!(
        "process {} via {} {:?} key {} value {:?} at {:.3}–{:.3} s → {:?}",
        op.process,
        op.via,
        op.kind,
        op.key,
        op.value,
        op.invoke as f64 / 1e9,
        op.complete as f64 / 1e9,
        op.outcome
    )
}

/// Doubly linked lists over indices, for O(1) removal and re-insertion.
struct Links {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Links {
    /// A list of `items` in the given order; the head sentinel is index `n`.
    fn new(n: usize, items: &[usize]) -> Links {
        let mut l = Links {
            next: vec![n; n + 1],
            prev: vec![n; n + 1],
        };
        let mut last = n;
        for &i in items {
            l.next[last] = i;
            l.prev[i] = last;
            last = i;
        }
        l.next[last] = n;
        l.prev[n] = last;
        l
    }
    fn remove(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = n;
        self.prev[n] = p;
    }
    /// Puts `i` back; removals must be undone in reverse order.
    fn restore(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = i;
        self.prev[n] = i;
    }
}

/// A level of the depth-first search.
struct Frame {
    candidates: Vec<usize>,
    tried: usize,
    state: Option<u32>,
    applied: Option<usize>,
}

struct Search<'a> {
    steps: &'a [Step],
    /// Not yet linearized, in invocation order.
    pending: Links,
    /// Completed and not yet linearized, in completion order.
    completions: Links,
    zobrist: Vec<u128>,
}

impl<'a> Search<'a> {
    fn new(steps: &'a [Step]) -> Search<'a> {
        let n = steps.len();
        let all: Vec<usize> = (0..n).collect();
        let mut done: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| steps[i].ret != u64::MAX)
            .collect();
        done.sort_by_key(|&i| steps[i].ret);
        // A fixed seed: runs are reproducible; the values only need to be distinct.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let zobrist = (0..n)
            .map(|_| ((rnd() as u128) << 64) | rnd() as u128)
            .collect();
        Search {
            steps,
            pending: Links::new(n, &all),
            completions: Links::new(n, &done),
            zobrist,
        }
    }

    /// Operations that may be linearized next: those invoked no later than the
    /// earliest pending completion; completed ones first, ambiguous ones after.
    fn candidates(&self) -> Vec<usize> {
        let n = self.steps.len();
        let first = self.completions.next[n];
        let limit = if first == n {
            u64::MAX
        } else {
            self.steps[first].ret
        };
        let (mut done, mut open) = (Vec::new(), Vec::new());
        let mut i = self.pending.next[n];
        while i != n && self.steps[i].call <= limit {
            if self.steps[i].ret == u64::MAX {
                open.push(i);
            } else {
                done.push(i);
            }
            i = self.pending.next[i];
        }
        done.extend(open);
        done
    }

    /// `Ok` when linearizable; otherwise the op that could not be placed in the
    /// deepest configuration and how many were placed (`None`: over budget).
    fn run(mut self, budget: usize) -> Result<(), Option<(usize, usize)>> {
        let n = self.steps.len();
        let mut seen: HashSet<(u128, Option<u32>)> = HashSet::new();
        let mut hash = 0u128;
        let mut remaining = (0..n).filter(|&i| self.steps[i].ret != u64::MAX).count();
        let mut deepest = (usize::MAX, 0usize);
        let mut frames = vec![Frame {
            candidates: self.candidates(),
            tried: 0,
            state: None,
            applied: None,
        }];
        loop {
            if remaining == 0 {
                return Ok(());
            }
            let depth = frames.len() - 1;
            let f = frames.last_mut().expect("a frame");
            if f.tried == f.candidates.len() {
                if depth >= deepest.1 || deepest.0 == usize::MAX {
                    deepest = (self.completions.next[n], depth);
                }
                let f = frames.pop().expect("a frame");
                let Some(i) = f.applied else {
                    return Err(Some(deepest));
                };
                self.pending.restore(i);
                if self.steps[i].ret != u64::MAX {
                    self.completions.restore(i);
                    remaining += 1;
                }
                hash ^= self.zobrist[i];
                continue;
            }
            let i = f.candidates[f.tried];
            f.tried += 1;
            let Some(next) = apply(f.state, &self.steps[i]) else {
                continue;
            };
            if !seen.insert((hash ^ self.zobrist[i], next)) {
                continue;
            }
            if seen.len() > budget {
                return Err(None);
            }
            hash ^= self.zobrist[i];
            self.pending.remove(i);
            if self.steps[i].ret != u64::MAX {
                self.completions.remove(i);
                remaining -= 1;
            }
            frames.push(Frame {
                candidates: self.candidates(),
                tried: 0,
                state: next,
                applied: Some(i),
            });
        }
    }
}

#[cfg(test)]
#[path = "checker_tests.rs"]
mod tests;
