//! `shmq-bridge` (also run as `shmq bridge`): carry a local ring to another
//! host over zenoh. See the library docs (`shmq_bridge`) for the guarantee
//! and docs/BRIDGE.md for deployment.
//!
//! Exit status: 0 the stream ended and was delivered; 1 an error; 2 a usage
//! error; 3 the stream was refused (the rings do not match). The final
//! report is one JSON object on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use shmq_bridge::{BridgeError, Create, From, In, Out};
use shmqueue::QueueKind;
use zenoh::Wait;

#[derive(Parser)]
#[command(
    name = "shmq-bridge",
    version,
    about = "Carry a shmqueue ring to another host over zenoh"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Read a local ring and publish its items on a zenoh key, until its
    /// producer has gone and everything is delivered.
    Out(OutArgs),
    /// Subscribe to a zenoh key and push the items into a local ring, until
    /// the stream ends.
    In(InArgs),
}

/// Where the zenoh session listens and connects.
#[derive(Args)]
struct Net {
    /// Listen on this zenoh endpoint (repeatable), e.g. tcp/0.0.0.0:7447.
    /// Default: an ephemeral port on 127.0.0.1 only.
    #[arg(long, value_name = "ENDPOINT")]
    listen: Vec<String>,
    /// Connect to this zenoh endpoint (repeatable), e.g. tcp/10.0.0.2:7447.
    #[arg(long, value_name = "ENDPOINT")]
    connect: Vec<String>,
    /// A zenoh configuration file (JSON5) to start from instead of the
    /// bridge's (peer mode, no multicast or gossip scouting).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct OutArgs {
    /// The local ring to read ("/orders"; the leading '/' may be left out).
    ring: String,
    /// The zenoh key expression to publish on.
    #[arg(long)]
    key: String,
    /// Best effort: never wait for the network or the receiver, and let the
    /// receiver count what is lost.
    #[arg(long)]
    lossy: bool,
    /// Bytes of items per frame, at most.
    #[arg(long, default_value_t = 63 << 10, value_name = "BYTES")]
    batch: usize,
    /// Lossless: bytes sent and not yet acknowledged, at most.
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    window: usize,
    /// A broadcast source: start at its oldest item, or at the next one.
    #[arg(long, value_enum, default_value = "oldest")]
    from: FromArg,
    #[command(flatten)]
    net: Net,
}

#[derive(Clone, Copy, ValueEnum)]
enum FromArg {
    Oldest,
    Latest,
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    Spsc,
    Mpmc,
    Bytes,
    Broadcast,
}

#[derive(Args)]
struct InArgs {
    /// The zenoh key expression to subscribe to.
    key: String,
    /// The local ring to push into ("/orders"; the '/' may be left out).
    ring: String,
    /// Create the ring if it does not exist: by default of the source's
    /// kind and capacity, with its element size and schema.
    #[arg(long)]
    create: bool,
    /// With --create: the kind of ring to make (typed streams go into any
    /// typed kind; byte streams into byte rings).
    #[arg(long, value_enum, requires = "create")]
    kind: Option<KindArg>,
    /// With --create: the capacity (items; bytes for a byte ring).
    #[arg(long, requires = "create")]
    capacity: Option<u64>,
    /// With --create --kind broadcast: an overwrite ring.
    #[arg(long, requires = "create")]
    overwrite: bool,
    /// The state file that records what reached the ring. A restarted
    /// bridge given the same file asks for exactly what is missing.
    /// Default: shmq-bridge-<ring>.state in the temporary directory.
    #[arg(long, value_name = "PATH")]
    state: Option<PathBuf>,
    #[command(flatten)]
    net: Net,
}

fn ring_name(s: &str) -> String {
    if s.starts_with('/') {
        s.to_string()
    } else {
        format!("/{s}")
    }
}

fn session(net: &Net) -> Result<zenoh::Session, BridgeError> {
    shmq_bridge::open_session(&net.listen, &net.connect, net.config.as_deref())
}

fn run(cli: Cli) -> Result<String, BridgeError> {
    match cli.cmd {
        Cmd::Out(a) => {
            let mut o = Out::new(&ring_name(&a.ring), &a.key);
            o.lossy = a.lossy;
            o.batch_bytes = a.batch.max(1);
            o.window_bytes = a.window.max(1);
            o.from = match a.from {
                FromArg::Oldest => From::Oldest,
                FromArg::Latest => From::Latest,
            };
            let s = session(&a.net)?;
            let r = o.run(&s);
            let _ = s.close().wait();
            let r = r?;
            Ok(serde_json::json!({
                "side": "out",
                "stream": r.stream,
                "items": r.items,
                "frames": r.frames,
                "resent": r.resent,
                "missed_locally": r.missed_locally,
            })
            .to_string())
        }
        Cmd::In(a) => {
            let ring = ring_name(&a.ring);
            let state = a.state.unwrap_or_else(|| {
                std::env::temp_dir().join(format!(
                    "shmq-bridge-{}.state",
                    ring.trim_start_matches('/')
                ))
            });
            let mut i = In::new(&a.key, &ring, state);
            if a.create {
                i.create = Some(Create {
                    kind: a.kind.map(|k| match k {
                        KindArg::Spsc => QueueKind::Spsc,
                        KindArg::Mpmc => QueueKind::Mpmc,
                        KindArg::Bytes => QueueKind::Bytes,
                        KindArg::Broadcast => QueueKind::Broadcast,
                    }),
                    capacity: a.capacity,
                    overwrite: a.overwrite,
                });
            }
            let s = session(&a.net)?;
            let r = i.run(&s);
            // Closing flushes the last acknowledgement to the sender.
            let _ = s.close().wait();
            let r = r?;
            Ok(serde_json::json!({
                "side": "in",
                "stream": r.stream,
                "items": r.items,
                "duplicates": r.duplicates,
                "lost": r.lost,
                "possible_duplicates": r.possible_duplicates,
                "resumed_from": r.resumed_from,
                "foreign": r.foreign,
            })
            .to_string())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shmq-bridge: {e}");
            match e {
                BridgeError::Mismatch { .. } | BridgeError::Refused(_) => ExitCode::from(3),
                BridgeError::Usage(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
