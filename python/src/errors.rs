//! Python exceptions mirroring [`active_message::Error`]'s variants, all
//! under `ActiveMessageError`.

use active_message::Error;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    _native,
    ActiveMessageError,
    PyException,
    "Base class of every error the runtime raises."
);
create_exception!(
    _native,
    NoSuchHandler,
    ActiveMessageError,
    "The peer has no handler of that name."
);
create_exception!(
    _native,
    HandlerError,
    ActiveMessageError,
    "The handler ran and failed; the message is the handler's."
);
create_exception!(
    _native,
    PeerLost,
    ActiveMessageError,
    "The link to the peer broke (process gone, socket closed, heartbeat missed)."
);
create_exception!(
    _native,
    PeerUnresponsive,
    ActiveMessageError,
    "The peer is alive but answers no liveness probe."
);
create_exception!(
    _native,
    UnknownPeer,
    ActiveMessageError,
    "No link to that peer: connect first."
);
create_exception!(
    _native,
    Timeout,
    ActiveMessageError,
    "The peer was alive but did not answer within the budget."
);
create_exception!(
    _native,
    Full,
    ActiveMessageError,
    "A try-operation found the link full."
);
create_exception!(
    _native,
    Cancelled,
    ActiveMessageError,
    "The caller cancelled the call (a stream's cancel())."
);
create_exception!(
    _native,
    ShuttingDown,
    ActiveMessageError,
    "The manager (or the peer) is shutting down."
);
create_exception!(
    _native,
    PayloadTooLarge,
    ActiveMessageError,
    "The payload exceeds the configured maximum."
);
create_exception!(
    _native,
    InvalidHandlerName,
    ActiveMessageError,
    "A handler name that may not be used here."
);
create_exception!(
    _native,
    HandlerExists,
    ActiveMessageError,
    "A handler of that name is already registered."
);
create_exception!(
    _native,
    Refused,
    ActiveMessageError,
    "The peer refused the message."
);
create_exception!(
    _native,
    ProtocolError,
    ActiveMessageError,
    "A frame broke the wire protocol."
);
create_exception!(
    _native,
    CodecError,
    ActiveMessageError,
    "A payload could not be encoded or decoded."
);
create_exception!(
    _native,
    TransportError,
    ActiveMessageError,
    "A transport failure (socket, binding, endpoint)."
);
create_exception!(
    _native,
    ConfigError,
    ActiveMessageError,
    "An invalid manager setting."
);

/// Adds the exception classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ActiveMessageError", py.get_type::<ActiveMessageError>())?;
    m.add("NoSuchHandler", py.get_type::<NoSuchHandler>())?;
    m.add("HandlerError", py.get_type::<HandlerError>())?;
    m.add("PeerLost", py.get_type::<PeerLost>())?;
    m.add("PeerUnresponsive", py.get_type::<PeerUnresponsive>())?;
    m.add("UnknownPeer", py.get_type::<UnknownPeer>())?;
    m.add("Timeout", py.get_type::<Timeout>())?;
    m.add("Full", py.get_type::<Full>())?;
    m.add("ShuttingDown", py.get_type::<ShuttingDown>())?;
    m.add("Cancelled", py.get_type::<Cancelled>())?;
    m.add("PayloadTooLarge", py.get_type::<PayloadTooLarge>())?;
    m.add("InvalidHandlerName", py.get_type::<InvalidHandlerName>())?;
    m.add("HandlerExists", py.get_type::<HandlerExists>())?;
    m.add("Refused", py.get_type::<Refused>())?;
    m.add("ProtocolError", py.get_type::<ProtocolError>())?;
    m.add("CodecError", py.get_type::<CodecError>())?;
    m.add("TransportError", py.get_type::<TransportError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    Ok(())
}

/// The Python exception for a runtime error. `HandlerError` carries the
/// handler's own text, unprefixed, so a Python caller reads what the handler
/// said; the others carry the runtime's description.
pub(crate) fn to_py(err: Error) -> PyErr {
    let text = err.to_string();
    match err {
        Error::NoSuchHandler(_) => NoSuchHandler::new_err(text),
        Error::Handler(message) => HandlerError::new_err(message),
        Error::PeerLost(_) => PeerLost::new_err(text),
        Error::PeerUnresponsive(_) => PeerUnresponsive::new_err(text),
        Error::UnknownPeer(_) | Error::NoTarget => UnknownPeer::new_err(text),
        Error::Timeout(_) => Timeout::new_err(text),
        Error::Full => Full::new_err(text),
        Error::ShuttingDown => ShuttingDown::new_err(text),
        Error::Cancelled => Cancelled::new_err(text),
        Error::PayloadTooLarge { .. } => PayloadTooLarge::new_err(text),
        Error::InvalidHandlerName(_) => InvalidHandlerName::new_err(text),
        Error::HandlerExists(_) => HandlerExists::new_err(text),
        Error::Refused(_) => Refused::new_err(text),
        Error::Protocol(_) => ProtocolError::new_err(text),
        Error::Codec(_) => CodecError::new_err(text),
        Error::Transport(_) | Error::Io(_) => TransportError::new_err(text),
        Error::Config(_) => ConfigError::new_err(text),
        _ => ActiveMessageError::new_err(text),
    }
}

/// A Python handler's exception as the text the caller receives:
/// `"<ExceptionType>: <message>"`.
pub(crate) fn describe(py: Python<'_>, err: &PyErr) -> String {
    let kind = err
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".to_owned());
    format!("{kind}: {}", err.value(py))
}
