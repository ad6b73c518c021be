//! Interoperability of the wire format with an implementation in another language.
//!
//! - `wire_doc_examples_match_the_encoder`: every generated block of
//!   `docs/wire.md` (hex dumps, field listings, rkyv archives) is exactly what
//!   the Rust encoder produces today, so the document cannot drift from the
//!   code. Run with `AM_BLESS_WIRE_DOC=1` to rewrite the blocks in place after
//!   an intended change of the format.
//! - `python_client_speaks_the_wire_protocol`: starts the real `am serve`
//!   binary and runs `tests/interop/wire_client.py` (pyzmq and the Python
//!   standard library only, written from `docs/wire.md`) against it: first its
//!   offline self-test (its encoder against the document's hex dumps), then
//!   every live check.
//!
//! The Python interpreter is `$AM_PYTHON`, else `<crate>/.venv/bin/python` when
//! it exists, else `python3`. Without pyzmq the live test is skipped, unless
//! `$CI` is set, where it fails.

use std::path::{Path, PathBuf};

mod live;
mod wire_doc;

fn wire_doc_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/wire.md")
}
