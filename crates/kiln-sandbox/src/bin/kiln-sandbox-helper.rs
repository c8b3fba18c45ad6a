//! The sandbox helper on its own, for tests (and for running kiln-sandbox
//! from programs that are not kiln): `kiln` itself calls
//! `kiln_sandbox::maybe_run_helper()` first thing in `main`.

use std::process::ExitCode;

fn main() -> ExitCode {
    kiln_sandbox::maybe_run_helper();
    eprintln!(
        "kiln-sandbox-helper: this program is started by kiln-sandbox only \
         (first argument {} or {})",
        kiln_sandbox::HELPER_ARG,
        kiln_sandbox::INIT_ARG
    );
    ExitCode::from(2)
}
