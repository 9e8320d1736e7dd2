//! `shmq send NAME` / `shmq recv NAME`: lines of text or records through a
//! ring, from the shell. Two kinds (`--kind`, the same on both sides), each
//! in its own file, whose module doc has the details:
//!
//! * `bytes` (the default, `bytes.rs`): a byte ring (`shmqueue::ByteRing`),
//!   one sender and one receiver, messages of any size.
//! * `broadcast` (`broadcast.rs`): a broadcast ring (`shmqueue::Broadcast`),
//!   one publisher and any number of subscribers, each of which receives
//!   every line, in fixed-size items (`--item-size`).
//!
//! What both share lives here: the arguments, ring ownership (a ring a
//! command created with `--create` is removed when it is done unless
//! `--keep`), waiting for a peer like a FIFO, the output framing (lines,
//! `-0`, `--json`), and the exit statuses: 0 success; 1 error; 2 usage
//! (including an option of the other kind, such as `--raw` with
//! `--kind broadcast`); 4 a `--timeout` expired; 5 (broadcast `recv`
//! only) the subscriber was lapped or evicted and missed lines, but
//! otherwise finished.

mod broadcast;
mod bytes;

use std::io::{self, Write};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use shmqueue::inspect::EndpointStatus;
use shmqueue::Role;

use crate::{ExitWith, Res};

/// Exit status when a `--timeout` expired.
pub const EXIT_TIMEOUT: u8 = 4;
/// Exit status of a usage error (as the argument parser's).
pub const EXIT_USAGE: u8 = 2;

/// Which kind of ring `send`/`recv` use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// A byte ring: one sender, one receiver, messages of any size.
    Bytes,
    /// A broadcast ring: one publisher, many subscribers, each getting
    /// every line; lines up to --item-size minus 4 bytes.
    Broadcast,
}

/// Options shared by `send` and `recv`: which ring, and whether to make it.
#[derive(Args, Clone)]
pub struct RingArgs {
    /// The ring's name ("/pipe"; the leading '/' may be left out).
    name: String,
    /// Create the ring if it does not exist (otherwise open it). A ring
    /// created here is removed on exit unless --keep.
    #[arg(long)]
    create: bool,
    /// The kind of ring: a byte ring, or a broadcast ring (one publisher,
    /// many subscribers).
    #[arg(long, value_enum, default_value = "bytes")]
    kind: Kind,
    /// With --create: a byte ring's data area in bytes (a multiple of 8, at
    /// least 64; suffixes k, M, G; default 1M; messages larger than the
    /// ring are sent in fragments), or a broadcast ring's items (default
    /// 1024).
    #[arg(long, value_name = "N", requires = "create", value_parser = parse_bytes)]
    capacity: Option<usize>,
    /// Broadcast: bytes per item, the 4-byte length prefix included, so a
    /// line holds up to this minus 4: 64, 128, 256, 512, 1024, 2048 or
    /// 4096 (default 256). Must match the ring's when opening one.
    #[arg(long, value_name = "BYTES", value_parser = broadcast::parse_item_size)]
    item_size: Option<usize>,
    /// Broadcast, with --create: the publisher never waits and overwrites
    /// what slow subscribers have not read (they are told how many they
    /// missed). Default: lossless (it waits for the slowest subscriber).
    #[arg(long, requires = "create", conflicts_with = "max_lag")]
    overwrite: bool,
    /// Broadcast, with --create, lossless: a subscriber that keeps the ring
    /// full for longer than this is evicted (it skips ahead and is told
    /// how many it missed). Default: never.
    #[arg(long, value_name = "DUR", requires = "create", value_parser = parse_duration)]
    max_lag: Option<Duration>,
    /// Broadcast, with --create: most subscribers attached at once
    /// (default 64, at most 1024).
    #[arg(long, value_name = "N", requires = "create")]
    max_subscribers: Option<u32>,
    /// With --create: permission bits of a new ring, in octal (default 600).
    #[arg(long, value_name = "OCTAL", requires = "create", value_parser = parse_mode)]
    mode: Option<u32>,
    /// With --create: leave a ring created here in place on exit.
    #[arg(long, requires = "create")]
    keep: bool,
    /// Give up (exit status 4) when one wait lasts longer than this
    /// ("500ms", "2s", "1m", or seconds).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    timeout: Option<Duration>,
}

