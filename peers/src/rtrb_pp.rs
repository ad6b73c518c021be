//! rtrb ping-pong. rtrb is a ring between threads of one process (it cannot be shared
//! across processes), so this case runs two threads pinned to the two CPUs the other
//! cases give their two processes: this thread, and an echo thread.

use anyhow::{Result, anyhow};
use rtrb::RingBuffer;

use crate::Plan;
use crate::machine;
use crate::raw::STOP_BYTE;
use crate::report::Row;
use crate::util::{spin, time_trips};

type Msg = [u8; 64];

/// Slots per direction (a ping-pong never has more than one in flight).
const SLOTS: usize = 16;

/// 64 B each way over two rtrb rings (one per direction), both threads spinning.
pub fn pingpong(plan: Plan, warmup: u64, iters: u64) -> Result<Row> {
    let (mut ping_tx, mut ping_rx) = RingBuffer::<Msg>::new(SLOTS);
    let (mut pong_tx, mut pong_rx) = RingBuffer::<Msg>::new(SLOTS);
    let cpu = machine::child_cpu();
    let echo = std::thread::spawn(move || {
        if let Some(c) = cpu {
            machine::pin_to(c);
        }
        loop {
            let mut polls = 0u32;
            let m = loop {
                match ping_rx.pop() {
                    Ok(m) => break m,
                    Err(_) => spin(&mut polls),
                }
            };
            if m[0] == STOP_BYTE {
                return;
            }
            // Never full: one message in flight, SLOTS free.
            let _ = pong_tx.push(m);
        }
    });
    let trips = time_trips(warmup, iters, plan.budget(), |_| {
        let _ = ping_tx.push([7; 64]);
        let mut polls = 0u32;
        loop {
            match pong_rx.pop() {
                Ok(m) => {
                    std::hint::black_box(m[63]);
                    break;
                }
                Err(_) => spin(&mut polls),
            }
        }
    });
    let _ = ping_tx.push([STOP_BYTE; 64]);
    echo.join()
        .map_err(|_| anyhow!("rtrb echo thread panicked"))?;
    let label = "rtrb ping-pong (64 B, two pinned threads of one process)";
    Ok(trips.row("rtrb", label).vs("ring_pp_spin"))
}
