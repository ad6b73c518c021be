//! Memory that holds one or more rings: a sealed `memfd` mapping shared between
//! processes, or a private heap allocation (unit tests, loom, Miri).
//!
//! A region only hands out raw pointers. The ring code never forms a reference to
//! peer-writable bytes except `&` to atomics (header fields) and the documented payload
//! views of the grants.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::Arc;

#[cfg(not(loom))]
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::error::{Result, bad_layout};

/// Alignment of every region base (a page, like an `mmap`).
const REGION_ALIGN: usize = 4096;

/// A span of memory holding rings.
///
/// Create one with [`Region::memfd`] (shareable: pass [`Region::fd`] to a peer, which
/// attaches with [`Region::from_fd`]) or [`Region::heap`] (process-private).
pub struct Region {
    base: NonNull<u8>,
    len: usize,
    backing: Backing,
    /// Under loom: one cell per 16-byte granule, touched on every data-area access so
    /// that loom reports any access not ordered by the index protocol.
    #[cfg(loom)]
    granules: Box<[loom::cell::UnsafeCell<()>]>,
}

enum Backing {
    Heap(Layout),
    #[cfg(not(loom))]
    Memfd {
        _map: memmap2::MmapRaw,
        fd: OwnedFd,
    },
}

// SAFETY: `Region` owns its allocation or mapping and only exposes raw pointers into it;
// every concurrent access goes through atomics or is ordered by the ring protocol.
unsafe impl Send for Region {}
// SAFETY: as above; `&Region` gives no access to the bytes except via raw pointers.
unsafe impl Sync for Region {}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backing {
            Backing::Heap(_) => "heap",
            #[cfg(not(loom))]
            Backing::Memfd { .. } => "memfd",
        };
        f.debug_struct("Region")
            .field("kind", &kind)
            .field("len", &self.len)
            .finish()
    }
}

impl Region {
    /// A zeroed, page-aligned, process-private region of `len` bytes.
    pub fn heap(len: usize) -> Result<Arc<Region>> {
        if len == 0 {
            return bad_layout("region length is zero", 0);
        }
        let Ok(layout) = Layout::from_size_align(len, REGION_ALIGN) else {
            return bad_layout("region length too large", len as u64);
        };
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(layout);
        };
        Ok(Arc::new(Region {
            base,
            len,
            backing: Backing::Heap(layout),
            #[cfg(loom)]
            granules: (0..len.div_ceil(16))
                .map(|_| loom::cell::UnsafeCell::new(()))
                .collect(),
        }))
    }

    /// A new anonymous `memfd` of `len` bytes, sealed against shrinking, growing and
    /// further sealing, mapped shared read-write. `name` only shows in `/proc/*/fd`.
    #[cfg(not(loom))]
    pub fn memfd(name: &str, len: usize) -> Result<Arc<Region>> {
        use nix::fcntl::{FcntlArg, SealFlag, fcntl};
        use nix::sys::memfd::{MFdFlags, memfd_create};
        if len == 0 || len > isize::MAX as usize {
            return bad_layout("region length out of range", len as u64);
        }
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
        nix::unistd::ftruncate(&fd, len as i64)?;
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        fcntl(&fd, FcntlArg::F_ADD_SEALS(seals))?;
        Self::map(fd, len)
    }

    /// Maps a memfd received from another process.
    ///
    /// Checks that the file is sealed against shrinking and growing (so the mapping can
    /// never SIGBUS) and maps its whole `fstat` size. The rings inside are validated
    /// separately when attached.
    #[cfg(not(loom))]
    pub fn from_fd(fd: OwnedFd) -> Result<Arc<Region>> {
        use nix::fcntl::{FcntlArg, SealFlag, fcntl};
        let seals = SealFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GET_SEALS)?);
        let needed = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW;
        if !seals.contains(needed) {
            return bad_layout(
                "memfd is not sealed against shrink/grow",
                seals.bits() as u64,
            );
        }
        let size = nix::sys::stat::fstat(&fd)?.st_size;
        if size <= 0 || size as u64 > isize::MAX as u64 {
            return bad_layout("memfd size out of range", size as u64);
        }
        Self::map(fd, size as usize)
    }

    #[cfg(not(loom))]
    fn map(fd: OwnedFd, len: usize) -> Result<Arc<Region>> {
        let map = memmap2::MmapOptions::new().len(len).map_raw(&fd)?;
        let Some(base) = NonNull::new(map.as_mut_ptr()) else {
            return bad_layout("mmap returned null", 0);
        };
        if !(base.as_ptr() as usize).is_multiple_of(REGION_ALIGN) {
            return bad_layout("mapping is not page-aligned", base.as_ptr() as u64);
        }
        Ok(Arc::new(Region {
            base,
            len,
            backing: Backing::Memfd { _map: map, fd },
        }))
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: regions have a non-zero length.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memfd behind a shareable region (to pass to a peer), `None` for heap regions.
    #[cfg(not(loom))]
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.backing {
            Backing::Memfd { fd, .. } => Some(fd.as_fd()),
            Backing::Heap(_) => None,
        }
    }

    /// Base address, for tests and tools that play the peer (e.g. inject corruption).
    /// Writing through it races with attached handles unless done via atomics.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Base address of the region.
    #[inline]
    pub(crate) fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Loom only: record a write of `[off, off + len)` (region-relative).
    #[inline]
    #[cfg_attr(not(loom), allow(unused_variables))]
    pub(crate) fn track_write(&self, off: usize, len: usize) {
        #[cfg(loom)]
        for g in &self.granules[off / 16..(off + len).div_ceil(16)] {
            g.with_mut(|_| ());
        }
    }

    /// Loom only: record a read of `[off, off + len)` (region-relative).
    #[inline]
    #[cfg_attr(not(loom), allow(unused_variables))]
    pub(crate) fn track_read(&self, off: usize, len: usize) {
        #[cfg(loom)]
        for g in &self.granules[off / 16..(off + len).div_ceil(16)] {
            g.with(|_| ());
        }
    }
}

impl Drop for Region {
    #[cfg_attr(loom, allow(irrefutable_let_patterns))]
    fn drop(&mut self) {
        if let Backing::Heap(layout) = self.backing {
            // SAFETY: allocated in `Region::heap` with exactly this layout; every handle
            // holds an `Arc<Region>`, so none is left.
            unsafe { std::alloc::dealloc(self.base.as_ptr(), layout) };
        }
    }
}