#[derive(Args, Clone)]
pub struct SendArgs {
    #[command(flatten)]
    ring: RingArgs,
    /// NUL-separated records instead of lines.
    #[arg(short = '0', long, conflicts_with_all = ["raw", "record_size"])]
    null: bool,
    /// Send the whole of stdin as one message, of any size.
    #[arg(long, conflicts_with = "record_size")]
    raw: bool,
    /// Send fixed-size binary records of this many bytes.
    #[arg(long, value_name = "N", value_parser = parse_record_size)]
    record_size: Option<usize>,
}

#[derive(Args, Clone)]
pub struct RecvArgs {
    #[command(flatten)]
    ring: RingArgs,
    /// End each message with NUL instead of a newline.
    #[arg(short = '0', long, conflicts_with_all = ["raw", "json"])]
    null: bool,
    /// Write messages' bytes as they are, nothing in between; any size.
    #[arg(long, conflicts_with = "json")]
    raw: bool,
    /// One JSON object per line: {"len", "text"} or {"len", "base64"}.
    #[arg(long)]
    json: bool,
    /// Stop after this many messages.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Broadcast: where to start: "latest" (only what is published from
    /// now on; the default), "oldest" (what is still in the ring, then on)
    /// or a position (lines count from 0).
    #[arg(long, value_name = "WHERE", value_parser = parse_start)]
    start: Option<shmqueue::broadcast::Start>,
}

// --------------------------------------------------------------------------
// Argument parsing
// --------------------------------------------------------------------------

fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1usize << 10),
        Some((i, 'm' | 'M')) => (&t[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size in bytes (e.g. 65536, 64k, 1M)"))
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let t = s.strip_prefix("0o").unwrap_or(s);
    u32::from_str_radix(t, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal mode (e.g. 600, 0660)"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .and_then(|n| Duration::try_from_secs_f64(n * unit).ok())
        .ok_or_else(|| format!("{s:?} is not a duration (e.g. 500ms, 2s, 1m, 1.5)"))
}

fn parse_record_size(s: &str) -> Result<usize, String> {
    match parse_bytes(s)? {
        0 => Err("a record has at least 1 byte".into()),
        n => Ok(n),
    }
}

fn parse_start(s: &str) -> Result<shmqueue::broadcast::Start, String> {
    use shmqueue::broadcast::Start;
    match s.trim() {
        "latest" => Ok(Start::Latest),
        "oldest" => Ok(Start::Oldest),
        t => t
            .parse::<u64>()
            .map(Start::At)
            .map_err(|_| format!("{s:?} is not latest, oldest or a position (e.g. 0, 1000)")),
    }
}

fn usage(msg: String) -> Box<dyn std::error::Error> {
    Box::new(ExitWith {
        code: EXIT_USAGE,
        msg,
    })
}

/// Options of one kind given with `--kind` of the other: a usage error
/// (clap cannot say "only with this value"). `(flag, given)` pairs.
fn check_kind(
    ring: &RingArgs,
    bytes_only: &[(&str, bool)],
    broadcast_only: &[(&str, bool)],
) -> Res {
    let shared_broadcast_only = [
        ("--item-size", ring.item_size.is_some()),
        ("--overwrite", ring.overwrite),
        ("--max-lag", ring.max_lag.is_some()),
        ("--max-subscribers", ring.max_subscribers.is_some()),
    ];
    let bad = match ring.kind {
        Kind::Bytes => shared_broadcast_only
            .iter()
            .chain(broadcast_only)
            .find(|o| o.1)
            .map(|o| (o.0, "--kind broadcast")),
        Kind::Broadcast => bytes_only
            .iter()
            .find(|o| o.1)
            .map(|o| (o.0, "--kind bytes")),
    };
    match bad {
        Some((flag, kind)) => Err(usage(format!("{flag} is only for {kind}"))),
        None => Ok(()),
    }
}

/// `pipe` → `/pipe`; names already starting with '/' are kept.
fn shm_name(arg: &str) -> String {
    if arg.starts_with('/') {
        arg.to_owned()
    } else {
        format!("/{arg}")
    }
}

// --------------------------------------------------------------------------
// Shared by both kinds
// --------------------------------------------------------------------------

/// Removes the ring's name on drop when this command created it and was
/// not asked to keep it. Declared before the endpoints, so they detach
/// first.
struct Owned {
    name: String,
    remove: bool,
}

impl Drop for Owned {
    fn drop(&mut self) {
        if self.remove {
            let _ = shmqueue::unlink(&self.name);
        }
    }
}

fn timed_out(msg: String) -> Box<dyn std::error::Error> {
    Box::new(ExitWith {
        code: EXIT_TIMEOUT,
        msg,
    })
}

fn fmt_dur(d: Duration) -> String {
    format!("{:?}", d)
}

fn stdin_error(e: io::Error) -> Box<dyn std::error::Error> {
    format!("reading stdin: {e}").into()
}

/// The state of the other end of `name`, as its registry entry says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    /// Never attached.
    Vacant,
    /// Attached, and its process holds its liveness token.
    Live,
    /// Detached, or attached by a process that died.
    Gone,
}

fn peer(name: &str, role: Role) -> Peer {
    let Ok(s) = shmqueue::inspect(name) else {
        // Removed, or unreadable: nothing to wait for there.
        return Peer::Gone;
    };
    match s.endpoints.iter().find(|e| e.role == role) {
        Some(e) if e.status == EndpointStatus::Vacant => Peer::Vacant,
        Some(e) if e.status == EndpointStatus::Attached && e.alive => Peer::Live,
        _ => Peer::Gone,
    }
}

/// Like opening a FIFO: if the other end of the ring was attached before
/// and has gone, the library would report it disconnected at once (a
/// producer cannot send, a consumer of an empty ring is done). Wait for a
/// new peer instead, or until `ready()` says there is nothing to wait for.
/// Polls (there is no event for an attach), backing off to 10 ms.
fn wait_for_peer(
    name: &str,
    role: Role,
    timeout: Option<Duration>,
    mut ready: impl FnMut() -> bool,
) -> Res {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut nap = Duration::from_micros(100);
    while peer(name, role) == Peer::Gone && !ready() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let who = match role {
                Role::Producer => "sender",
                Role::Consumer => "receiver",
            };
            return Err(timed_out(format!(
                "timed out after {} waiting for a {who} to attach to {name:?}",
                fmt_dur(timeout.unwrap_or_default())
            )));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    }
    Ok(())
}

