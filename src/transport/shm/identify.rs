//! Learning which instance listens on a rendezvous socket, without a link.
//!
//! The client sends a hello that expects the nil instance. No manager has
//! that id, so the server refuses the hello (`WrongInstance`, no
//! descriptors, no rings created), and its refusal names the server's
//! instance id at the same offset as a successful answer (see
//! [`super::handshake`]). Tools that only know an address use this before
//! a normal, identity-checked connect.

use std::path::Path;
use std::time::Duration;

use shm_ring::WaitPolicy;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use super::handshake::{
    ACK_MAGIC, HELLO_LEN, HELLO_MAGIC, PROTOCOL_VERSION, bounded, hs_err, id_at, policy_byte,
    read_ack,
};
use crate::error::{Error, Result};
use crate::ids::InstanceId;

/// The instance listening on the rendezvous socket at `path`, every step
/// bounded by `timeout`.
pub(crate) async fn identify(path: &Path, timeout: Duration) -> Result<InstanceId> {
    let mut stream = match tokio::time::timeout(timeout, UnixStream::connect(path)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(Error::Transport(format!(
                "cannot reach {}: {e}",
                path.display()
            )));
        }
        Err(_) => return Err(hs_err("connect", format!("no answer within {timeout:?}"))),
    };
    let mut hello = [0u8; HELLO_LEN];
    hello[0..8].copy_from_slice(&HELLO_MAGIC);
    hello[8..10].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    hello[10] = policy_byte(WaitPolicy::Park);
    hello[16..32].copy_from_slice(InstanceId::new_random().as_bytes());
    // Bytes 32..48 stay zero: the nil instance, which nobody is.
    let sent = bounded(timeout, "sending hello", stream.write_all(&hello)).await;
    let answer = bounded(timeout, "reading the answer", read_ack(&stream)).await;
    let (ack, _fds) = match (sent, answer) {
        (_, Ok(answer)) => answer,
        (Err(e), Err(_)) | (Ok(()), Err(e)) => return Err(e),
    };
    if ack[0..8] != ACK_MAGIC {
        return Err(hs_err("answer", "bad magic"));
    }
    let server = id_at(&ack, 16);
    if server == InstanceId::nil() {
        return Err(hs_err("answer", "no instance id"));
    }
    Ok(server)
}
