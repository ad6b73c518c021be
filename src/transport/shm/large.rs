//! Frames larger than a ring record: each travels in its own sealed memfd,
//! passed over the rendezvous socket with `SCM_RIGHTS`, announced in the ring
//! by a small marker record so the receiver takes descriptors in order.
//!
//! The sender encodes straight into the mapped memfd: its exact size when the
//! frame size is known, else a sparse memfd as large as the peer's frame limit
//! (untouched pages cost nothing), shrunk to the encoded length after
//! unmapping. It then seals the memfd against writing, shrinking and growing,
//! so the receiver can map it read-only and use the bytes in place: they can
//! neither change under it nor vanish (no SIGBUS), whatever the sender does.

use std::fs::File;
use std::os::fd::OwnedFd;

use bytes::Bytes;
use memmap2::{Mmap, MmapMut};
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};

use crate::codec::DoesNotFit;
use crate::error::{Error, Result};
use crate::transport::OutFrame;
use crate::wire;

/// A frame to write: not yet encoded, or already encoded (a deferred reply).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Source<'a> {
    /// Encoded on the way out (payload archived in place).
    Frame(&'a OutFrame<'a>),
    /// Complete frame bytes.
    Encoded(&'a [u8]),
}

impl Source<'_> {
    /// The encoded size when known in advance.
    pub(crate) fn exact_len(&self) -> Option<usize> {
        match self {
            Self::Frame(f) => f.exact_len(),
            Self::Encoded(b) => Some(b.len()),
        }
    }

    /// Encodes at the start of `dst` (16-byte aligned).
    pub(crate) fn encode_into(&self, dst: &mut [u8]) -> Result<usize, DoesNotFit> {
        match self {
            Self::Frame(f) => f.encode_into(dst),
            Self::Encoded(b) => {
                dst.get_mut(..b.len()).ok_or(DoesNotFit)?.copy_from_slice(b);
                Ok(b.len())
            }
        }
    }

    /// The error to report when the frame fits nowhere. An archive that did
    /// not fit in `max` bytes is reported as `max + 1` bytes (a lower bound:
    /// measuring it would mean archiving it all once more).
    pub(crate) fn too_large(&self, max: usize) -> Error {
        let size = self.exact_len().unwrap_or(max.saturating_add(1));
        Error::PayloadTooLarge { size, max }
    }
}

/// A sealed memfd holding one encoded frame.
#[derive(Debug)]
pub(crate) struct Blob {
    pub(crate) fd: OwnedFd,
    pub(crate) len: usize,
}

fn io(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Transport(format!("large frame: {what}: {e}"))
}

/// Encodes `src` into a new sealed memfd; `max_frame` is the peer's limit.
pub(crate) fn encode(src: Source<'_>, max_frame: usize) -> Result<Blob> {
    let room = src.exact_len().unwrap_or(max_frame);
    if room > max_frame || room < wire::HEADER_LEN {
        return Err(src.too_large(max_frame));
    }
    let fd = memfd_create(
        "am-large",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(|e| io("memfd_create", e))?;
    let file = File::from(fd);
    file.set_len(room as u64).map_err(|e| io("sizing", e))?;
    let written = {
        // SAFETY: the memfd was created just above and is not shared with
        // anyone yet: no other mapping or descriptor can resize or write it
        // while this mapping lives, and it is unmapped at the end of the block.
        let mut map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| io("mmap", e))?;
        src.encode_into(&mut map[..])
    };
    let len = written.map_err(|DoesNotFit| src.too_large(max_frame))?;
    if len < room {
        file.set_len(len as u64).map_err(|e| io("shrinking", e))?;
    }
    let seals = SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE
        | SealFlag::F_SEAL_SEAL;
    fcntl(&file, FcntlArg::F_ADD_SEALS(seals)).map_err(|e| io("sealing", e))?;
    Ok(Blob {
        fd: file.into(),
        len,
    })
}

/// A received large frame, mapped read-only. Sealed: its bytes never change.
#[derive(Debug)]
pub(crate) struct Received(Mmap);

