//! rkyv against JSON (serde) for the same payload: encoding into a
//! transport slot (what the send path does) and decoding into an owned value
//! (what a typed handler receives), for a small struct and a larger one.
//!
//! `cargo bench --bench codec` (`-- --quick` for a short run).

use std::hint::black_box;

use active_message::json::Json;
use active_message::{Decode, Payload};
use criterion::{Criterion, criterion_group, criterion_main};
use rkyv::util::AlignedVec;
use serde::{Deserialize, Serialize};

/// A typical control message: a few scalars and a short string.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Serialize, Deserialize, Clone)]
struct Small {
    request_id: u64,
    layer: u32,
    ready: bool,
    kind: String,
}

/// A larger one: block ids and names, about 40 KB as JSON.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Serialize, Deserialize, Clone)]
struct Large {
    request_id: u64,
    block_ids: Vec<u64>,
    names: Vec<String>,
    weights: Vec<f32>,
}

fn small() -> Small {
    Small {
        request_id: 0x1234_5678_9abc,
        layer: 17,
        ready: true,
        kind: "block-freed".into(),
    }
}

fn large() -> Large {
    Large {
        request_id: 42,
        block_ids: (0..2048u64).map(|i| i * 7919).collect(),
        names: (0..128).map(|i| format!("layer-{i}.attention")).collect(),
        weights: (0..1024u16).map(|i| f32::from(i) * 0.001).collect(),
    }
}

fn slot(bytes: usize) -> AlignedVec {
    let mut slot = AlignedVec::with_capacity(bytes);
    slot.resize(bytes, 0);
    slot
}

fn compare<T>(c: &mut Criterion, name: &str, value: T)
where
    T: Payload + Decode + Serialize + Clone + Send + Sync + 'static,
    T: serde::de::DeserializeOwned,
{
    let json = Json(value.clone());
    let mut dst = slot(1 << 20);
    let archived = value.encode().expect("rkyv encodes");
    let text = json.encode().expect("JSON encodes");
    println!(
        "{name}: {} bytes as rkyv, {} bytes as JSON",
        archived.len(),
        text.len()
    );
    let mut group = c.benchmark_group(name);
    group.bench_function("rkyv encode_into", |b| {
        b.iter(|| black_box(&value).encode_into(&mut dst).expect("fits"))
    });
    group.bench_function("json encode_into", |b| {
        b.iter(|| black_box(&json).encode_into(&mut dst).expect("fits"))
    });
    group.bench_function("rkyv decode", |b| {
        b.iter(|| T::decode(black_box(&archived)).expect("valid"))
    });
    group.bench_function("json decode", |b| {
        b.iter(|| <Json<T>>::decode(black_box(&text)).expect("valid"))
    });
    group.finish();
}

fn codecs(c: &mut Criterion) {
    compare(c, "small", small());
    compare(c, "large", large());
}

criterion_group!(benches, codecs);
criterion_main!(benches);
