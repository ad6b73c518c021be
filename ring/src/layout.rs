//! The shared-memory ABI: the `#[repr(C)]` ring header, record geometry, and the helpers
//! that place one or several rings in a region.
//!
//! ```text
//! offset  size  line          written by            fields
//!      0   128  meta          creator, once         magic, version (last, Release), capacity, max_record
//!    128   128  producer      producer              tail (free-running u64 byte position)
//!    256   128  consumer      consumer              head (free-running u64 byte position)
//!    384   128  control       either, rarely        waiter flags, closed flags, attached flags
//!    512   cap  data          producer              records: 16-byte header + payload, 16-aligned
//! ```
//!
//! Every field is an atomic and every line is padded with atomics, so a `&RingHeader` over
//! peer-writable memory never asserts immutability of any byte.

use crate::error::{Result, bad_layout};
use crate::sync::{AtomicU32, AtomicU64};

/// Magic number at offset 0 of every ring header (`"AMSHRING"`, little-endian).
pub const MAGIC: u64 = u64::from_le_bytes(*b"AMSHRING");
/// Layout version written by this build; attach refuses any other.
pub const LAYOUT_VERSION: u32 = 1;
/// Alignment of every header line (two x86 cache lines: the adjacent-line prefetcher).
pub const LINE: usize = 128;
/// Alignment of every record start, hence of every payload (enough for rkyv archives).
pub const RECORD_ALIGN: usize = 16;
/// Size of a record header (length, kind, flags, position check).
pub const RECORD_HEADER_SIZE: usize = 16;
/// Size of the ring header that precedes each ring's data area.
pub const HEADER_SIZE: usize = 4 * LINE;
/// Smallest accepted data capacity in bytes.
pub const MIN_CAPACITY: usize = 128;
/// Largest accepted data capacity in bytes (record lengths are stored in 32 bits).
pub const MAX_CAPACITY: usize = 1 << 32;

/// Read-only-after-init parameters.
#[repr(C, align(128))]
pub(crate) struct MetaLine {
    pub(crate) magic: AtomicU64,
    pub(crate) version: AtomicU32,
    pub(crate) reserved: AtomicU32,
    pub(crate) capacity: AtomicU64,
    pub(crate) max_record: AtomicU64,
    #[cfg(not(loom))]
    pad: [AtomicU64; 12],
}

/// Written only by the producer.
#[repr(C, align(128))]
pub(crate) struct ProducerLine {
    pub(crate) tail: AtomicU64,
    #[cfg(not(loom))]
    pad: [AtomicU64; 15],
}

/// Written only by the consumer.
#[repr(C, align(128))]
pub(crate) struct ConsumerLine {
    pub(crate) head: AtomicU64,
    #[cfg(not(loom))]
    pad: [AtomicU64; 15],
}

/// Flags that change only on park/unpark, close and attach, so the line stays shared
/// (a local hit) on the hot path.
#[repr(C, align(128))]
pub(crate) struct ControlLine {
    /// Set by a consumer about to park on the "data ready" doorbell.
    pub(crate) consumer_waiting: AtomicU32,
    /// Set by a producer about to park on the "space freed" doorbell.
    pub(crate) producer_waiting: AtomicU32,
    /// The producer will commit nothing more.
    pub(crate) producer_closed: AtomicU32,
    /// The consumer will read nothing more.
    pub(crate) consumer_closed: AtomicU32,
    /// A producer handle is attached (misuse guard only, never trusted for safety).
    pub(crate) producer_attached: AtomicU32,
    /// A consumer handle is attached (misuse guard only).
    pub(crate) consumer_attached: AtomicU32,
    #[cfg(not(loom))]
    pad: [AtomicU32; 26],
}

/// The whole ring header.
#[repr(C)]
pub(crate) struct RingHeader {
    pub(crate) meta: MetaLine,
    pub(crate) producer: ProducerLine,
    pub(crate) consumer: ConsumerLine,
    pub(crate) control: ControlLine,
}

#[cfg(not(loom))]
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<MetaLine>() == LINE && size_of::<ProducerLine>() == LINE);
    assert!(size_of::<ConsumerLine>() == LINE && size_of::<ControlLine>() == LINE);
    assert!(size_of::<RingHeader>() == HEADER_SIZE && align_of::<RingHeader>() == LINE);
    assert!(offset_of!(RingHeader, meta.magic) == 0);
    assert!(offset_of!(RingHeader, meta.version) == 8);
    assert!(offset_of!(RingHeader, meta.capacity) == 16);
    assert!(offset_of!(RingHeader, meta.max_record) == 24);
    assert!(offset_of!(RingHeader, producer.tail) == LINE);
    assert!(offset_of!(RingHeader, consumer.head) == 2 * LINE);
    assert!(offset_of!(RingHeader, control.consumer_waiting) == 3 * LINE);
    assert!(offset_of!(RingHeader, control.producer_waiting) == 3 * LINE + 4);
    assert!(offset_of!(RingHeader, control.producer_closed) == 3 * LINE + 8);
    assert!(offset_of!(RingHeader, control.consumer_closed) == 3 * LINE + 12);
    assert!(offset_of!(RingHeader, control.producer_attached) == 3 * LINE + 16);
    assert!(offset_of!(RingHeader, control.consumer_attached) == 3 * LINE + 20);
    // The atomics must be plain words: the header is shared with other builds.
    assert!(size_of::<AtomicU64>() == 8 && size_of::<AtomicU32>() == 4);
};

