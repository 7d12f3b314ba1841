//! Latency samples and the figures printed from them.

use std::time::{Duration, Instant};

/// Per-call latencies of one side of a comparison.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn record(&mut self, took: Duration) {
        self.0.push(took);
    }

    fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }

    pub fn p50(&self) -> Duration {
        self.quantile(0.50)
    }

    pub fn p99(&self) -> Duration {
        self.quantile(0.99)
    }
}

/// Times one awaited call.
pub async fn timed<T>(samples: &mut Samples, call: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = call.await;
    samples.record(started.elapsed());
    out
}

pub fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

impl Samples {
    /// Adds every sample of `other`.
    pub fn extend(&mut self, other: &Samples) {
        self.0.extend_from_slice(&other.0);
    }

    /// Forgets the first `calls` samples (warm-up).
    pub fn skip_first(&mut self, calls: usize) {
        self.0.drain(..calls.min(self.0.len()));
    }
}
