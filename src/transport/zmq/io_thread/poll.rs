//! The I/O thread's sleep and wake-up: how long it may sleep, the poll on
//! the doorbell and every socket's `ZMQ_FD`, and serving what was ready.

use std::os::fd::AsRawFd;
use std::time::Instant;

use super::{IoThread, READ_BUDGET, RETRY};
use crate::transport::zmq::dealer::Dealer;

impl IoThread {
    /// Milliseconds `zmq::poll` may sleep (0: don't).
    pub(super) fn poll_timeout(&mut self, now: Instant) -> i64 {
        if self.env.shared.take_sent() {
            // The application answered straight into a socket; what comes
            // next is a network round trip away.
            self.spin_until = None;
        }
        if self.spin_until.is_some_and(|until| now < until) {
            return 0;
        }
        self.spin_until = None;
        let mut wake_at = self.next_tick;
        for deadline in self.dealers.iter().filter_map(Dealer::deadline) {
            wake_at = wake_at.min(deadline);
        }
        if self.router.needs_retry() {
            wake_at = wake_at.min(now + RETRY);
        }
        // Arm the doorbell, then look once more for work queued meanwhile.
        if self.env.shared.arm() || !self.commands.is_empty() {
            return 0;
        }
        let left = wake_at.saturating_duration_since(now);
        if left.is_zero() {
            0
        } else {
            // Round up: a sub-millisecond wait must not become a busy loop.
            i64::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i64::MAX)
        }
    }

    /// Polls every socket; returns whether anything is ready.
    ///
    /// Sockets are polled by their `ZMQ_FD`, which callers' direct sends may
    /// reset, so `ZMQ_EVENTS` decides: read before sleeping (a message may
    /// already wait without the fd saying so) and after waking (the fd firing
    /// means only that libzmq had commands to process).
    pub(super) fn poll(&mut self, timeout_ms: i64) -> bool {
        let stopping = self.env.shared.is_shut_down();
        let router_wants = if self.router.io_reads(stopping) {
            zmq::POLLIN
        } else {
            zmq::PollEvents::empty()
        };
        let timeout_ms = if timeout_ms != 0 && self.sockets_ready(router_wants) {
            0
        } else {
            timeout_ms
        };
        let mut items: Vec<zmq::PollItem<'_>> = std::mem::take(&mut self.poll_items);
        items.push(zmq::PollItem::from_fd(
            self.env.shared.doorbell().as_raw_fd(),
            zmq::POLLIN,
        ));
        items.push(self.router.socket.poll_item(!router_wants.is_empty()));
        for dealer in &self.dealers {
            let listen = !dealer_wants(dealer, stopping).is_empty();
            items.push(dealer.sockets.socket.poll_item(listen));
            items.push(dealer.sockets.events.as_poll_item(zmq::POLLIN));
        }
        let result = zmq::poll(&mut items, timeout_ms);
        self.env.shared.disarm();
        self.ready.clear();
        self.ready.push(items[0].get_revents());
        self.ready.push(self.router.socket.ready(router_wants));
        for (index, dealer) in self.dealers.iter().enumerate() {
            self.ready
                .push(dealer.ready(dealer_wants(dealer, stopping)));
            self.ready.push(items[3 + 2 * index].get_revents());
        }
        self.poll_items = recycle(items);
        if let Err(err) = result {
            tracing::warn!(%err, "zmq: poll failed");
        }
        self.ready.iter().any(|events| !events.is_empty())
    }

    /// Whether a socket already has what the I/O thread waits for.
    fn sockets_ready(&self, router_wants: zmq::PollEvents) -> bool {
        let stopping = self.env.shared.is_shut_down();
        !self.router.socket.ready(router_wants).is_empty()
            || self
                .dealers
                .iter()
                .any(|dealer| !dealer.ready(dealer_wants(dealer, stopping)).is_empty())
    }

    /// Serves whatever `poll` found ready.
    pub(super) fn handle_ready(&mut self) {
        let now = Instant::now();
        if self.ready[0].contains(zmq::POLLIN) {
            self.env.shared.clear_doorbell();
        }
        if self.ready[1].contains(zmq::POLLIN) {
            self.env.delivered |= self.router.read(READ_BUDGET);
        }
        for (index, dealer) in self.dealers.iter_mut().enumerate() {
            let (data, monitor) = (self.ready[2 + 2 * index], self.ready[3 + 2 * index]);
            let mut down = None;
            if data.contains(zmq::POLLIN) {
                down = dealer.read(&mut self.env, now, &mut self.body, READ_BUDGET);
            }
            if down.is_none() && data.contains(zmq::POLLOUT) {
                down = dealer.flush(now);
            }
            if down.is_none() && monitor.contains(zmq::POLLIN) {
                down = dealer.read_monitor(&mut self.body);
            }
            if let Some(down) = down {
                self.downs.push((index, down));
            }
        }
        self.remove_downs();
        if std::mem::take(&mut self.env.delivered) && !self.env.settings.spin.is_zero() {
            // A direct send from before this delivery does not answer it.
            self.env.shared.take_sent();
            self.spin_until = Some(now + self.env.settings.spin);
        }
    }
}

/// What the I/O thread waits for on a DEALER: frames unless the link's
/// reader task reads them (`reader`), and room while a frame is blocked.
fn dealer_wants(dealer: &Dealer, stopping: bool) -> zmq::PollEvents {
    let mut wants = zmq::PollEvents::empty();
    if dealer.io_reads(stopping) {
        wants |= zmq::POLLIN;
    }
    if dealer.wants_pollout() {
        wants |= zmq::POLLOUT;
    }
    wants
}

/// Empties a poll list and gives its allocation back for the next turn.
fn recycle(mut items: Vec<zmq::PollItem<'_>>) -> Vec<zmq::PollItem<'static>> {
    items.clear();
    // Collecting an empty `vec::IntoIter` into an element type of the same
    // layout reuses the allocation (in-place iteration).
    items
        .into_iter()
        .map(|_| -> zmq::PollItem<'static> { unreachable!("the list was just cleared") })
        .collect()
}