#[cfg(loom)]
impl RingHeader {
    /// A zeroed header made of loom atomics (loom atomics cannot be conjured from bytes).
    pub(crate) fn zeroed() -> Self {
        let z32 = || AtomicU32::new(0);
        let z64 = || AtomicU64::new(0);
        RingHeader {
            meta: MetaLine {
                magic: z64(),
                version: z32(),
                reserved: z32(),
                capacity: z64(),
                max_record: z64(),
            },
            producer: ProducerLine { tail: z64() },
            consumer: ConsumerLine { head: z64() },
            control: ControlLine {
                consumer_waiting: z32(),
                producer_waiting: z32(),
                producer_closed: z32(),
                consumer_closed: z32(),
                producer_attached: z32(),
                consumer_attached: z32(),
            },
        }
    }
}

/// Bytes a record with a `len`-byte payload occupies in the data area (header included,
/// rounded up to [`RECORD_ALIGN`]).
#[inline]
pub const fn record_footprint(len: usize) -> usize {
    RECORD_HEADER_SIZE + len.next_multiple_of(RECORD_ALIGN)
}

/// Checks a capacity / maximum-record pair (from a config or from a peer's header).
pub(crate) fn check_geometry(capacity: u64, max_record: u64) -> Result<()> {
    if !capacity.is_power_of_two() {
        return bad_layout("capacity is not a power of two", capacity);
    }
    if capacity < MIN_CAPACITY as u64 || capacity > MAX_CAPACITY as u64 {
        return bad_layout("capacity out of range", capacity);
    }
    // A record of the maximum size must fit in an empty ring even after a PAD record.
    let limit = capacity / 2 - RECORD_HEADER_SIZE as u64;
    if max_record > limit {
        return bad_layout(
            "max_record exceeds capacity / 2 - record header",
            max_record,
        );
    }
    Ok(())
}

/// Geometry of one ring: data capacity and largest payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    capacity: usize,
    max_record: usize,
}

impl RingConfig {
    /// A ring of `capacity` data bytes (a power of two in
    /// [`MIN_CAPACITY`]..=[`MAX_CAPACITY`]) whose records may carry up to
    /// `capacity / 2 - 16` payload bytes.
    pub fn new(capacity: usize) -> Result<Self> {
        let max_record = capacity / 2 - RECORD_HEADER_SIZE.min(capacity / 2);
        check_geometry(capacity as u64, max_record as u64)?;
        Ok(RingConfig {
            capacity,
            max_record,
        })
    }

    /// Lowers the largest payload a record may carry (at most `capacity / 2 - 16`).
    pub fn with_max_record(self, max_record: usize) -> Result<Self> {
        check_geometry(self.capacity as u64, max_record as u64)?;
        Ok(RingConfig { max_record, ..self })
    }

    /// Data capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Largest payload in bytes.
    pub fn max_record(&self) -> usize {
        self.max_record
    }

    /// Bytes the ring occupies in a region: header plus data area.
    pub fn footprint(&self) -> usize {
        HEADER_SIZE + self.capacity
    }
}

/// Placement of several rings in one region (e.g. one ring per direction in one memfd).
///
/// ```
/// # use shm_ring::{RegionLayout, RingConfig};
/// let cfg = RingConfig::new(1 << 16).unwrap();
/// let layout = RegionLayout::new(&[cfg, cfg]);
/// assert_eq!(layout.offsets(), &[0, 512 + (1 << 16)]);
/// assert_eq!(layout.size() % 4096, 0);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionLayout {
    offsets: Vec<usize>,
    size: usize,
}

impl RegionLayout {
    /// Stacks the rings back to back, each start aligned to [`LINE`]; the total size is
    /// rounded up to a 4 KiB page.
    pub fn new(configs: &[RingConfig]) -> Self {
        let mut offsets = Vec::with_capacity(configs.len());
        let mut at = 0usize;
        for cfg in configs {
            at = at.next_multiple_of(LINE);
            offsets.push(at);
            at += cfg.footprint();
        }
        RegionLayout {
            offsets,
            size: at.next_multiple_of(4096).max(4096),
        }
    }

    /// Offset of each ring's header, in the order given.
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }

    /// Region size needed for all the rings.
    pub fn size(&self) -> usize {
        self.size
    }
}
