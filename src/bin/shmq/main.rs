//! `shmq`: the shmqueue command-line tool.
//!
//! One module per subcommand: `demo` (the main job: a verified stream between
//! two real processes). Each module owns its arguments and its work; this
//! file only dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
mod torture;

/// What every subcommand returns: an error is printed as `shmq: <error>`
/// and turns into exit status 1.
pub type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

#[derive(Parser)]
#[command(
    name = "shmq",
    version,
    about = "Lock-free ring buffers in POSIX shared memory"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Stream values between two real processes through an SPSC ring,
    /// verify them, and report throughput and round-trip latency.
    Demo(demo::DemoArgs),
    /// (internal) the producer process of `demo`.
    #[command(hide = true)]
    DemoProducer(demo::RoleArgs),
    /// (internal) the consumer process of `demo`.
    #[command(hide = true)]
    DemoConsumer(demo::RoleArgs),
    /// SIGKILL producer and consumer processes at random points, hundreds
    /// of times, restarting them, and check that nothing was duplicated,
    /// reordered or lost outside the documented window, and nothing hung.
    Torture(torture::TortureArgs),
    /// (internal) a producer process of `torture`.
    #[command(hide = true)]
    TortureProducer(torture::RoleArgs),
    /// (internal) a consumer process of `torture`.
    #[command(hide = true)]
    TortureConsumer(torture::RoleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Demo(a) => demo::demo(a),
        Cmd::DemoProducer(a) => demo::producer(a),
        Cmd::DemoConsumer(a) => demo::consumer(a),
        Cmd::Torture(a) => torture::torture(a),
        Cmd::TortureProducer(a) => torture::producer(a),
        Cmd::TortureConsumer(a) => torture::consumer(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmq: {e}");
            ExitCode::FAILURE
        }
    }
}
