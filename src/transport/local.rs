//! In-process loopback transport (in progress).
