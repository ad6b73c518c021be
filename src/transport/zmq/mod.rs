//! ZeroMQ over TCP (in progress).
