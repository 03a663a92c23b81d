//! `farm exec`: docker's flags into [`ExecOptions`]; the exit code as docker's (the
//! process's own, 126 cannot execute, 127 not found, 125 farm's own error).

use std::path::Path;

use clap::Args;
use farm_runtime::exec::{self, ExecOptions};
use farm_runtime::lifecycle;
use farm_runtime::state::StateStore;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep STDIN open: the process reads farm's stdin
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Detached: start the process and return
    #[arg(short, long)]
    detach: bool,
    /// Username or UID (format: NAME|UID[:GROUP|GID]), looked up in the container
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory inside the container (absolute)
    #[arg(short, long)]
    workdir: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to pass farm's own)
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// The running container: name, ID or ID prefix
    container: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

/// Runs without the async runtime: the process joins the container's user namespace,
/// which a multi-threaded process cannot.
pub fn run(root: &Path, args: ExecArgs) -> i32 {
    match exec_in(root, args) {
        Ok(code) => code,
        Err((code, message)) => {
            eprintln!("farm: {message}");
            code
        }
    }
}

fn exec_in(root: &Path, args: ExecArgs) -> Result<i32, (i32, String)> {
    let farm_error = |e: &dyn std::fmt::Display| (125, e.to_string());
    lifecycle::reconcile(root).map_err(|e| farm_error(&format!("checking containers: {e}")))?;
    let record = StateStore::open(root)
        .and_then(|state| state.get(&args.container))
        .map_err(|e| farm_error(&e))?;
    let options = ExecOptions {
        args: args.command,
        user: args.user,
        workdir: args.workdir,
        env: args.env,
        interactive: args.interactive,
        tty: args.tty,
        detach: args.detach,
    };
    exec::exec(root, &record, &options).map_err(|e| (e.exit_code(), e.to_string()))
}
