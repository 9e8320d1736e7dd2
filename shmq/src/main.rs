//! `shmq`: the shmqueue command-line tool.
//!
//! One module per subcommand: `demo` (the main job: a verified stream between
//! two real processes); `admin` (`ls`, `stat`, `rm`: inspect and clean up
//! segments); `sendrecv` (`send`, `recv`: lines or raw bytes through a byte
//! ring, or lines through a broadcast ring, from the shell); `bench` (the IPC comparison matrix); `bridge` (runs the separate
//! `shmq-bridge` program); `torture`
//! (SIGKILL endpoints at random points and audit the result). Each module owns its
//! arguments and its work; this file only dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin;
mod bench;
mod bridge;
mod demo;
mod sendrecv;
mod torture;

/// What every subcommand returns: an error is printed as `shmq: <error>`
/// and turns into exit status 1.
pub type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// An error that asks for its own exit status instead of 1 (e.g. `rm`'s 3,
/// "refused"). Its message, if not empty, is printed as any other.
#[derive(Debug)]
pub struct ExitWith {
    pub code: u8,
    pub msg: String,
}

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for ExitWith {}

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
    /// List the shmqueue segments in /dev/shm (name, kind, element size,
    /// capacity, fill, endpoints alive/attached, stale).
    Ls(admin::LsArgs),
    /// Describe one segment in detail, with every header check.
    Stat(admin::StatArgs),
    /// Remove segments: only shmqueue segments, only unused ones unless
    /// --force; or every stale one with --stale. Exit status 3: refused.
    Rm(admin::RmArgs),
    /// Send stdin through a byte ring: one message per line (or NUL-separated
    /// record, fixed-size record, or all of stdin with --raw); with --kind
    /// broadcast, publish each line to a broadcast ring. Exit status 4:
    /// --timeout expired.
    Send(sendrecv::SendArgs),
    /// Print messages received from a byte ring, one per line (or
    /// NUL-terminated, raw, or JSON), until the sender disconnects; with
    /// --kind broadcast, subscribe to a broadcast ring. Exit status 4:
    /// --timeout expired; 5: a broadcast subscriber missed lines.
    Recv(sendrecv::RecvArgs),
    /// Compare shmqueue with other IPC mechanisms (throughput, round trip,
    /// wake-up latency, idle CPU) and report figures, ratios, JSON and SVG.
    Bench(bench::BenchArgs),
    /// Carry a ring to another host over zenoh: `bridge out RING --key K`,
    /// `bridge in K RING`. Runs the separate shmq-bridge program.
    #[command(disable_help_flag = true)]
    Bridge(bridge::BridgeArgs),
    /// (internal) side B of a cross-process `bench` contender.
    #[command(hide = true)]
    BenchPeer(bench::PeerArgs),
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
    /// (internal) a broadcast subscriber process of `torture`.
    #[command(hide = true)]
    TortureSubscriber(torture::SubscriberArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Demo(a) => demo::demo(a),
        Cmd::DemoProducer(a) => demo::producer(a),
        Cmd::DemoConsumer(a) => demo::consumer(a),
        Cmd::Ls(a) => admin::ls(a),
        Cmd::Stat(a) => admin::stat(a),
        Cmd::Rm(a) => admin::rm(a),
        Cmd::Send(a) => sendrecv::send(a),
        Cmd::Recv(a) => sendrecv::recv(a),
        Cmd::Bench(a) => bench::bench(a),
        Cmd::BenchPeer(a) => bench::peer(a),
        Cmd::Bridge(a) => bridge::bridge(a),
        Cmd::Torture(a) => torture::torture(a),
        Cmd::TortureProducer(a) => torture::producer(a),
        Cmd::TortureConsumer(a) => torture::consumer(a),
        Cmd::TortureSubscriber(a) => torture::subscriber(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.downcast_ref::<ExitWith>().map(|x| x.code);
            if code.is_none() || !e.to_string().is_empty() {
                eprintln!("shmq: {e}");
            }
            code.map_or(ExitCode::FAILURE, ExitCode::from)
        }
    }
}
