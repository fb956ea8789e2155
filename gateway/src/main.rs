//! The `txgate` binary: parse the command line, set up logging, run. Wiring only.

use std::process::ExitCode;

use clap::Parser;
use txgate::cli::{Cli, Command};

// mimalloc: the proxy path allocates per request; measured faster than glibc's malloc there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // mimalloc asks for transparent huge pages; a 2 MiB page stays resident while any object
    // in it lives, which measured 144 MiB of RSS against 84 MiB without, for the same sagas/s
    // (`bench/memory.sh`). Set before the first allocation of size, for the whole process.
    let _ = nix::sys::prctl::set_thp_disable(true);
    let cli = Cli::parse();
    txgate::logging::init(cli.log_format);
    let result = match cli.command {
        Command::Check { config } => txgate::check(&config).map(|summary| println!("{summary}")),
        Command::Migrate { config } => {
            txgate::migrate(&config).map(|summary| println!("{summary}"))
        }
        Command::Serve { config } => txgate::config::load(&config).and_then(txgate::serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
