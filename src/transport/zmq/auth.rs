//! Shared-secret authentication of TCP connections, once per connection.
//!
//! Both ends know a secret. The connecting DEALER sends a nonce (`hello`),
//! the ROUTER answers with its own nonce and a proof that it knows the
//! secret (`challenge`), the DEALER checks it and answers with its own proof
//! (`proof`), and the ROUTER admits the connection (`welcome`). A proof is an
//! HMAC-SHA256 under the secret over a role label, both nonces and both
//! instance ids, so a proof cannot be replayed on another connection, by the
//! other role, or for another pair of instances. The frames are laid out
//! byte by byte in `docs/wire.md`, section 14.
//!
//! RustCrypto's `hmac` and `sha2` compute the MACs and `Mac::verify_slice`
//! compares them in constant time; `getrandom` draws the nonces from the
//! operating system.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::frames::Control;
use crate::error::{Error, Result};
use crate::ids::{InstanceId, MessageId};
use crate::wire::{FrameRef, flags};

/// Bytes of a nonce.
pub(crate) const NONCE_LEN: usize = 32;
/// Bytes of a proof (an HMAC-SHA256 tag).
pub(crate) const PROOF_LEN: usize = 32;
/// Bytes of the frame limit that opens hello, challenge and welcome payloads.
const LIMIT_LEN: usize = 8;
/// Payload of a hello: limit, client nonce.
pub(crate) const HELLO_LEN: usize = LIMIT_LEN + NONCE_LEN;
/// Payload of a challenge: limit, server nonce, server proof.
pub(crate) const CHALLENGE_LEN: usize = LIMIT_LEN + NONCE_LEN + PROOF_LEN;

/// Label of the proof the server (ROUTER side) gives.
const SERVER_LABEL: &[u8] = b"AMSG-AUTH-v1 server";
/// Label of the proof the client (DEALER side) gives.
const CLIENT_LABEL: &[u8] = b"AMSG-AUTH-v1 client";

type HmacSha256 = Hmac<Sha256>;

/// A shared secret for TCP authentication.
///
/// Its `Debug` output never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthSecret(Arc<[u8]>);

impl AuthSecret {
    /// A secret from its bytes.
    ///
    /// # Errors
    /// [`Error::Config`] when `secret` is empty.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self> {
        let secret = secret.as_ref();
        if secret.is_empty() {
            return Err(Error::Config("the authentication secret is empty".into()));
        }
        Ok(Self(secret.into()))
    }

    fn mac(&self, label: &[u8], nonces: &Nonces, ids: &Ids) -> HmacSha256 {
        // HMAC takes keys of any length; this cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(label);
        mac.update(&nonces.client);
        mac.update(&nonces.server);
        mac.update(ids.client.as_bytes());
        mac.update(ids.server.as_bytes());
        mac
    }

    /// The proof one side gives.
    pub(crate) fn proof(&self, role: Role, nonces: &Nonces, ids: &Ids) -> [u8; PROOF_LEN] {
        self.mac(role.label(), nonces, ids)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Checks, in constant time, the proof one side gave.
    pub(crate) fn verify(&self, role: Role, nonces: &Nonces, ids: &Ids, proof: &[u8]) -> bool {
        self.mac(role.label(), nonces, ids)
            .verify_slice(proof)
            .is_ok()
    }
}

impl fmt::Debug for AuthSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthSecret(..)")
    }
}

/// Which side a proof comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The ROUTER (the side that was dialled).
    Server,
    /// The DEALER (the side that dialled).
    Client,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Server => SERVER_LABEL,
            Self::Client => CLIENT_LABEL,
        }
    }
}

/// Both nonces of one handshake.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Nonces {
    pub(crate) client: [u8; NONCE_LEN],
    pub(crate) server: [u8; NONCE_LEN],
}

/// Both instance ids of one handshake.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ids {
    pub(crate) client: InstanceId,
    pub(crate) server: InstanceId,
}

/// A fresh random nonce.
///
/// # Errors
/// [`Error::Transport`] when the operating system has no randomness to give.
pub(crate) fn nonce() -> Result<[u8; NONCE_LEN]> {
    let mut nonce = [0; NONCE_LEN];
    getrandom::fill(&mut nonce)
        .map_err(|err| Error::transport(format!("no randomness for a nonce: {err}")))?;
    Ok(nonce)
}

/// A hello payload: our frame limit, our nonce.
pub(crate) fn hello_payload(limit: usize, nonce: &[u8; NONCE_LEN]) -> [u8; HELLO_LEN] {
    let mut out = [0; HELLO_LEN];
    out[..LIMIT_LEN].copy_from_slice(&(limit as u64).to_le_bytes());
    out[LIMIT_LEN..].copy_from_slice(nonce);
    out
}

/// A challenge payload: our frame limit, our nonce, our proof.
pub(crate) fn challenge_payload(
    limit: usize,
    nonce: &[u8; NONCE_LEN],
    proof: &[u8; PROOF_LEN],
) -> [u8; CHALLENGE_LEN] {
    let mut out = [0; CHALLENGE_LEN];
    out[..LIMIT_LEN].copy_from_slice(&(limit as u64).to_le_bytes());
    out[LIMIT_LEN..LIMIT_LEN + NONCE_LEN].copy_from_slice(nonce);
    out[LIMIT_LEN + NONCE_LEN..].copy_from_slice(proof);
    out
}

