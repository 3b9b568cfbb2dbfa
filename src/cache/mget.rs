//! Coalesced cache reads: the guarded reads that start together on one Redis server
//! leave as one `MGET`.
//!
//! Every authenticated request reads its session and then its entry, each a guarded
//! read of three keys (value, generation, write lock). Sent one command each, a
//! pipelined node paid the client's per-command cost twice per request — encoding,
//! the hand-off to the connection's driver task on another thread, the reply's
//! parse and the wake-up back — and Redis its per-command cost. Here a read joins
//! the *open batch* of its server and yields once, so that the other requests this
//! loop is dispatching join it too; the first member to run again takes the batch
//! and sends one `MGET` for all of them, and every member picks its three values
//! from the answer. Equal keys in one batch (many requests under one session token)
//! are read once.
//!
//! Coherence is unchanged: a member's values come from one `MGET` that Redis ran
//! after the member started, exactly what its own `MGET` would have returned at that
//! point, and its guard is what it saw there.

use super::CacheError;
use event_listener::Event;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, OnceLock};

/// A guarded read's answer: value, generation, and whether a write holds the key.
pub type Guarded = (Option<String>, Option<String>, bool);

/// The batch reads join until one of them sends it.
#[derive(Default)]
pub struct Batcher {
    /// The batch still open to new members, if any.
    open: Mutex<Option<Arc<Batch>>>,
}

/// One `MGET` and the reads sharing it.
#[derive(Default)]
pub struct Batch {
    /// Distinct cache keys, in the order their three keys appear in the `MGET`.
    keys: Mutex<Keys>,
    /// The answer, three values per key, set once by the member that sent it.
    result: OnceLock<Result<Vec<Option<String>>, CacheError>>,
    /// Wakes the members waiting for `result`.
    done: Event,
}

/// A batch's distinct keys, found again by hash: a batch of a pipelined node holds
/// hundreds of keys, and a scan per member was quadratic.
#[derive(Default)]
pub struct Keys {
    list: Vec<String>,
    by_hash: HashMap<u64, usize>,
}

impl Keys {
    /// The index of `key`, added if new. Two keys with one hash are both kept (the
    /// second is read twice; only equal keys share a read).
    fn index_of(&mut self, key: &str) -> usize {
        let hash = self.by_hash.hasher().hash_one(key);
        if let Some(&i) = self.by_hash.get(&hash) {
            if self.list[i] == key {
                return i;
            }
        } else {
            self.by_hash.insert(hash, self.list.len());
        }
        self.list.push(key.to_owned());
        self.list.len() - 1
    }
}

/// A member's place in a batch.
pub struct Ticket {
    batch: Arc<Batch>,
    index: usize,
}

impl Batcher {
    /// Joins the open batch (or opens one) with `key`.
    pub fn join(&self, key: &str) -> Ticket {
        // The key goes in under the `open` lock, so a batch is never taken (and its
        // keys copied) between a member joining it and its key being added.
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let batch = open.get_or_insert_with(Default::default).clone();
        let mut keys = batch.keys.lock().unwrap_or_else(|e| e.into_inner());
        let index = keys.index_of(key);
        drop(keys);
        drop(open);
        Ticket { batch, index }
    }

    /// Closes `ticket`'s batch to new members if it is still open; returns its keys
    /// when this caller is the one to send it.
    fn take(&self, ticket: &Ticket) -> Option<Vec<String>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if !open.as_ref().is_some_and(|b| Arc::ptr_eq(b, &ticket.batch)) {
            return None;
        }
        *open = None;
        drop(open);
        let mut keys = ticket.batch.keys.lock().unwrap_or_else(|e| e.into_inner());
        // Members only need their index from here on.
        Some(std::mem::take(&mut keys.list))
    }
}

