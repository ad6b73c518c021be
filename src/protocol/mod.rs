//! What travels: the wire envelope shared by every transport, and the
//! payload codecs (rkyv archives, JSON for serde types).

pub(crate) mod codec;
pub(crate) mod head;
pub mod json;
pub(crate) mod shape;
pub mod wire;
