//! `am ping`.

use std::time::{Duration, Instant};

use clap::Args;

use crate::CliError;
use crate::peer::{Session, Target};

/// Options of `am ping`.
#[derive(Debug, Args)]
pub struct PingArgs {
    #[command(flatten)]
    target: Target,
    /// Round trips to make.
    #[arg(short = 'n', long = "count", value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    /// Payload size in bytes.
    #[arg(long, value_name = "B", default_value_t = 64)]
    size: usize,
}

/// Latency summary of a set of samples.
pub struct Summary {
    /// Fastest sample.
    pub min: Duration,
    /// Median.
    pub p50: Duration,
    /// 99th percentile (nearest rank).
    pub p99: Duration,
    /// Slowest sample.
    pub max: Duration,
}

impl Summary {
    /// Summarises `samples` (sorted in place); `None` when empty.
    pub fn of(samples: &mut [Duration]) -> Option<Self> {
        samples.sort_unstable();
        let at = |q: f64| {
            let rank = ((samples.len() as f64) * q).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1]
        };
        Some(Self {
            min: *samples.first()?,
            p50: at(0.50),
            p99: at(0.99),
            max: *samples.last()?,
        })
    }
}

/// Formats a duration in microseconds with one decimal.
pub fn micros(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

/// Round trips to `echo_bytes`, each checked to come back unchanged.
pub async fn run(args: PingArgs) -> Result<(), CliError> {
    let session = Session::open(&args.target).await?;
    let transport = session
        .transport()
        .map_or_else(|| "unknown".to_owned(), |t| t.to_string());
    let payload = bytes::Bytes::from(vec![0xa5u8; args.size]);
    let mut samples = Vec::with_capacity(usize::try_from(args.count).unwrap_or(0));
    for _ in 0..args.count {
        let start = Instant::now();
        let answer = session
            .client
            .active_message("echo_bytes")?
            .raw_payload(payload.clone())
            .expect_response::<()>()
            .send(session.peer)
            .await?
            .await_response_raw()
            .await?;
        samples.push(start.elapsed());
        if answer != payload {
            return Err(CliError::EchoMismatch);
        }
    }
    let Some(summary) = Summary::of(&mut samples) else {
        return Err(CliError::NoSamples);
    };
    println!(
        "{} round trips of {} B to {} over {transport}",
        args.count, args.size, session.peer
    );
    println!(
        "min {}  p50 {}  p99 {}  max {}",
        micros(summary.min),
        micros(summary.p50),
        micros(summary.p99),
        micros(summary.max)
    );
    session.close().await
}
