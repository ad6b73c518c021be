//! The leader's table of ranks: who holds each one, joins, departures and
//! the events they raise.

use parking_lot::Mutex;
use tokio::sync::{Notify, broadcast};

use super::Rank;
use super::config::RankPolicy;
use crate::ids::InstanceId;

/// Membership events buffered per listener (a slow one is told how many it missed).
const EVENT_CAPACITY: usize = 1024;

/// A change in a cohort's membership.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CohortEvent {
    /// A worker took a rank nobody had held.
    Joined {
        /// The rank.
        rank: Rank,
        /// The worker.
        instance: InstanceId,
    },
    /// A worker gave its rank up.
    Left {
        /// The rank.
        rank: Rank,
        /// The worker.
        instance: InstanceId,
    },
    /// A worker's link broke (process gone).
    Lost {
        /// The rank.
        rank: Rank,
        /// The worker.
        instance: InstanceId,
    },
    /// A new instance (a restarted worker) took a rank held before.
    Rejoined {
        /// The rank.
        rank: Rank,
        /// The instance that held it before.
        previous: InstanceId,
        /// The instance that holds it now.
        instance: InstanceId,
    },
    /// This listener fell behind and missed that many events.
    Lagged {
        /// How many were missed.
        missed: u64,
    },
}

/// Who holds a rank, as an operation sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holder {
    /// A live worker.
    Active(InstanceId),
    /// The worker's link broke and nobody took the rank since.
    Lost(InstanceId),
    /// Never joined, or left.
    Vacant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Active,
    Lost,
    Left,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    instance: InstanceId,
    state: State,
}

/// Rank -> holder, shared by the leader's handlers, watcher and operations.
pub(crate) struct Members {
    policy: RankPolicy,
    slots: Mutex<Vec<Option<Slot>>>,
    events: broadcast::Sender<CohortEvent>,
    changed: Notify,
}

