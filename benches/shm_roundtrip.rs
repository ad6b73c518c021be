//! Round-trip benchmark of the shared-memory transport (placeholder).

fn main() {}
