//! Unit tests of the MySQL store's start-up pacing.

use super::startup::StartupWait;
use std::time::Duration;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn without_a_limit_the_wait_never_ends_and_backs_off_to_five_seconds() {
    let mut w = StartupWait::new(Duration::ZERO);
    let delays: Vec<Duration> = (0..8)
        .map(|i| w.next(secs(f64::from(i) * 3.0)).unwrap().delay)
        .collect();
    assert_eq!(
        delays,
        [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0].map(secs).to_vec()
    );
    assert!(w.next(Duration::from_secs(24 * 3600)).is_some());
    assert_eq!(w.attempts, 9);
}

#[test]
fn a_limit_ends_the_wait_and_the_last_pause_stops_at_it() {
    let mut w = StartupWait::new(secs(3.0));
    assert_eq!(w.next(secs(0.1)).unwrap().delay, secs(0.5));
    assert_eq!(w.next(secs(2.5)).unwrap().delay, secs(0.5));
    assert_eq!(w.next(secs(3.0)), None);
}

#[test]
fn warnings_come_at_most_every_ten_seconds() {
    let mut w = StartupWait::new(Duration::ZERO);
    let warned: Vec<bool> = [0.0, 2.0, 9.0, 10.0, 12.0, 21.0]
        .into_iter()
        .map(|t| w.next(secs(t)).unwrap().warn)
        .collect();
    assert_eq!(warned, [true, false, false, true, false, true]);
}
