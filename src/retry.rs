//! Waiting between attempts, in one place. Every sequence of delays is exponential with real
//! random jitter (`backon`, seeded per process from the OS), so replicas that collided, or
//! that all saw the same registry or API server go away, do not retry in lockstep.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Attempts at a commit or push that lost a race to another writer, in all.
pub const COMMIT_ATTEMPTS: usize = 10;

/// The delays between the [`COMMIT_ATTEMPTS`] attempts of a writer whose branch keeps moving:
/// 150 ms doubling up to 1.5 s, each stretched by a random 0–100 %: about 10 to 20 s in
/// all, long enough for a slow render to get between the commits of a busy status writer.
pub fn commit_race() -> impl Iterator<Item = Duration> {
    jittered(
        Duration::from_millis(150),
        Duration::from_millis(1500),
        COMMIT_ATTEMPTS - 1,
    )
}

/// The delays between `retries` retries of a request: `base` doubling up to 10 s, each
/// stretched by a random 0–100 %.
pub fn requests(base: Duration, retries: u32) -> impl Iterator<Item = Duration> {
    jittered(base, Duration::from_secs(10).max(base), retries as usize)
}

fn jittered(min: Duration, max: Duration, times: usize) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(times)
        .build()
}

/// How long the controller waits after `failures` failed rounds in a row: its interval,
/// doubled per failure after the first, at most 10 intervals or 5 minutes (but never less
/// than the interval). Not jittered: one controller leads at a time.
pub fn after_failures(interval: Duration, failures: u32) -> Duration {
    let doubled = interval.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let cap = interval.saturating_mul(10).min(Duration::from_secs(300)).max(interval);
    doubled.min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_races_get_bounded_jittered_waits() {
        let delays: Vec<Duration> = commit_race().collect();
        assert_eq!(delays.len(), COMMIT_ATTEMPTS - 1);
        let total: Duration = delays.iter().sum();
        assert!(total >= Duration::from_millis(9_750), "{total:?}");
        assert!(total <= Duration::from_millis(19_500), "{total:?}");
        for (i, d) in delays.iter().enumerate() {
            let nominal = Duration::from_millis(150 << i.min(4)).min(Duration::from_millis(1500));
            assert!(*d >= nominal && *d <= nominal * 2, "delay {i}: {d:?} for {nominal:?}");
        }
    }

    #[test]
    fn jitter_is_random_not_a_function_of_the_process() {
        // Two sequences of one process differ: the jitter does not come from the PID (which is
        // 1 in every container) or the attempt number.
        let a: Vec<Duration> = commit_race().collect();
        let b: Vec<Duration> = commit_race().collect();
        assert_ne!(a, b);
    }

    #[test]
    fn requests_double_from_the_base() {
        let d: Vec<Duration> = requests(Duration::from_millis(250), 3).collect();
        assert_eq!(d.len(), 3);
        assert!(d[0] >= Duration::from_millis(250) && d[0] <= Duration::from_millis(500));
        assert!(d[2] >= Duration::from_millis(1000) && d[2] <= Duration::from_millis(2000));
        assert_eq!(requests(Duration::from_millis(250), 0).count(), 0);
    }

    #[test]
    fn failed_rounds_double_up_to_ten_intervals_or_five_minutes() {
        let s = Duration::from_secs;
        assert_eq!(after_failures(s(30), 0), s(30));
        assert_eq!(after_failures(s(30), 1), s(30));
        assert_eq!(after_failures(s(30), 2), s(60));
        assert_eq!(after_failures(s(30), 5), s(300));
        assert_eq!(after_failures(s(30), 50), s(300));
        assert_eq!(after_failures(s(1), 10), s(10));
        // Long intervals are never shortened.
        assert_eq!(after_failures(s(3600), 3), s(3600));
    }
}
