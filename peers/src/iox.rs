//! iceoryx2 (`ipc::Service`, shared memory) across two processes, 64 B each way:
//!
//! * request-response: the parent loans a request, writes 64 B and sends it; the child
//!   server receives it, loans a response, copies the 64 B in and sends it; the parent
//!   receives the response. A real round trip. (iceoryx2's own benchmark reports half
//!   of a round trip as "latency".)
//! * publish-subscribe ping-pong: two services, one per direction; each side loans a
//!   sample, writes 64 B and sends; the other side receives and answers the same way.
//!
//! Both sides busy-poll (`util::spin`: a spin hint per poll, a yield every 1024), as
//! iceoryx2's own benchmarks and our Spin cases do.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use iceoryx2::prelude::*;

use crate::Plan;
use crate::raw::STOP_BYTE;
use crate::report::Row;
use crate::util::{Args, Ctl, Peer, kv, spin, time_trips};

/// The payload of both directions.
type Msg = [u8; 64];

/// A waiting side gives up after this long without an answer (a hang guard only).
const GUARD: Duration = Duration::from_secs(10);

/// A node of this process, quiet below errors.
fn node() -> Result<Node<ipc::Service>> {
    set_log_level(LogLevel::Error);
    NodeBuilder::new()
        .create::<ipc::Service>()
        .map_err(|e| anyhow!("iceoryx2 node: {e:?}"))
}

/// A service name unique to this parent process and case instance.
fn unique(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("am-peers/{}/{what}/{n}", std::process::id())
}

fn name(s: &str) -> Result<ServiceName> {
    ServiceName::new(s).map_err(|e| anyhow!("service name {s}: {e:?}"))
}

/// Busy-polls `poll` until it yields a value; fails after [`GUARD`].
fn wait_for<T>(mut poll: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let mut polls = 0u32;
    let mut since: Option<Instant> = None;
    loop {
        if let Some(v) = poll()? {
            return Ok(v);
        }
        spin(&mut polls);
        if polls.is_multiple_of(1 << 20) && since.get_or_insert_with(Instant::now).elapsed() > GUARD
        {
            bail!("no answer from the peer within {GUARD:?}");
        }
    }
}

