//! `shmq bridge ...`: runs the `shmq-bridge` program with the same
//! arguments (as git runs `git-<cmd>`). The bridge is its own crate and
//! binary because it links zenoh, which neither this tool nor the library
//! should build for users who never bridge.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use clap::Args;

use crate::{ExitWith, Res};

/// Arguments for `shmq-bridge`, passed on as they are.
#[derive(Args)]
pub struct BridgeArgs {
    /// `out RING --key KEY ...` or `in KEY RING ...`; `shmq bridge --help`
    /// shows this, `shmq bridge out --help` the bridge's own help.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

/// Where `shmq-bridge` is: beside this executable (cargo builds both into
/// the same target directory; `cargo install` into the same bin
/// directory), or on PATH.
fn locate() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()?
        .parent()
        .map(|d| d.join("shmq-bridge"));
    if let Some(p) = beside.filter(|p| p.is_file()) {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("shmq-bridge"))
            .find(|p| p.is_file())
    })
}

pub fn bridge(a: BridgeArgs) -> Res {
    let Some(exe) = locate() else {
        return Err(Box::new(ExitWith {
            code: 1,
            msg: "`shmq bridge` runs the shmq-bridge program, which is not built: \
                  `cargo build --release -p shmq-bridge` (next to shmq), or \
                  `cargo install --path shmq-bridge` (it is a separate crate so that \
                  shmq and the library do not pull zenoh)"
                .into(),
        }));
    };
    // Only returns on failure.
    let e = Command::new(&exe).args(&a.args).exec();
    Err(format!("could not run {}: {e}", exe.display()).into())
}
