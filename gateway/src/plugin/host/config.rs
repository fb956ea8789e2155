//! `txgate:plugin/config`: the plugin's `[plugins.NAME.config]` table, as JSON.

use crate::plugin::bindings::txgate::plugin::config::Host;
use crate::plugin::state::HostState;

impl Host for HostState {
    fn get(&mut self) -> String {
        self.shared.config_json.clone()
    }
}
