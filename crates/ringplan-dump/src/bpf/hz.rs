//! HZ, which converts a ring's SQ idle from jiffies to milliseconds: told
//! by the coarse clock's resolution, else measured with an SQPOLL ring of
//! the dumper's own (`BpfDumper::measure_hz`, in `dumper.rs`, since it runs
//! a pass). This module holds the arithmetic and the clock's answer.

/// The SQ idle, in ms, of the ring the dumper sets up to measure HZ.
pub(super) const HZ_PROBE_IDLE_MS: u32 = 1000;
/// HZ values taken from the coarse clock's resolution; anything else is
/// measured instead.
const PLAUSIBLE_HZ: std::ops::RangeInclusive<u32> = 24..=10_000;

/// HZ from the coarse clocks' resolution, which is one tick (TICK_NSEC =
/// 1e9 / HZ, rounded); `None` when that is not a plausible HZ.
pub(super) fn tick_hz() -> Option<u32> {
    let resolution = rustix::time::clock_getres(rustix::time::ClockId::MonotonicCoarse);
    let nanos = i128::from(resolution.tv_sec) * 1_000_000_000 + i128::from(resolution.tv_nsec);
    hz_from_tick_nanos(nanos)
}

fn hz_from_tick_nanos(nanos: i128) -> Option<u32> {
    if nanos <= 0 {
        return None;
    }
    let hz = (1_000_000_000 + nanos / 2) / nanos;
    u32::try_from(hz)
        .ok()
        .filter(|hz| PLAUSIBLE_HZ.contains(hz))
}

/// `jiffies * 1000 / HZ`, saturating: the kernel got jiffies from a u32 of
/// milliseconds (rounded up), so this fits except at the very top. `hz` is
/// never 0 here.
pub(super) fn jiffies_to_ms(jiffies: u32, hz: u32) -> u32 {
    let ms = u64::from(jiffies) * 1000 / u64::from(hz.max(1));
    u32::try_from(ms).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jiffies_convert_to_ms() {
        assert_eq!(jiffies_to_ms(375, 250), 1500);
        assert_eq!(jiffies_to_ms(250, 250), 1000);
        assert_eq!(jiffies_to_ms(1, 250), 4);
        assert_eq!(jiffies_to_ms(u32::MAX, 100), u32::MAX);
    }

    #[test]
    fn hz_comes_from_the_tick() {
        assert_eq!(hz_from_tick_nanos(4_000_000), Some(250));
        assert_eq!(hz_from_tick_nanos(1_000_000), Some(1000));
        assert_eq!(hz_from_tick_nanos(3_333_334), Some(300));
        assert_eq!(hz_from_tick_nanos(10_000_000), Some(100));
        // A high-resolution clock is no tick.
        assert_eq!(hz_from_tick_nanos(1), None);
        assert_eq!(hz_from_tick_nanos(0), None);
        assert_eq!(hz_from_tick_nanos(1_000_000_000), None);
    }
}
