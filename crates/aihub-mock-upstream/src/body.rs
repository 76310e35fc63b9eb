//! Response bodies: whole JSON documents, deliberately truncated ones, and server-sent event
//! streams rendered frame by frame, paced, faulted and accounted for in the ledger as they go.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::state::LedgerSlot;

/// Frames are batched into one write up to about this many bytes when there is no pacing.
const BATCH_BYTES: usize = 8 * 1024;

/// The body of every response the mock sends.
pub(crate) enum MockBody {
    /// A whole document; marks its ledger entry completed once handed to the connection.
    Full {
        data: Option<Bytes>,
        slot: Option<Arc<LedgerSlot>>,
    },
    /// Announces `len` bytes, sends `head`, then breaks the connection.
    Truncated {
        head: Option<Bytes>,
        len: u64,
        flushed: bool,
    },
    Stream(Pin<Box<dyn Body<Data = Bytes, Error = io::Error> + Send>>),
}

impl MockBody {
    pub fn full(data: impl Into<Bytes>) -> Self {
        Self::Full {
            data: Some(data.into()),
            slot: None,
        }
    }
}

fn broken_pipe() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "mock upstream: injected connection drop",
    )
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Self::Full { data, slot } => {
                let frame = data.take().map(|d| Ok(Frame::data(d)));
                if let Some(slot) = slot.take() {
                    slot.mark_completed();
                }
                Poll::Ready(frame)
            }
            Self::Truncated { head, flushed, .. } => {
                if let Some(head) = head.take() {
                    return Poll::Ready(Some(Ok(Frame::data(head))));
                }
                // Give the connection one turn to flush what it has before failing it, so the
                // client really sees a partial body rather than nothing.
                if !*flushed {
                    *flushed = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(Some(Err(broken_pipe())))
            }
            Self::Stream(inner) => inner.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full { data, .. } => data.is_none(),
            Self::Truncated { .. } => false,
            Self::Stream(inner) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Self::Truncated { len, .. } => SizeHint::with_exact(*len),
            Self::Stream(inner) => inner.size_hint(),
        }
    }
}

/// Position in a stream: opening frames, one frame per content item and choice, closing frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Pre(u32),
    Content { item: u32, choice: u32 },
    Post(u32),
}

/// Shape of a stream: how many frames of each kind it has.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub pre: u32,
    pub items: u32,
    pub choices: u32,
    pub post: u32,
}

impl Plan {
    fn content_frames(&self) -> u32 {
        self.items.saturating_mul(self.choices)
    }

    fn slot(&self, index: u32) -> Option<Slot> {
        let content = self.content_frames();
        if index < self.pre {
            return Some(Slot::Pre(index));
        }
        let i = index - self.pre;
        if i < content {
            let choices = self.choices.max(1);
            return Some(Slot::Content {
                item: i / choices,
                choice: i % choices,
            });
        }
        let i = i - content;
        (i < self.post).then_some(Slot::Post(i))
    }
}

/// A protocol's way of writing each frame of a stream.
pub(crate) trait Render: Send + Unpin + 'static {
    fn plan(&self) -> Plan;
    fn render(&self, slot: Slot, out: &mut BytesMut) -> Result<(), serde_json::Error>;
    /// A frame that is not valid SSE JSON, for [`crate::Fault::MalformedSse`].
    fn malformed(&self, out: &mut BytesMut);
}

/// What goes wrong in a stream, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamFault {
    None,
    Stall(u32),
    Close(u32),
    Malformed,
}

enum State {
    Running,
    /// Everything was handed over; the next poll marks the ledger entry completed.
    Draining,
    Done,
    Stalled,
    Closing {
        flushed: bool,
    },
}

pub(crate) struct SseStream<R> {
    render: R,
    plan: Plan,
    next: u32,
    content_written: u32,
    fault: StreamFault,
    malformed_at: Option<u32>,
    interval: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    buf: BytesMut,
    slot: Arc<LedgerSlot>,
    state: State,
}

impl<R: Render> SseStream<R> {
    pub fn new(render: R, fault: StreamFault, interval: Duration, slot: Arc<LedgerSlot>) -> Self {
        let plan = render.plan();
        let malformed_at = (fault == StreamFault::Malformed).then(|| plan.content_frames() / 2);
        Self {
            render,
            plan,
            next: 0,
            content_written: 0,
            fault,
            malformed_at,
            interval,
            sleep: None,
            buf: BytesMut::with_capacity(BATCH_BYTES),
            slot,
            state: State::Running,
        }
    }

    pub fn boxed(self) -> MockBody {
        MockBody::Stream(Box::pin(self))
    }

    /// Writes the next frame(s) into `buf`, stopping at a fault or the end of the stream.
    fn produce(&mut self) -> Result<(), serde_json::Error> {
        loop {
            let Some(slot) = self.plan.slot(self.next) else {
                self.state = State::Draining;
                return Ok(());
            };
            let is_content = matches!(slot, Slot::Content { .. });
            let at_fault_point = is_content || matches!(slot, Slot::Post(_));
            if at_fault_point {
                match self.fault {
                    StreamFault::Stall(n) if self.content_written >= n => {
                        self.state = State::Stalled;
                        return Ok(());
                    }
                    StreamFault::Close(n) if self.content_written >= n => {
                        self.state = State::Closing { flushed: false };
                        return Ok(());
                    }
                    _ => {}
                }
                if self.malformed_at == Some(self.content_written) {
                    self.malformed_at = None;
                    self.render.malformed(&mut self.buf);
                }
            }
            self.render.render(slot, &mut self.buf)?;
            self.next += 1;
            if is_content {
                self.content_written += 1;
            }
            if !self.interval.is_zero() || self.buf.len() >= BATCH_BYTES {
                return Ok(());
            }
        }
    }
}

impl<R: Render> Body for SseStream<R> {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        match this.state {
            State::Running => {}
            State::Draining => {
                this.slot.mark_completed();
                this.state = State::Done;
                return Poll::Ready(None);
            }
            State::Done => return Poll::Ready(None),
            State::Stalled => return Poll::Pending,
            State::Closing { flushed: false } => {
                this.state = State::Closing { flushed: true };
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            State::Closing { flushed: true } => return Poll::Ready(Some(Err(broken_pipe()))),
        }
        if let Some(sleep) = this.sleep.as_mut()
            && sleep.as_mut().poll(cx).is_pending()
        {
            return Poll::Pending;
        }
        if let Err(e) = this.produce() {
            return Poll::Ready(Some(Err(io::Error::other(e))));
        }
        this.slot.set_completion_tokens(this.content_written);
        if !this.interval.is_zero() {
            let deadline = Instant::now() + this.interval;
            match this.sleep.as_mut() {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => this.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        if this.buf.is_empty() {
            // Nothing new: the stream just reached its end or a fault; handle that state now.
            return Pin::new(this).poll_frame(cx);
        }
        Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_enumerates_slots_in_order() {
        let plan = Plan {
            pre: 1,
            items: 2,
            choices: 2,
            post: 2,
        };
        let slots: Vec<Slot> = (0..8).map_while(|i| plan.slot(i)).collect();
        assert_eq!(
            slots,
            vec![
                Slot::Pre(0),
                Slot::Content { item: 0, choice: 0 },
                Slot::Content { item: 0, choice: 1 },
                Slot::Content { item: 1, choice: 0 },
                Slot::Content { item: 1, choice: 1 },
                Slot::Post(0),
                Slot::Post(1),
            ]
        );
    }
}