impl Ticket {
    /// This member's answer: sends the batch with `send` if no other member took it
    /// first, else waits for the member that did. `send` gets the distinct keys and
    /// returns three values per key, in order.
    pub async fn answer<F, Fut>(self, batcher: &Batcher, send: F) -> Result<Guarded, CacheError>
    where
        F: FnOnce(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<Option<String>>, CacheError>>,
    {
        // Let the requests dispatched in this turn of the loop join first.
        futures_lite::future::yield_now().await;
        if let Some(keys) = batcher.take(&self) {
            // Members must not wait forever if this one is dropped half-way (its
            // request's deadline): the guard answers them with an error then.
            let guard = Sender(&self.batch);
            let expected = keys.len() * 3;
            // Boxed: only one member sends, so the command's (large) future is not
            // part of every member's.
            let r = Box::pin(send(keys)).await.and_then(|values| {
                if values.len() == expected {
                    Ok(values)
                } else {
                    Err(CacheError::Other(format!(
                        "MGET answered {} values for {expected} keys",
                        values.len()
                    )))
                }
            });
            guard.finish(r);
        }
        loop {
            if let Some(r) = self.batch.result.get() {
                return self.pick(r);
            }
            let listener = self.batch.done.listen();
            if let Some(r) = self.batch.result.get() {
                return self.pick(r);
            }
            listener.await;
        }
    }

    fn pick(&self, r: &Result<Vec<Option<String>>, CacheError>) -> Result<Guarded, CacheError> {
        let values = r.as_ref().map_err(Clone::clone)?;
        let at = self.index * 3;
        Ok((
            values[at].clone(),
            values[at + 1].clone(),
            values[at + 2].is_some(),
        ))
    }
}

/// The sending member's duty to answer the batch, even if it is dropped.
struct Sender<'a>(&'a Batch);

impl Sender<'_> {
    fn finish(self, r: Result<Vec<Option<String>>, CacheError>) {
        let _ = self.0.result.set(r);
        self.0.done.notify(usize::MAX);
    }
}

impl Drop for Sender<'_> {
    fn drop(&mut self) {
        if self.0.result.get().is_none() {
            let _ = self.0.result.set(Err(CacheError::Unavailable(
                "batched read abandoned by its sender".into(),
            )));
        }
        self.0.done.notify(usize::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn reads_started_together_share_one_mget() {
        let batcher = Arc::new(Batcher::default());
        let sends = Arc::new(AtomicUsize::new(0));
        let ex = smol::LocalExecutor::new();
        let tasks: Vec<_> = ["a", "b", "a", "c"]
            .into_iter()
            .map(|k| {
                let (batcher, sends) = (batcher.clone(), sends.clone());
                let ticket = batcher.join(k);
                ex.spawn(async move {
                    ticket
                        .answer(&batcher, |keys| async move {
                            sends.fetch_add(1, Ordering::SeqCst);
                            assert_eq!(keys, ["a", "b", "c"]);
                            Ok(keys
                                .iter()
                                .flat_map(|k| [Some(format!("v{k}")), Some("g".into()), None])
                                .collect())
                        })
                        .await
                })
            })
            .collect();
        let got: Vec<_> = smol::block_on(ex.run(async {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        }));
        assert_eq!(sends.load(Ordering::SeqCst), 1);
        assert_eq!(got[0], (Some("va".into()), Some("g".into()), false));
        assert_eq!(got[1].0.as_deref(), Some("vb"));
        assert_eq!(got[2].0.as_deref(), Some("va"));
        assert_eq!(got[3].0.as_deref(), Some("vc"));
    }

    #[test]
    fn an_abandoned_sender_answers_its_members_with_an_error() {
        let batcher = Batcher::default();
        let sender = batcher.join("a");
        let member = batcher.join("b");
        smol::block_on(async {
            let mut send = Box::pin(sender.answer(&batcher, |_| std::future::pending()));
            // First poll yields; the second takes the batch and waits on the send.
            assert!(futures_lite::future::poll_once(&mut send).await.is_none());
            assert!(futures_lite::future::poll_once(&mut send).await.is_none());
            drop(send);
            let r = member.answer(&batcher, |_| async { Ok(vec![]) }).await;
            assert!(matches!(r, Err(CacheError::Unavailable(_))));
        });
    }
}