fn stdout_error(e: io::Error) -> Box<dyn std::error::Error> {
    format!("writing stdout: {e}").into()
}

/// One line of `recv --json`: `text` for UTF-8, otherwise `base64`.
#[derive(serde::Serialize)]
struct JsonMessage<'a> {
    len: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
}

fn write_message(out: &mut impl Write, msg: &[u8], a: &RecvArgs) -> io::Result<()> {
    if a.json {
        let text = std::str::from_utf8(msg).ok();
        let v = JsonMessage {
            len: msg.len(),
            text,
            base64: text.is_none().then(|| base64(msg)),
        };
        serde_json::to_writer(&mut *out, &v)?;
        return out.write_all(b"\n");
    }
    out.write_all(msg)?;
    out.write_all(if a.null { b"\0" } else { b"\n" })
}

/// Standard base64 with padding (RFC 4648), for `recv --json`.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

pub fn send(a: SendArgs) -> Res {
    let bytes_only = [("--raw", a.raw), ("--record-size", a.record_size.is_some())];
    check_kind(&a.ring, &bytes_only, &[])?;
    match a.ring.kind {
        Kind::Bytes => bytes::send(a),
        Kind::Broadcast => broadcast::send(a),
    }
}

pub fn recv(a: RecvArgs) -> Res {
    check_kind(
        &a.ring,
        &[("--raw", a.raw)],
        &[("--start", a.start.is_some())],
    )?;
    match a.ring.kind {
        Kind::Bytes => bytes::recv(a),
        Kind::Broadcast => broadcast::recv(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn parsers() {
        assert_eq!(parse_bytes("64k"), Ok(65536));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("x").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert!(parse_mode("9").is_err());
    }
}
