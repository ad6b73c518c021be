//! Which TCP connection a ROUTER message came from.
//!
//! A client chooses its own routing id, and with `ROUTER_HANDOVER` a new
//! connection presenting an authenticated client's routing id takes that
//! client's place. So authentication is tied to the connection: libzmq
//! attaches the connection's properties to every message it reads from it,
//! among them its file descriptor (`__fd`, what `ZMQ_SRCFD` reads) and the
//! remote `Peer-Address` (IP and port). A frame counts as authenticated only
//! when both match the ones recorded when its routing id authenticated. A
//! descriptor number is reused only after its connection closed, and the
//! remote address and port are the other host's own: a stranger would need
//! both at once.
//!
//! The `zmq` crate reads properties only through an allocating helper, so the
//! body part is received into a `zmq_msg_t` of our own via `zmq-sys`. (Not
//! the routing-id part: libzmq's ROUTER builds it without properties when it
//! prefetched the message, as `zmq_poll` makes it do.)

use std::ffi::CStr;
use std::mem::MaybeUninit;

/// The properties naming the connection (libzmq's `stream_engine_base.cpp`).
const FD_PROPERTY: &CStr = c"__fd";
const ADDRESS_PROPERTY: &CStr = c"Peer-Address";

/// A connection as libzmq describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConnId {
    fd: i32,
    address: Box<[u8]>,
}

/// A borrowed [`ConnId`], read from a message without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnRef<'a> {
    fd: i32,
    address: &'a [u8],
}

impl ConnRef<'_> {
    /// An owned copy, to remember.
    pub(crate) fn to_owned(self) -> ConnId {
        ConnId {
            fd: self.fd,
            address: self.address.into(),
        }
    }

    /// Whether this is the connection `id`.
    pub(crate) fn is(self, id: &ConnId) -> bool {
        self.fd == id.fd && self.address == &*id.address
    }
}

/// A message part received with `zmq_msg_recv`, closed on drop.
pub(crate) struct RawMsg {
    msg: zmq_sys::zmq_msg_t,
}

impl RawMsg {
    /// An empty message.
    pub(crate) fn new() -> Self {
        let mut msg = MaybeUninit::<zmq_sys::zmq_msg_t>::uninit();
        // SAFETY: `zmq_msg_init` initializes the whole struct and cannot fail.
        let msg = unsafe {
            zmq_sys::zmq_msg_init(msg.as_mut_ptr());
            msg.assume_init()
        };
        Self { msg }
    }

    /// Receives the next message part from `socket`.
    pub(crate) fn recv(&mut self, socket: &mut zmq::Socket, flags: i32) -> zmq::Result<()> {
        // SAFETY: `self.msg` is initialized and `socket` is a live socket
        // used only by this thread (libzmq sockets are single-threaded).
        let rc = unsafe { zmq_sys::zmq_msg_recv(&mut self.msg, socket.as_mut_ptr(), flags) };
        if rc == -1 {
            // SAFETY: reads this thread's libzmq error number.
            return Err(zmq::Error::from_raw(unsafe { zmq_sys::zmq_errno() }));
        }
        Ok(())
    }

    /// Whether more parts follow.
    pub(crate) fn more(&self) -> bool {
        // SAFETY: `self.msg` is initialized; libzmq only reads it.
        unsafe { zmq_sys::zmq_msg_more(&self.msg) == 1 }
    }

    /// The part's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        let msg = std::ptr::from_ref(&self.msg).cast_mut();
        // SAFETY: `self.msg` is initialized; `zmq_msg_data` and
        // `zmq_msg_size` only read it (they take `*mut` for historical
        // reasons). The data lives as long as the message, which the
        // returned slice borrows.
        unsafe {
            let data = zmq_sys::zmq_msg_data(msg).cast::<u8>();
            let len = zmq_sys::zmq_msg_size(msg);
            if data.is_null() || len == 0 {
                return &[];
            }
            std::slice::from_raw_parts(data, len)
        }
    }

    /// The connection the part came from (`None` for transports without
    /// connection properties, such as `inproc`).
    pub(crate) fn conn(&self) -> Option<ConnRef<'_>> {
        let fd = self.property(FD_PROPERTY)?;
        let fd = std::str::from_utf8(fd).ok()?.parse().ok()?;
        let address = self.property(ADDRESS_PROPERTY).unwrap_or_default();
        Some(ConnRef { fd, address })
    }

    fn property(&self, name: &CStr) -> Option<&[u8]> {
        // SAFETY: `self.msg` is initialized and `name` is NUL-terminated.
        // libzmq returns NULL or a NUL-terminated string owned by the
        // message's metadata, which lives as long as the message.
        unsafe {
            let value = zmq_sys::zmq_msg_gets(&self.msg, name.as_ptr());
            (!value.is_null()).then(|| CStr::from_ptr(value).to_bytes())
        }
    }
}

impl Drop for RawMsg {
    fn drop(&mut self) {
        // SAFETY: `self.msg` is initialized and closed exactly once, here.
        unsafe {
            zmq_sys::zmq_msg_close(&mut self.msg);
        }
    }
}
