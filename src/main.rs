//! farm: one binary that replaces Docker on the machines of GPU compute farmers.
//!
//! This file only parses flags, dispatches to `cli::*` and maps errors to exit codes.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The detached monitor's lean supervisor: no flag parsing, no async runtime, so that
    // it touches as little of the binary as possible (it holds a container for hours).
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(farm_runtime::monitor::SUPERVISE_ARG) {
        let code = farm_runtime::monitor::supervise_main(&argv[2..]);
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    if argv.get(1).map(String::as_str) == Some(farm_runtime::network::dns::DNS_ARG) {
        let code = farm_runtime::network::dns::main(&argv[2..]);
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
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
    match runtime.block_on(cli::run(*args)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("farm: {}", cli::render_error(&e));
            ExitCode::from(cli::EXIT_FARM_ERROR)
        }
    }
}
