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

/// Awaits both calls, one after the other, the helper first on even turns and the hand-written
/// side first on odd ones: whichever goes second finds the server as the first left it (a page
/// just split, a row just unlocked), so a fixed order would bias every pair the same way.
pub async fn in_turn<A, B>(
    turn: usize,
    helper: impl std::future::Future<Output = A>,
    raw: impl std::future::Future<Output = B>,
) -> (A, B) {
    if turn.is_multiple_of(2) {
        let a = helper.await;
        (a, raw.await)
    } else {
        let b = raw.await;
        (helper.await, b)
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

/// The median of per-round figures (rounds are odd in number; with an even count, the upper
/// of the two middle ones).
pub fn median<T: PartialOrd + Copy>(rounds: &[T]) -> T {
    let mut sorted = rounds.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("figures are comparable"));
    sorted[sorted.len() / 2]
}

/// One side's per-round latency figures: the p50 and p99 of each round.
#[derive(Debug, Default, Clone)]
pub struct RoundFigures {
    p50: Vec<Duration>,
    p99: Vec<Duration>,
}

impl RoundFigures {
    pub fn add(&mut self, round: &Samples) {
        self.p50.push(round.p50());
        self.p99.push(round.p99());
    }

    /// The median over rounds of each round's p50.
    pub fn p50(&self) -> Duration {
        median(&self.p50)
    }

    /// The median over rounds of each round's p99.
    pub fn p99(&self) -> Duration {
        median(&self.p99)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::in_turn;

    /// The order both sides ran in, on each of four turns.
    async fn orders() -> Vec<Vec<&'static str>> {
        let mut out = Vec::new();
        for turn in 0..4 {
            let ran = RefCell::new(Vec::new());
            let (a, b) = in_turn(
                turn,
                async {
                    ran.borrow_mut().push("helper");
                    1
                },
                async {
                    ran.borrow_mut().push("raw");
                    2
                },
            )
            .await;
            assert_eq!((a, b), (1, 2), "each side's result in its own place");
            out.push(ran.into_inner());
        }
        out
    }

    #[tokio::test]
    async fn which_side_goes_first_alternates_from_turn_to_turn() {
        assert_eq!(
            orders().await,
            [
                ["helper", "raw"],
                ["raw", "helper"],
                ["helper", "raw"],
                ["raw", "helper"]
            ]
        );
    }
}
