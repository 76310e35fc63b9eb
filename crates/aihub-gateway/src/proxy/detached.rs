//! A request run in the task that awaits it, and detached into a task of its own only if that
//! task lets go of it first.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio_util::task::task_tracker::TaskTrackerToken;

/// A request's future, polled by the client connection's task: no spawn, no channel and no
/// extra wake-up per request. The tracker token makes shutdown wait for it like for a task.
///
/// Dropped before it completes (the client left, or its connection was closed), it spawns the
/// rest of the future into the same tracker, where it runs to its end and its response is
/// dropped: a request already under way is never cut short and its usage is recorded, exactly
/// as if it had run in a task of its own from the start. Outside a Tokio runtime (only when the
/// runtime itself is being torn down) there is nothing left to run it on, and it is dropped.
pub(crate) struct Detached<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    run: Option<Pin<Box<F>>>,
    token: TaskTrackerToken,
    /// Set while `run` is being polled: still set on drop, the poll unwound (the future
    /// panicked) and the future cannot be resumed.
    in_poll: bool,
}

impl<F> Detached<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    pub(crate) fn new(run: Pin<Box<F>>, token: TaskTrackerToken) -> Self {
        Self {
            run: Some(run),
            token,
            in_poll: false,
        }
    }
}

impl<F> Future for Detached<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Polled again after it completed: it has nothing more to give.
        let Some(run) = this.run.as_mut() else {
            return Poll::Pending;
        };
        this.in_poll = true;
        let polled = run.as_mut().poll(cx);
        this.in_poll = false;
        let out = ready!(polled);
        this.run = None;
        Poll::Ready(out)
    }
}

impl<F> Drop for Detached<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        if self.in_poll {
            // The request panicked (the panic is answered 500 further up): nothing to resume.
            return;
        }
        if let Some(run) = self.run.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // Spawned before this token is released, so the tracker never looks empty between.
            self.token.task_tracker().spawn_on(
                async move {
                    drop(run.await);
                },
                &runtime,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use tokio_util::task::TaskTracker;

    use super::*;

    /// A future that takes a while and then says it finished.
    fn slow(done: Arc<AtomicBool>) -> Pin<Box<impl Future<Output = u32> + Send + 'static>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            done.store(true, Ordering::SeqCst);
            7
        })
    }

    #[tokio::test]
    async fn awaited_to_the_end_it_runs_in_place_and_spawns_nothing() {
        let tracker = TaskTracker::new();
        let done = Arc::new(AtomicBool::new(false));
        let out = Detached::new(slow(done.clone()), tracker.token()).await;
        assert_eq!(out, 7);
        assert!(done.load(Ordering::SeqCst));
        assert!(tracker.is_empty(), "nothing left running, no task spawned");
    }

    #[tokio::test]
    async fn dropped_half_way_it_finishes_in_a_task_the_tracker_waits_for() {
        let tracker = TaskTracker::new();
        let done = Arc::new(AtomicBool::new(false));
        let mut run = Detached::new(slow(done.clone()), tracker.token());
        // Started (it is waiting on its timer), then given up, as a client that leaves.
        let started = tokio::time::timeout(Duration::from_millis(5), &mut run).await;
        assert!(started.is_err());
        drop(run);
        assert_eq!(tracker.len(), 1, "the rest runs as a tracked task");
        assert!(!done.load(Ordering::SeqCst));
        tracker.close();
        tokio::time::timeout(Duration::from_secs(5), tracker.wait())
            .await
            .expect("the detached rest finishes");
        assert!(done.load(Ordering::SeqCst), "the work ran to its end");
    }

    #[tokio::test]
    async fn a_request_that_panicked_is_not_resumed() {
        use futures_util::FutureExt as _;

        let tracker = TaskTracker::new();
        let run = Detached::new(
            Box::pin(async {
                tokio::task::yield_now().await;
                panic!("a bug in the request path");
            }),
            tracker.token(),
        );
        let caught = std::panic::AssertUnwindSafe(run).catch_unwind().await;
        assert!(caught.is_err());
        assert!(
            tracker.is_empty(),
            "no task spawned to resume a panicked future"
        );
    }

    #[test]
    fn dropped_outside_a_runtime_it_is_dropped() {
        let tracker = TaskTracker::new();
        let done = Arc::new(AtomicBool::new(false));
        drop(Detached::new(slow(done.clone()), tracker.token()));
        assert!(tracker.is_empty());
        assert!(!done.load(Ordering::SeqCst));
    }
}
