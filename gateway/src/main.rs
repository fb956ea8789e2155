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
    if let Command::Reconcile {
        config,
        since,
        until,
        format,
    } = &cli.command
    {
        return reconcile(config, since.as_deref(), until.as_deref(), *format);
    }
    let result = match cli.command {
        Command::Check { config } => txgate::check(&config).map(|summary| println!("{summary}")),
        Command::Migrate { config } => {
            txgate::migrate(&config).map(|summary| println!("{summary}"))
        }
        Command::Serve { config } => txgate::config::load(&config).and_then(txgate::serve),
        Command::Reconcile { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// `txgate reconcile`: its own exit codes (SPEC §10), so that "the books disagree" (1) is never
/// confused with "the check could not run" (2).
fn reconcile(
    config: &std::path::Path,
    since: Option<&str>,
    until: Option<&str>,
    format: txgate::reconcile::Format,
) -> ExitCode {
    use txgate::reconcile::Verdict;
    match txgate::reconcile::reconcile(config, since, until, format) {
        Ok(Verdict::Agree) => ExitCode::SUCCESS,
        Ok(Verdict::Disagree) => ExitCode::from(1),
        Ok(Verdict::Incomplete) => ExitCode::from(2),
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(2)
        }
    }
}
