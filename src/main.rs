//! The `driftwatch` binary: parse the arguments, run the command, map the outcome to an exit
//! code (0 success, 1 runtime failure, 2 bad config or usage; `gate` has its own codes).

use std::process::ExitCode;

use clap::Parser;

/// The daemon allocates a few small strings per event; mimalloc keeps that cheap.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = driftwatch::cli::Cli::parse();
    match driftwatch::cli::execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(message) = failure.message() {
                eprintln!("error: {message}");
            }
            ExitCode::from(failure.exit_code())
        }
    }
}
