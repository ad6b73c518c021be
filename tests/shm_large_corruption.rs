//! Corrupted pooled-buffer references from a raw peer: each is a protocol
//! error that drops that link only, with no read outside what the server
//! mapped; a well-behaved peer keeps being served.

mod common;

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use active_message::MessageId;
use active_message::handler_impls::{TypedContext, typed_unary_handler};
use active_message::wire::{self, Header, Kind};
use active_message::{
    ActiveMessageManager, ActiveMessageManagerBuilder, Decode, Payload, TransportPolicy,
};
use common::raw_shm::{RawPeer, raw_peer};
use memmap2::MmapMut;
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use tokio::io::AsyncReadExt;

/// Ring record flags and sizes of the pooled path (docs/wire.md, section on
/// shared memory).
const FLAG_POOL: u16 = 2;
const FLAG_SEGMENT: u16 = 3;
const SEG_HEADER: usize = 4096;
const SEG_DATA: usize = 1 << 20;

fn builder() -> ActiveMessageManagerBuilder {
    ActiveMessageManagerBuilder::new()
        .endpoint("local://")
        .transport_policy(TransportPolicy::ShmOnly)
        .default_timeout(Duration::from_secs(10))
}

/// A segment memfd, sealed against shrinking and growing when `sealed`.
fn segment(sealed: bool) -> (File, MmapMut) {
    let fd = memfd_create("raw", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING).unwrap();
    let file = File::from(fd);
    file.set_len((SEG_HEADER + SEG_DATA) as u64).unwrap();
    if sealed {
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW;
        fcntl(&file, FcntlArg::F_ADD_SEALS(seals)).unwrap();
    }
    // SAFETY: our own fresh memfd; the server never truncates it (it cannot,
    // being sealed, or the server refuses it).
    let map = unsafe { MmapMut::map_mut(&file) }.unwrap();
    (file, map)
}

impl RawPeer {
    async fn record(&mut self, flags: u16, words: [u64; 4]) {
        let mut grant = self.tx.reserve(32).await.unwrap();
        grant.set_flags(flags);
        for (chunk, w) in grant[..32].chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        grant.commit_len(32);
    }

    /// Passes `file` as segment `id` (descriptor first, then the record).
    async fn announce(&mut self, id: u64, file: &File) {
        let fd: OwnedFd = file.try_clone().unwrap().into();
        self.link.stream.writable().await.unwrap();
        shm_ring::fdpass::send_fds(self.link.stream.as_fd(), b"F", &[fd.as_fd()]).unwrap();
        self.record(FLAG_SEGMENT, [id, (SEG_HEADER + SEG_DATA) as u64, 0, 0])
            .await;
    }

    /// Writes an echo request into `map` and references it as `gen`.
    async fn echo_pooled(&mut self, map: &mut MmapMut, id: u64, gen_: u64) -> String {
        let header = Header::new(Kind::Request, MessageId(gen_), self.id);
        let frame = wire::encode_to_vec(&header, "echo", &String::from("pooled").encode().unwrap());
        map[SEG_HEADER..SEG_HEADER + frame.len()].copy_from_slice(&frame);
        self.record(FLAG_POOL, [id, gen_, 0, frame.len() as u64])
            .await;
        let grant = tokio::time::timeout(Duration::from_secs(5), self.rx.read())
            .await
            .unwrap()
            .unwrap();
        let bytes = grant.to_vec();
        grant.release();
        let view = wire::decode(&bytes, 1 << 20).unwrap();
        String::decode(view.payload).unwrap()
    }

    async fn hung_up(&mut self) {
        let mut buf = [0u8; 16];
        // The server's acknowledgements of descriptors ("A") may come first.
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), self.link.stream.read(&mut buf))
                .await
                .expect("the server kept the link")
                .unwrap_or(0);
            if n == 0 {
                return;
            }
            assert!(buf[..n].iter().all(|&b| b == b'A'), "{:?}", &buf[..n]);
        }
    }
}

async fn echo(good: &ActiveMessageManager, server: &ActiveMessageManager) -> String {
    good.client()
        .active_message("echo")
        .unwrap()
        .payload("still here")
        .unwrap()
        .expect_response()
        .send(server.instance_id())
        .await
        .unwrap()
        .await_response()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_pool_references_drop_only_that_link() {
    let server = builder().build().await.unwrap();
    let h = typed_unary_handler("echo", |c: TypedContext<String>| Ok(c.input));
    server.register_handler("echo", h).await.unwrap();
    let good = builder().build().await.unwrap();
    good.client()
        .connect_to_peer(server.peer_info().await)
        .await
        .unwrap();
    let errors = || server.stats().counters.protocol_errors;

    // A well-formed pooled frame is served; replaying its generation is not.
    let mut raw = raw_peer(&server).await;
    let (file, mut map) = segment(true);
    raw.announce(0, &file).await;
    assert_eq!(raw.echo_pooled(&mut map, 0, 1).await, "pooled");
    raw.record(FLAG_POOL, [0, 1, 0, 200]).await;
    raw.hung_up().await;
    assert_eq!(errors(), 1);

    // Out of bounds: the last bytes of the segment and beyond.
    let mut raw = raw_peer(&server).await;
    let (file, _map) = segment(true);
    raw.announce(0, &file).await;
    raw.record(FLAG_POOL, [0, 1, (SEG_DATA - 64) as u64, 4096])
        .await;
    raw.hung_up().await;
    assert_eq!(errors(), 2);

    // A segment never announced, then an offset that would wrap.
    let mut raw = raw_peer(&server).await;
    raw.record(FLAG_POOL, [7, 1, 0, 4096]).await;
    raw.hung_up().await;
    assert_eq!(errors(), 3);
    let mut raw = raw_peer(&server).await;
    let (file, _map) = segment(true);
    raw.announce(0, &file).await;
    raw.record(FLAG_POOL, [0, 1, u64::MAX - 15, 64]).await;
    raw.hung_up().await;
    assert_eq!(errors(), 4);

    // An unsealed segment (it could shrink under the reader) is refused.
    let mut raw = raw_peer(&server).await;
    let (file, _map) = segment(false);
    raw.announce(0, &file).await;
    raw.hung_up().await;
    assert_eq!(errors(), 5);

    assert_eq!(echo(&good, &server).await, "still here");
    good.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}
