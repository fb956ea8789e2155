//! A network that goes silent: every packet to or from one loopback port dropped by the kernel
//! (iptables, as root), as a database failover to another host or a cut cable looks to the
//! gateways. Connections neither fail nor answer; TCP retransmits into the void. Dropping the
//! guard lets packets through again.

use std::process::Command;

/// Packets to and from `port` on loopback are dropped while this lives.
pub struct Blackhole {
    port: u16,
}

fn rules(action: &str, port: u16) -> bool {
    let port = port.to_string();
    ["--dport", "--sport"].iter().all(|direction| {
        Command::new("iptables")
            .args([
                "-w", action, "INPUT", "-i", "lo", "-p", "tcp", direction, &port, "-j", "DROP",
            ])
            .status()
            .is_ok_and(|s| s.success())
    })
}

impl Blackhole {
    /// Starts dropping every packet of `port` (needs root and iptables, which `tests/run`
    /// installs).
    pub fn start(port: u16) -> Self {
        assert!(
            rules("-I", port),
            "iptables could not drop packets (run as root, with iptables installed: tests/run does both)"
        );
        Self { port }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        rules("-D", self.port);
    }
}
