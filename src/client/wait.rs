//! Waiting for room on a full link inside the sender's own future: no boxed
//! future and no allocation per wait, on links that can
//! ([`PeerLink::poll_writable`]: shared memory), within the caller's deadline.
//!
//! The loop: wait until the link may have room (its `poll_writable`
//! registered the task's waker and looked again), try the write again, and
//! wait again if another sender took the room. The deadline is a tokio
//! `Sleep` held in the same future (a timer entry in place, not allocated).
//! A link that cannot wait this way says `Full` from `poll_writable`; the
//! frame then goes through its boxed [`PeerLink::send`], as before. Dropping
//! the future (the caller gave up) leaves the link as it was: a frame is
//! written whole or not at all, and a waker left registered costs one
//! spurious wake.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;

use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::transport::{OutFrame, PeerLink};

/// Sends `frame` once `link` has room, waiting at most until `deadline`:
/// `None` when the deadline passed first (the caller reports `Timeout`).
pub(crate) async fn send_when_writable(
    link: &dyn PeerLink,
    frame: OutFrame<'_>,
    deadline: Instant,
) -> Option<Result<()>> {
    let mut expired = pin!(tokio::time::sleep_until(deadline));
    loop {
        let room = poll_fn(|cx| {
            if expired.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            link.poll_writable(cx, &frame).map(Some)
        })
        .await?;
        match room {
            Ok(()) => match link.try_send(frame) {
                // Another sender took the room, or what stands in the way
                // is not what the link waits on (a descriptor window): let
                // the tasks that free it run before looking again.
                Err(Error::Full) => tokio::task::yield_now().await,
                done => return Some(done),
            },
            // This link waits in its own (boxed) future.
            Err(Error::Full) => {
                return tokio::time::timeout_at(deadline, link.send(frame))
                    .await
                    .ok();
            }
            Err(err) => return Some(Err(err)),
        }
    }
}
