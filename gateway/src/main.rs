//! The `txgate` binary: parse the command line, set up logging, run. Wiring only.

use std::process::ExitCode;

use clap::Parser;
use txgate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    txgate::logging::init(cli.log_format);
    let result = match cli.command {
        Command::Check { config } => txgate::check(&config).map(|summary| println!("{summary}")),
        Command::Serve { config } => txgate::config::load(&config).and_then(|config| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| {
                    txgate::Error::new(txgate::ErrorKind::Internal, "tokio").with_cause(e)
                })?;
            runtime.block_on(txgate::serve(config))
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
