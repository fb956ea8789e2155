//! `txgate:plugin/clock`: wall-clock and monotonic time.

use std::sync::OnceLock;
use std::time::Instant;

use crate::plugin::bindings::txgate::plugin::clock::Host;
use crate::plugin::state::HostState;

fn process_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

impl Host for HostState {
    fn now_unix_ms(&mut self) -> u64 {
        crate::store::now_unix_ms()
    }

    fn monotonic_ns(&mut self) -> u64 {
        u64::try_from(process_start().elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}
