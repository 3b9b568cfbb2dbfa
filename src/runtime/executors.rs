//! "One loop per thread": a fixed set of threads, each running its own smol executor,
//! plus a bounded pool for blocking work.
//!
//! Connections are pinned to the loop that accepted them, so a connection's tasks
//! share one thread's caches. CPU-heavy or blocking calls (password hashing, SQLite)
//! go through [`blocking`], which runs them on smol's blocking thread pool behind a
//! semaphore, never on a loop thread.

use crate::runtime::shutdown::{self, Shutdown, ShutdownTrigger};
use async_lock::Semaphore;
use smol::{Executor, Task};
use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

thread_local! {
    /// The executor of the loop thread we are on, if any.
    static CURRENT: RefCell<Option<Arc<Executor<'static>>>> = const { RefCell::new(None) };
}

/// A set of loop threads.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    /// One executor per loop thread.
    executors: Vec<Arc<Executor<'static>>>,
    /// Round-robin cursor for [`Runtime::spawn`].
    next: AtomicUsize,
    /// Stops the loop threads when the runtime is dropped.
    stop: ShutdownTrigger,
    /// Joined on drop so threads do not outlive the runtime.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Runtime {
    /// Starts `threads` loop threads named `<name>-<i>`.
    pub fn new(name: &str, threads: usize) -> std::io::Result<Runtime> {
        let threads = threads.max(1);
        let (stop, stopped) = shutdown::channel();
        let mut executors = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let ex = Arc::new(Executor::new());
            executors.push(ex.clone());
            let stopped: Shutdown = stopped.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || {
                        CURRENT.with(|c| *c.borrow_mut() = Some(ex.clone()));
                        smol::block_on(ex.run(stopped.wait()));
                        CURRENT.with(|c| c.borrow_mut().take());
                    })?,
            );
        }
        Ok(Runtime {
            inner: Arc::new(Inner {
                executors,
                next: AtomicUsize::new(0),
                stop,
                threads: Mutex::new(handles),
            }),
        })
    }

    /// Number of loop threads.
    pub fn threads(&self) -> usize {
        self.inner.executors.len()
    }

    /// Spawns onto loop `index` (modulo the thread count).
    pub fn spawn_on<T: Send + 'static>(
        &self,
        index: usize,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Task<T> {
        let ex = &self.inner.executors[index % self.inner.executors.len()];
        ex.spawn(fut)
    }

    /// Spawns onto the next loop in turn.
    pub fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Task<T> {
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.spawn_on(i, fut)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.trigger();
        let current = std::thread::current().id();
        for h in self
            .threads
            .get_mut()
            .map(std::mem::take)
            .unwrap_or_default()
        {
            // A loop thread may drop the last handle itself; it cannot join itself.
            if h.thread().id() != current {
                let _ = h.join();
            }
        }
    }
}

/// Whether the caller runs on a loop thread (where [`spawn_local`] stays on it).
pub fn on_loop() -> bool {
    CURRENT.with(|c| c.borrow().is_some())
}

/// Spawns onto the current loop thread's executor, or smol's global one elsewhere.
pub fn spawn_local<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Task<T> {
    CURRENT.with(|c| match &*c.borrow() {
        Some(ex) => ex.spawn(fut),
        None => smol::spawn(fut),
    })
}

/// Default bound on concurrently running blocking jobs, until [`set_blocking_limit`].
const DEFAULT_BLOCKING_LIMIT: usize = crate::config::DEFAULT_BLOCKING_THREADS;

static BLOCKING: OnceLock<Semaphore> = OnceLock::new();

/// Sets the bound on concurrently running blocking jobs; only the first call counts.
pub fn set_blocking_limit(n: usize) {
    let _ = BLOCKING.set(Semaphore::new(n.max(1)));
}

/// Runs blocking or CPU-heavy `f` off the loop threads, at most N at a time.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let sem = BLOCKING.get_or_init(|| Semaphore::new(DEFAULT_BLOCKING_LIMIT));
    let _permit = sem.acquire().await;
    blocking::unblock(f).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_on_named_loop_threads() {
        let rt = Runtime::new("t", 2).unwrap();
        let names: Vec<String> = (0..4)
            .map(|i| {
                smol::block_on(rt.spawn_on(i, async {
                    std::thread::current().name().unwrap().to_owned()
                }))
            })
            .collect();
        assert_eq!(names, ["t-0", "t-1", "t-0", "t-1"]);
        let local = smol::block_on(rt.spawn_on(1, async {
            spawn_local(async { std::thread::current().name().unwrap().to_owned() }).await
        }));
        assert_eq!(local, "t-1");
    }

    #[test]
    fn blocking_runs_off_loop() {
        let rt = Runtime::new("b", 1).unwrap();
        let name =
            smol::block_on(rt.spawn(async {
                blocking(|| std::thread::current().name().map(str::to_owned)).await
            }));
        assert_ne!(name.as_deref(), Some("b-0"));
    }
}