/// A hello read back: the announced limit and the client's nonce.
pub(crate) fn read_hello(payload: &[u8]) -> Option<(usize, [u8; NONCE_LEN])> {
    if payload.len() != HELLO_LEN {
        return None;
    }
    let (limit, nonce) = payload.split_at(LIMIT_LEN);
    Some((read_limit(limit)?, nonce.try_into().ok()?))
}

/// A challenge read back: limit, server nonce, server proof.
pub(crate) fn read_challenge(payload: &[u8]) -> Option<(usize, [u8; NONCE_LEN], &[u8])> {
    if payload.len() != CHALLENGE_LEN {
        return None;
    }
    let (limit, rest) = payload.split_at(LIMIT_LEN);
    let (nonce, proof) = rest.split_at(NONCE_LEN);
    Some((read_limit(limit)?, nonce.try_into().ok()?, proof))
}

/// What the DEALER does next in its handshake.
pub(crate) enum Handshake {
    /// Nothing yet (an unrelated pong).
    Wait,
    /// Send our proof.
    Send(zmq::Message),
    /// Welcomed: the link is up; the server accepts frames up to this size.
    Done(usize),
}

/// The DEALER's side of one handshake.
#[derive(Debug)]
pub(crate) struct ClientAuth {
    nonce: [u8; NONCE_LEN],
    hello: MessageId,
    /// Id of the proof we sent, once we sent it.
    pub(crate) proof_id: Option<MessageId>,
    /// The frame limit the server announced in its challenge.
    limit: usize,
}

impl ClientAuth {
    /// Starts a handshake: our state, and the hello to send (with its id).
    pub(crate) fn start(control: &Control) -> Result<(Self, (MessageId, zmq::Message))> {
        let nonce = nonce()?;
        let payload = hello_payload(control.max_frame(), &nonce);
        let (hello, msg) = control.auth(false, MessageId(0), &payload);
        let state = Self {
            nonce,
            hello,
            proof_id: None,
            limit: control.max_frame(),
        };
        Ok((state, (hello, msg)))
    }

    /// Takes a pong from `server` (already checked to be the expected
    /// instance). Fails, saying why, when the server cannot prove it knows
    /// the secret or does not authenticate at all.
    pub(crate) fn on_pong(
        &mut self,
        secret: &AuthSecret,
        control: &Control,
        server: InstanceId,
        frame: &FrameRef<'_>,
    ) -> std::result::Result<Handshake, &'static str> {
        let header = &frame.header;
        let corr = header.correlation_id;
        if !header.has(flags::AUTH) {
            // Keep-alives (correlation 0) say nothing; a plain answer to our
            // hello comes from a server without a secret.
            return match corr == self.hello {
                true => Err("the peer does not authenticate (no secret configured there)"),
                false => Ok(Handshake::Wait),
            };
        }
        match self.proof_id {
            None if corr == self.hello => {
                let (limit, server_nonce, proof) =
                    read_challenge(frame.payload).ok_or("malformed challenge")?;
                let nonces = Nonces {
                    client: self.nonce,
                    server: server_nonce,
                };
                let ids = Ids {
                    client: control.local(),
                    server,
                };
                if !secret.verify(Role::Server, &nonces, &ids, proof) {
                    return Err("the peer's proof does not match our secret");
                }
                let ours = secret.proof(Role::Client, &nonces, &ids);
                let (id, msg) = control.auth(false, header.message_id, &ours);
                self.proof_id = Some(id);
                self.limit = limit;
                Ok(Handshake::Send(msg))
            }
            Some(id) if corr == id => Ok(Handshake::Done(self.limit)),
            _ => Ok(Handshake::Wait),
        }
    }
}

fn read_limit(bytes: &[u8]) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(bytes.try_into().ok()?)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (AuthSecret, Nonces, Ids) {
        let nonces = Nonces {
            client: nonce().unwrap(),
            server: nonce().unwrap(),
        };
        let ids = Ids {
            client: InstanceId::new_random(),
            server: InstanceId::new_random(),
        };
        (AuthSecret::new("s3cret").unwrap(), nonces, ids)
    }

    #[test]
    fn proofs_verify_only_with_the_same_secret_role_nonces_and_ids() {
        let (secret, nonces, ids) = setup();
        let proof = secret.proof(Role::Client, &nonces, &ids);
        assert!(secret.verify(Role::Client, &nonces, &ids, &proof));
        assert!(!secret.verify(Role::Server, &nonces, &ids, &proof));
        let other = AuthSecret::new("other").unwrap();
        assert!(!other.verify(Role::Client, &nonces, &ids, &proof));
        let swapped = Ids {
            client: ids.server,
            server: ids.client,
        };
        assert!(!secret.verify(Role::Client, &nonces, &swapped, &proof));
        let mut fresh = nonces;
        fresh.server[0] ^= 1;
        assert!(!secret.verify(Role::Client, &fresh, &ids, &proof));
        assert!(!secret.verify(Role::Client, &nonces, &ids, &proof[..31]));
    }

    #[test]
    fn payloads_read_back_and_bad_lengths_are_refused() {
        let n = nonce().unwrap();
        assert_eq!(read_hello(&hello_payload(4096, &n)), Some((4096, n)));
        assert_eq!(read_hello(&[0; HELLO_LEN - 1]), None);
        let proof = [7; PROOF_LEN];
        let payload = challenge_payload(99, &n, &proof);
        assert_eq!(read_challenge(&payload), Some((99, n, &proof[..])));
        assert_eq!(read_challenge(&payload[1..]), None);
    }

    #[test]
    fn empty_secrets_are_refused_and_debug_hides_the_secret() {
        assert!(AuthSecret::new("").is_err());
        let secret = AuthSecret::new("hunter2").unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
