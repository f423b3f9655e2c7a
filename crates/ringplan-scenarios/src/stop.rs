//! Waiting for the signal that ends `plan app`.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::ScenarioError;

/// The signal that asked a held scenario to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM
    Terminate,
    /// SIGINT
    Interrupt,
}

/// A watch on SIGTERM and SIGINT. While it lives, those signals no longer
/// kill the process; they are queued for [`StopSignals::wait`] instead, so the
/// caller can tear down cleanly (close rings, remove temp files).
pub struct StopSignals {
    signals: Signals,
}

impl StopSignals {
    /// Starts watching. Call it before announcing anything a controller may
    /// answer with a signal.
    pub fn watch() -> Result<StopSignals, ScenarioError> {
        let signals = Signals::new([SIGTERM, SIGINT]).map_err(ScenarioError::SignalSetup)?;
        Ok(StopSignals { signals })
    }

    /// Blocks until SIGTERM or SIGINT arrives (or arrived since [`watch`]).
    ///
    /// [`watch`]: StopSignals::watch
    pub fn wait(&mut self) -> StopSignal {
        for signal in self.signals.forever() {
            match signal {
                SIGINT => return StopSignal::Interrupt,
                SIGTERM => return StopSignal::Terminate,
                _ => continue,
            }
        }
        // `forever` ends only when the watch's handle is closed, and no one
        // else has the handle: this is unreachable in practice, and stopping
        // is the safe answer.
        StopSignal::Terminate
    }
}