/// Request-response round trips, 64 B each way, with a loaned response.
pub fn request_response(plan: Plan, warmup: u64, iters: u64) -> Result<Row> {
    let node = node()?;
    let svc_name = unique("rr");
    let service = node
        .service_builder(&name(&svc_name)?)
        .request_response::<Msg, Msg>()
        .open_or_create()
        .map_err(|e| anyhow!("request-response service: {e:?}"))?;
    let client = service
        .client_builder()
        .create()
        .map_err(|e| anyhow!("client: {e:?}"))?;
    let peer = Peer::spawn("iox_rr", &kv(&[("service", &svc_name)]))?;
    peer.ctl.expect("ready")?;
    let trip = |m: Msg| -> Result<u8> {
        let req = client.loan_uninit().map_err(|e| anyhow!("loan: {e:?}"))?;
        let pending = req
            .write_payload(m)
            .send()
            .map_err(|e| anyhow!("send: {e:?}"))?;
        let resp = wait_for(|| pending.receive().map_err(|e| anyhow!("receive: {e:?}")))?;
        Ok(resp.payload()[63])
    };
    let mut failed = None;
    let trips = time_trips(warmup, iters, plan.budget(), |_| {
        if let Err(e) = trip([7; 64]).map(std::hint::black_box) {
            failed.get_or_insert(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let stop = client.loan_uninit().map_err(|e| anyhow!("loan: {e:?}"))?;
    let _pending = stop
        .write_payload([STOP_BYTE; 64])
        .send()
        .map_err(|e| anyhow!("send: {e:?}"))?;
    peer.finish()?;
    let label = "iceoryx2 request-response round trip (64 B, loaned response, busy-poll)";
    Ok(trips.row("iox_rr", label).vs("ring_pp_spin"))
}

/// The server: answers every request with a loaned copy until a stop request.
pub fn request_response_child(args: &Args, ctl: &Ctl) -> Result<()> {
    let node = node()?;
    let service = node
        .service_builder(&name(&args.get::<String>("service")?)?)
        .request_response::<Msg, Msg>()
        .open_or_create()
        .map_err(|e| anyhow!("request-response service: {e:?}"))?;
    let server = service
        .server_builder()
        .create()
        .map_err(|e| anyhow!("server: {e:?}"))?;
    ctl.send("ready", &[])?;
    loop {
        let mut polls = 0u32;
        let req = loop {
            match server.receive().map_err(|e| anyhow!("receive: {e:?}"))? {
                Some(r) => break r,
                None => spin(&mut polls),
            }
        };
        if req.payload()[0] == STOP_BYTE {
            return Ok(());
        }
        let resp = req.loan_uninit().map_err(|e| anyhow!("loan: {e:?}"))?;
        resp.write_payload(*req.payload())
            .send()
            .map_err(|e| anyhow!("send: {e:?}"))?;
    }
}

/// The two one-way services of a publish-subscribe ping-pong.
fn pubsub_services(
    node: &Node<ipc::Service>,
    base: &str,
) -> Result<
    [iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, Msg, ()>; 2],
> {
    let open = |dir: &str| {
        node.service_builder(&name(&format!("{base}/{dir}"))?)
            .publish_subscribe::<Msg>()
            .open_or_create()
            .map_err(|e| anyhow!("publish-subscribe service: {e:?}"))
    };
    Ok([open("ping")?, open("pong")?])
}

/// Publish-subscribe ping-pong, 64 B each way.
pub fn pubsub(plan: Plan, warmup: u64, iters: u64) -> Result<Row> {
    let node = node()?;
    let base = unique("ps");
    let [ping, pong] = pubsub_services(&node, &base)?;
    let publisher = ping
        .publisher_builder()
        .create()
        .map_err(|e| anyhow!("publisher: {e:?}"))?;
    let subscriber = pong
        .subscriber_builder()
        .create()
        .map_err(|e| anyhow!("subscriber: {e:?}"))?;
    let peer = Peer::spawn("iox_ps", &kv(&[("service", &base)]))?;
    peer.ctl.expect("ready")?;
    let send = |m: Msg| -> Result<()> {
        let s = publisher
            .loan_uninit()
            .map_err(|e| anyhow!("loan: {e:?}"))?;
        s.write_payload(m)
            .send()
            .map_err(|e| anyhow!("send: {e:?}"))?;
        Ok(())
    };
    let mut failed = None;
    let trips = time_trips(warmup, iters, plan.budget(), |_| {
        let r = send([7; 64]).and_then(|()| {
            let s = wait_for(|| subscriber.receive().map_err(|e| anyhow!("receive: {e:?}")))?;
            Ok(std::hint::black_box(s.payload()[63]))
        });
        if let Err(e) = r {
            failed.get_or_insert(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    send([STOP_BYTE; 64])?;
    peer.finish()?;
    let label = "iceoryx2 publish-subscribe ping-pong (64 B, loaned samples, busy-poll)";
    Ok(trips.row("iox_ps", label).vs("ring_pp_spin"))
}

/// The echo side: answers every sample with a loaned copy until a stop sample.
pub fn pubsub_child(args: &Args, ctl: &Ctl) -> Result<()> {
    let node = node()?;
    let [ping, pong] = pubsub_services(&node, &args.get::<String>("service")?)?;
    let subscriber = ping
        .subscriber_builder()
        .create()
        .map_err(|e| anyhow!("subscriber: {e:?}"))?;
    let publisher = pong
        .publisher_builder()
        .create()
        .map_err(|e| anyhow!("publisher: {e:?}"))?;
    ctl.send("ready", &[])?;
    loop {
        let mut polls = 0u32;
        let sample = loop {
            match subscriber
                .receive()
                .map_err(|e| anyhow!("receive: {e:?}"))?
            {
                Some(s) => break s,
                None => spin(&mut polls),
            }
        };
        if sample.payload()[0] == STOP_BYTE {
            return Ok(());
        }
        let out = publisher
            .loan_uninit()
            .map_err(|e| anyhow!("loan: {e:?}"))?;
        out.write_payload(*sample.payload())
            .send()
            .map_err(|e| anyhow!("send: {e:?}"))?;
    }
}
