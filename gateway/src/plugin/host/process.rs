//! `txgate:plugin/process`: the gateway process's boot id, which lets a plugin tell a record left
//! by a crashed process from one of a request still running.

use crate::plugin::bindings::txgate::plugin::process::Host;
use crate::plugin::state::HostState;

impl Host for HostState {
    fn boot_id(&mut self) -> String {
        self.shared.boot_id.to_string()
    }
}