impl AsRef<[u8]> for Received {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Received {
    /// Shares the mapping as `Bytes` (no copy; unmapped when the last clone drops).
    pub(crate) fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

/// Maps a received memfd after checking its seals and that its size is
/// exactly the announced `len` (at most `max_frame`).
pub(crate) fn map_received(fd: OwnedFd, len: usize, max_frame: usize) -> Result<Received> {
    if len > max_frame || len < wire::HEADER_LEN {
        return Err(io("announced size", len));
    }
    let seals = fcntl(&fd, FcntlArg::F_GET_SEALS).map_err(|e| io("seals", e))?;
    let needed = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE;
    if !SealFlag::from_bits_truncate(seals).contains(needed) {
        return Err(io("seals", format!("{seals:#x} lacks shrink/grow/write")));
    }
    let file = File::from(fd);
    let size = file.metadata().map_err(|e| io("fstat", e))?.len();
    if size != len as u64 {
        return Err(io("size", format!("{size} bytes, {len} announced")));
    }
    // SAFETY: the memfd is sealed against writing, shrinking and growing
    // (checked above, and seals can only be added), so the mapped bytes can
    // never change and the mapping can never SIGBUS; it is mapped read-only.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| io("mmap", e))?;
    if map.len() != len {
        return Err(io("mapping", map.len()));
    }
    Ok(Received(map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{InstanceId, MessageId};
    use crate::wire::{Header, Kind};

    #[test]
    fn round_trips_known_and_unknown_sizes() {
        let header = Header::new(Kind::Request, MessageId(1), InstanceId::new_random());
        let payload = vec![7u8; 3 << 20];
        let frame = OutFrame::bytes(header, "big", &payload);
        let blob = encode(Source::Frame(&frame), 8 << 20).unwrap();
        assert_eq!(blob.len, frame.exact_len().unwrap());
        let got = map_received(blob.fd, blob.len, 8 << 20).unwrap();
        let view = wire::decode(got.as_ref(), 8 << 20).unwrap();
        assert_eq!(view.payload, &payload[..]);

        let value: Vec<u8> = vec![9u8; 1 << 20];
        let frame = OutFrame {
            header,
            name: "big",
            payload: crate::transport::PayloadRef::Archive(&value),
        };
        let blob = encode(Source::Frame(&frame), 8 << 20).unwrap();
        let got = map_received(blob.fd, blob.len, 8 << 20).unwrap();
        let view = wire::decode(got.as_ref(), 8 << 20).unwrap();
        use crate::codec::Decode;
        assert_eq!(Vec::<u8>::decode(view.payload).unwrap(), value);
        assert_eq!(got.into_bytes().len(), blob.len);
    }

    #[test]
    fn refuses_unsealed_or_missized_memfds() {
        let fd = memfd_create("t", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING).unwrap();
        let file = File::from(fd);
        file.set_len(4096).unwrap();
        let fd: OwnedFd = file.try_clone().unwrap().into();
        assert!(map_received(fd, 4096, 1 << 20).is_err());
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE;
        fcntl(&file, FcntlArg::F_ADD_SEALS(seals)).unwrap();
        let fd: OwnedFd = file.try_clone().unwrap().into();
        assert!(map_received(fd, 4000, 1 << 20).is_err());
        let fd: OwnedFd = file.try_clone().unwrap().into();
        assert!(map_received(fd, 4096, 1024).is_err());
        let fd: OwnedFd = file.into();
        assert!(map_received(fd, 4096, 1 << 20).is_ok());
    }

    #[test]
    fn too_large_is_reported() {
        let header = Header::new(Kind::Request, MessageId(1), InstanceId::new_random());
        let payload = vec![0u8; 10_000];
        let frame = OutFrame::bytes(header, "big", &payload);
        assert!(matches!(
            encode(Source::Frame(&frame), 4096),
            Err(Error::PayloadTooLarge { .. })
        ));
        let value: Vec<u8> = vec![1u8; 10_000];
        let frame = OutFrame {
            header,
            name: "big",
            payload: crate::transport::PayloadRef::Archive(&value),
        };
        assert!(matches!(
            encode(Source::Frame(&frame), 4096),
            Err(Error::PayloadTooLarge { .. })
        ));
    }
}
