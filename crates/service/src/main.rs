//! `vigil`: the Vigil service and its tools (see `vigil --help`). User mode; the command line
//! lives in the library (`vigil_service::cli`) so that tests and embedding programs run it too.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(vigil_service::cli::main(
        std::env::args_os(),
        vigil_service::cli::Context::for_platform(),
    ))
}
