//! The span every message runs in. At `debug`, so with tracing off (or at
//! `info` and above) the macro returns a disabled span after one cached
//! interest check: no field is evaluated (not even the link's kind, which
//! may be a custom transport's name), nothing is formatted or allocated.

use tracing::Span;

use crate::ids::InstanceId;
use crate::transport::PeerLink;
use crate::wire::Header;

/// The span of an inbound invocation, entered while its handler runs.
#[inline]
pub(crate) fn inbound(header: &Header, handler: &str, link: &dyn PeerLink) -> Span {
    tracing::debug_span!(
        "am.handle",
        id = header.message_id.0,
        handler,
        peer = %header.sender,
        transport = %link.kind(),
    )
}

/// The span of an outbound invocation, entered while it is written.
#[inline]
pub(crate) fn outbound(
    header: &Header,
    handler: &str,
    peer: InstanceId,
    link: &dyn PeerLink,
) -> Span {
    tracing::debug_span!(
        "am.send",
        id = header.message_id.0,
        handler,
        peer = %peer,
        transport = %link.kind(),
    )
}
