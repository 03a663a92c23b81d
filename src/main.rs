//! farm: one binary that replaces Docker on the machines of GPU compute farmers.
//!
//! This file only parses flags, dispatches to `cli::*` and maps errors to exit codes.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = match cli::run_sync(cli::Cli::parse()) {
        Ok(code) => return ExitCode::from(code.clamp(0, 255) as u8),
        Err(args) => args,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("farm: cannot start: {e}");
            return ExitCode::from(cli::EXIT_FARM_ERROR);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("farm: {}", cli::render_error(&e));
            ExitCode::from(cli::EXIT_FARM_ERROR)
        }
    }
}
