//! The last handler lookup of each reading thread, reused while the
//! registry is unchanged.
//!
//! A stream of records usually names one handler over and over. Looking it
//! up in the registry's map hashes the name (SipHash) and takes a shard's
//! read lock per message; here the thread remembers its last hit and reuses
//! it while the registry's generation (bumped on every register and
//! deregister) stays the same. The entry holds weak references, so a
//! deregistered handler is dropped as before, not kept alive by a thread.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use crate::handler::registry::HandlerRegistry;
use crate::handler::{Handler, HandlerRef};
use crate::stats::HandlerStats;

struct Last {
    registry: u64,
    generation: u64,
    name: String,
    handler: Weak<dyn Handler>,
    stats: Weak<HandlerStats>,
}

thread_local! {
    static LAST: RefCell<Option<Last>> = const { RefCell::new(None) };
}

impl HandlerRegistry {
    /// [`HandlerRegistry::get_counted`], answered from this thread's last
    /// lookup when the name and the registry's generation match.
    pub(crate) fn get_cached(&self, name: &str) -> Option<(HandlerRef, Arc<HandlerStats>)> {
        let generation = self.generation();
        let hit = LAST.with(|last| {
            let last = last.try_borrow().ok()?;
            let last = last.as_ref()?;
            if last.registry != self.id() || last.generation != generation || last.name != name {
                return None;
            }
            Some((last.handler.upgrade()?, last.stats.upgrade()?))
        });
        if hit.is_some() {
            return hit;
        }
        let found = self.get_counted(name)?;
        LAST.with(|last| {
            let Ok(mut last) = last.try_borrow_mut() else {
                return;
            };
            let (handler, stats) = (Arc::downgrade(&found.0), Arc::downgrade(&found.1));
            // The generation read before the lookup: a change in between
            // makes the next call look up again.
            match last.as_mut() {
                Some(entry) => {
                    entry.registry = self.id();
                    entry.generation = generation;
                    entry.name.clear();
                    entry.name.push_str(name);
                    entry.handler = handler;
                    entry.stats = stats;
                }
                None => {
                    *last = Some(Last {
                        registry: self.id(),
                        generation,
                        name: name.to_owned(),
                        handler,
                        stats,
                    });
                }
            }
        });
        Some(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::impls::TypedContext;
    use crate::handler::impls::typed_unary_handler;
    use crate::ids::InstanceId;

    fn adder(by: u64) -> HandlerRef {
        typed_unary_handler("adder", move |c: TypedContext<u64>| {
            Ok::<u64, String>(c.input + by)
        })
    }

    #[test]
    fn a_changed_registry_is_looked_up_again() {
        let registry = HandlerRegistry::new(InstanceId::new_random());
        let old = adder(1);
        registry.register("adder".into(), Arc::clone(&old)).unwrap();
        // A call in flight holds the handler and its stats.
        let (first, in_flight) = registry.get_cached("adder").unwrap();
        let (again, _) = registry.get_cached("adder").unwrap();
        assert!(Arc::ptr_eq(&first, &again) && Arc::ptr_eq(&first, &old));
        // Both are still alive: only the generation tells the entry is stale.
        assert!(registry.deregister("adder").unwrap());
        assert!(registry.get_cached("adder").is_none());
        let new = adder(2);
        registry.register("adder".into(), Arc::clone(&new)).unwrap();
        let (found, _) = registry.get_cached("adder").unwrap();
        assert!(Arc::ptr_eq(&found, &new));
        drop(in_flight);
    }

    #[test]
    fn registries_and_names_do_not_share_an_entry() {
        let (a, b) = (
            HandlerRegistry::new(InstanceId::new_random()),
            HandlerRegistry::new(InstanceId::new_random()),
        );
        a.register("adder".into(), adder(1)).unwrap();
        assert!(a.get_cached("adder").is_some());
        assert!(b.get_cached("adder").is_none());
        assert!(a.get_cached("other").is_none());
    }
}