impl Members {
    pub(crate) fn new(size: u32, policy: RankPolicy) -> Self {
        Self {
            policy,
            slots: Mutex::new(vec![None; size as usize]),
            events: broadcast::channel(EVENT_CAPACITY).0,
            changed: Notify::new(),
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<CohortEvent> {
        self.events.subscribe()
    }

    /// The rank `instance` would get, or why it is refused. `live` says
    /// whether a holder's link is still up (a dead holder's rank is free).
    pub(crate) fn choose(
        &self,
        instance: InstanceId,
        rank: Option<Rank>,
        live: &dyn Fn(InstanceId) -> bool,
    ) -> Result<Rank, String> {
        choose(&self.slots.lock(), self.policy, instance, rank, live)
    }

    /// Gives `instance` its rank (chosen again, under the lock) and raises
    /// the event.
    pub(crate) fn join(
        &self,
        instance: InstanceId,
        rank: Option<Rank>,
        live: &dyn Fn(InstanceId) -> bool,
    ) -> Result<Rank, String> {
        let mut slots = self.slots.lock();
        let rank = choose(&slots, self.policy, instance, rank, live)?;
        let slot = &mut slots[rank as usize];
        let event = match *slot {
            Some(old) if old.instance == instance && old.state == State::Active => None,
            Some(old) => Some(CohortEvent::Rejoined {
                rank,
                previous: old.instance,
                instance,
            }),
            None => Some(CohortEvent::Joined { rank, instance }),
        };
        *slot = Some(Slot {
            instance,
            state: State::Active,
        });
        drop(slots);
        if let Some(event) = event {
            tracing::info!(?event, "cohort membership");
            let _ = self.events.send(event);
        }
        self.changed.notify_waiters();
        Ok(rank)
    }

    /// Marks `instance`'s rank left (`State::Left`) or lost; returns the rank.
    pub(crate) fn depart(&self, instance: InstanceId, lost: bool) -> Option<Rank> {
        let mut slots = self.slots.lock();
        let (rank, slot) = slots.iter_mut().enumerate().find_map(|(r, s)| match s {
            Some(slot) if slot.instance == instance && slot.state == State::Active => {
                Some((r, slot))
            }
            _ => None,
        })?;
        slot.state = if lost { State::Lost } else { State::Left };
        drop(slots);
        let rank = Rank::try_from(rank).unwrap_or(Rank::MAX);
        let event = if lost {
            CohortEvent::Lost { rank, instance }
        } else {
            CohortEvent::Left { rank, instance }
        };
        tracing::info!(?event, "cohort membership");
        let _ = self.events.send(event);
        self.changed.notify_waiters();
        Some(rank)
    }

    /// The active holder of every rank, indexed by rank.
    pub(crate) fn holders(&self) -> Vec<Option<InstanceId>> {
        self.slots
            .lock()
            .iter()
            .map(|s| s.filter(|s| s.state == State::Active).map(|s| s.instance))
            .collect()
    }

    /// Who holds every rank and how, indexed by rank.
    pub(crate) fn targets(&self) -> Vec<Holder> {
        self.slots
            .lock()
            .iter()
            .map(|s| match s {
                Some(s) if s.state == State::Active => Holder::Active(s.instance),
                Some(s) if s.state == State::Lost => Holder::Lost(s.instance),
                _ => Holder::Vacant,
            })
            .collect()
    }

    /// Ranks without an active holder.
    pub(crate) fn vacant(&self) -> Vec<Rank> {
        (0..)
            .zip(self.holders())
            .filter_map(|(r, h)| h.is_none().then_some(r))
            .collect()
    }

    /// Waits for a change in membership; call `enable` on the future before
    /// checking the condition so no change is missed.
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}

fn choose(
    slots: &[Option<Slot>],
    policy: RankPolicy,
    instance: InstanceId,
    rank: Option<Rank>,
    live: &dyn Fn(InstanceId) -> bool,
) -> Result<Rank, String> {
    let size = slots.len();
    let free = |r: usize| match slots[r] {
        None => true,
        Some(s) => s.instance == instance || s.state != State::Active || !live(s.instance),
    };
    if let Some((r, _)) = slots
        .iter()
        .enumerate()
        .find(|(_, s)| s.is_some_and(|s| s.instance == instance && s.state == State::Active))
    {
        // The same instance asking again (a retried join) keeps its rank.
        if rank.is_none_or(|want| want as usize == r) {
            return Ok(Rank::try_from(r).unwrap_or(Rank::MAX));
        }
        return Err(format!("this worker already holds rank {r}"));
    }
    match rank {
        Some(r) if r as usize >= size => Err(format!("rank {r} is out of range 0..{size}")),
        Some(r) if !free(r as usize) => Err(format!(
            "rank {r} is already held by instance {}",
            slots[r as usize].map_or(InstanceId::nil(), |s| s.instance)
        )),
        Some(r) => Ok(r),
        None if policy == RankPolicy::Explicit => {
            Err("this cohort assigns no ranks: the worker must name its rank".into())
        }
        None => (0..size)
            .find(|&r| free(r))
            .map(|r| Rank::try_from(r).unwrap_or(Rank::MAX))
            .ok_or_else(|| format!("all {size} ranks are held")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(_: InstanceId) -> bool {
        true
    }

    #[test]
    fn explicit_ranks_are_checked_and_join_order_fills_the_lowest_free() {
        let m = Members::new(2, RankPolicy::Explicit);
        let (a, b) = (InstanceId::new_random(), InstanceId::new_random());
        assert_eq!(m.join(a, Some(1), &live), Ok(1));
        assert!(
            m.join(b, Some(1), &live)
                .unwrap_err()
                .contains("already held")
        );
        assert!(
            m.join(b, Some(2), &live)
                .unwrap_err()
                .contains("out of range")
        );
        assert!(m.join(b, None, &live).is_err());
        assert_eq!(m.vacant(), [0]);

        let m = Members::new(2, RankPolicy::JoinOrder);
        assert_eq!(m.join(a, None, &live), Ok(0));
        assert_eq!(
            m.join(a, None, &live),
            Ok(0),
            "a retried join keeps its rank"
        );
        assert_eq!(m.join(b, None, &live), Ok(1));
        assert!(m.join(InstanceId::new_random(), None, &live).is_err());
    }

    #[test]
    fn a_lost_rank_is_taken_by_a_new_instance_as_a_rejoin() {
        let m = Members::new(1, RankPolicy::Explicit);
        let mut events = m.subscribe();
        let (old, new) = (InstanceId::new_random(), InstanceId::new_random());
        m.join(old, Some(0), &live).unwrap();
        assert_eq!(m.depart(old, true), Some(0));
        assert_eq!(m.holders(), [None]);
        m.join(new, Some(0), &live).unwrap();
        let seen: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).collect();
        assert_eq!(
            seen,
            [
                CohortEvent::Joined {
                    rank: 0,
                    instance: old
                },
                CohortEvent::Lost {
                    rank: 0,
                    instance: old
                },
                CohortEvent::Rejoined {
                    rank: 0,
                    previous: old,
                    instance: new
                },
            ]
        );
    }
}
