//! HZ, which converts a ring's SQ idle from jiffies to milliseconds: told
//! by the coarse clock's resolution, else measured with an SQPOLL ring of
//! the dumper's own.

use ringplan_kernel::abi::SetupFlags;

use super::dumper::BpfDumper;
use super::error::{malformed, BpfError, Pass};
use super::local_fds::fd_number;
use super::reading::Reading;
use super::records::{ChunkStatus, Record, Records};
use super::requests::{Request, Want};

/// The SQ idle, in ms, of the ring the dumper sets up to measure HZ.
const HZ_PROBE_IDLE_MS: u32 = 1000;
/// HZ values taken from the coarse clock's resolution; anything else is
/// measured instead.
const PLAUSIBLE_HZ: std::ops::RangeInclusive<u32> = 24..=10_000;

impl BpfDumper {
    /// HZ as the kernel was built with it, measured with an SQPOLL ring of
    /// the dumper's own (the fallback when the clock's resolution does not
    /// tell). Exposed for tests and diagnostics.
    pub fn measure_hz(&mut self) -> Result<u32, BpfError> {
        if let Some(hz) = self.measured_hz {
            return Ok(hz);
        }
        let mut params = rustix::io_uring::io_uring_params::default();
        params.flags = rustix::io_uring::IoringSetupFlags::SQPOLL;
        params.sq_thread_idle = HZ_PROBE_IDLE_MS;
        // SAFETY: io_uring_setup only fills `params`; the ring is never
        // mapped or submitted to, so the kernel never writes our memory.
        let probe_ring =
            unsafe { rustix::io_uring::io_uring_setup(1, &mut params) }.map_err(|errno| {
                BpfError::MeasureHz {
                    reason: format!("setting up an SQPOLL ring: {errno}"),
                }
            })?;
        // Its header; expected_ctx 0 accepts the (own) ring as it is.
        let request = Request {
            local_fd: probe_ring,
            expected_ctx: 0,
            want: Want::Ring,
        };
        let bytes = self.run_chunk_round(std::slice::from_ref(&request))?;
        let mut idle_jiffies = None;
        for record in Records::new(&bytes) {
            let record = record.map_err(|error| malformed(Pass::Chunks, error))?;
            if let Record::Ring(ring) = record {
                if ring.fd == fd_number(&request.local_fd) && ring.status == ChunkStatus::Ok {
                    idle_jiffies = Some(ring.sq_thread_idle_jiffies);
                }
            }
        }
        // ctx->sq_thread_idle = msecs_to_jiffies(1000) = HZ.
        let hz =
            idle_jiffies
                .filter(|&jiffies| jiffies > 0)
                .ok_or_else(|| BpfError::MeasureHz {
                    reason: "the probe ring's header did not come back".into(),
                })?;
        self.measured_hz = Some(hz);
        Ok(hz)
    }

    /// HZ for converting the SQ idle of this reading's rings: from the
    /// coarse clock's resolution, else measured. `None` when neither works
    /// (the rings' idle is then reported unknown rather than failing the
    /// dump), or when no ring has SQPOLL and nothing needs converting.
    pub(super) fn hz_for(&mut self, reading: &Reading) -> Option<u32> {
        let needs_hz = reading
            .rings
            .values()
            .any(|ring| ring.header.flags & SetupFlags::SQPOLL.bits() != 0);
        match tick_hz() {
            Some(hz) => Some(hz),
            None if needs_hz => self.measure_hz().ok(),
            None => None,
        }
    }
}

/// HZ from the coarse clocks' resolution, which is one tick (TICK_NSEC =
/// 1e9 / HZ, rounded); `None` when that is not a plausible HZ.
fn tick_hz() -> Option<u32> {
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
