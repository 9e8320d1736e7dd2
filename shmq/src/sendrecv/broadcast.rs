//! `shmq send --kind broadcast NAME` / `shmq recv --kind broadcast NAME`:
//! publish lines to a broadcast ring (`shmqueue::Broadcast`) and subscribe
//! to it from the shell. One publisher at a time; any number of `recv`s
//! (up to `--max-subscribers`, 64 by default), each of which receives every
//! line published after it starts, in order.
//!
//! Items: a broadcast ring holds fixed-size `Pod` items, so a line travels
//! in one item of `--item-size` bytes (64, 128, 256, 512, 1024, 2048 or
//! 4096; default 256): a `u32` length (little-endian), then the line's
//! bytes, then zeros. A line holds at most `--item-size - 4` bytes; a
//! longer one is an error (exit 1, saying which `--item-size` to create the
//! ring with), never truncated; the lines before it have been published.
//! The rings these commands create carry a schema tag of their own
//! ([`SCHEMA`]) and record the item size, so opening one with another
//! `--item-size`, or a broadcast ring some program made for its own items,
//! is refused by the library (`Incompatible`) and said plainly.
//!
//! Framing: one line of stdin per item, the `\n` stripped, or with `-0`
//! NUL-separated records; `recv` prints each followed by `\n` (`-0`: NUL),
//! or with `--json` as `{"len", "text"|"base64"}`. `--raw` and
//! `--record-size` are byte-ring options (a usage error here).
//!
//! Rings: as for byte rings, without `--create` the ring must exist (and be
//! a broadcast ring of the same item size), and `--create` creates it if
//! missing and otherwise opens it. Creation options: `--capacity N` items
//! (default 1024), `--overwrite` (default lossless), `--max-lag DUR`
//! (lossless only), `--max-subscribers N`, `--mode OCTAL`. A ring this
//! command created is removed when it exits, unless `--keep`: `send` first
//! waits until a subscriber has attached and every live attached subscriber
//! has read everything (so `send` exiting 0 means they all got every line).
//! A publisher with no subscribers never waits: its lines stay in the ring
//! (the newest `capacity - 1` of them) for a `recv --start oldest`.
//!
//! `recv --start latest` (the default) receives what is published after it
//! attached; `--start oldest` first what is still in the ring; `--start N`
//! from position N (lines count from 0, one per line published), if it is
//! still in the ring (otherwise exit 1, saying which positions are).
//!
//! Waiting: a lossless `send` blocks while the slowest live subscriber is a
//! whole ring behind (a killed subscriber stops holding it within ~150 ms;
//! a stopped one holds it until `--max-lag` evicts it); an overwrite `send`
//! never waits. `recv` blocks for the next line. `--timeout DUR` bounds
//! each wait (one line; `send`'s final wait for subscribers); exit 4 when
//! it expires. Like a FIFO, a `recv` on a ring whose publisher has come and
//! gone waits for the next publisher unless there is something left for it
//! to read.
//!
//! Missed lines: a subscriber lapped by an overwrite publisher, or evicted
//! by a lossless one for exceeding `--max-lag`, prints a warning with the
//! exact number of lines it missed on stderr and goes on from the oldest
//! line still in the ring. If anything was missed, `recv` exits 5 when it
//! is otherwise done (`--count` lines counts only lines received).
//!
//! Exit status: 0 success (`send`: stdin was at EOF and every line was
//! published, and delivered if it created the ring; `recv`: the publisher
//! has gone and everything was read, or `--count` lines were received); 1
//! error (missing ring, not a broadcast ring, another item size or schema,
//! a line longer than an item, publisher role taken, all subscriber slots
//! taken, a `--start` position not in the ring, I/O); 2 usage; 4 a
//! `--timeout` expired; 5 `recv` missed lines (lapped or evicted).

use std::io::{self, BufRead, BufWriter, Write};
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use shmqueue::broadcast::{Broadcast, Builder, RecvError, Start};
use shmqueue::inspect::EndpointStatus;
use shmqueue::{Error, PushError, QueueKind, Role};

use super::{
    fmt_dur, shm_name, stdin_error, stdout_error, timed_out, wait_for_peer, write_message, Owned,
    RecvArgs, RingArgs, SendArgs,
};
use crate::{ExitWith, Res};

/// The item sizes `--item-size` accepts (bytes, the length prefix
/// included).
pub const ITEM_SIZES: [usize; 7] = [64, 128, 256, 512, 1024, 2048, 4096];
/// `--item-size` when not given.
pub const DEFAULT_ITEM_SIZE: usize = 256;
/// Items of a ring `--create` makes without `--capacity`.
const DEFAULT_CAPACITY: usize = 1024;
/// Bytes of the length prefix of every item.
const PREFIX: usize = 4;
/// Schema tag of the rings `shmq send/recv --kind broadcast` create: their
/// items are length-prefixed lines ("shmqlin1").
pub const SCHEMA: u64 = u64::from_le_bytes(*b"shmqlin1");
/// Exit status of a `recv` that missed lines.
pub const EXIT_MISSED: u8 = 5;

pub fn parse_item_size(s: &str) -> Result<usize, String> {
    let n = super::parse_bytes(s)?;
    if ITEM_SIZES.contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "{s:?} is not an item size shmq supports: one of {}",
            sizes()
        ))
    }
}

fn sizes() -> String {
    ITEM_SIZES.map(|n| n.to_string()).join(", ")
}

/// Run `$f::<W>(args)` with `W` the item size in `u64` words: the ring's
/// item type is `[u64; W]` (word-aligned, so the library copies it with
/// whole-word atomic accesses), fixed at compile time.
macro_rules! by_item_size {
    ($size:expr, $f:ident($($arg:expr),*)) => {
        match $size {
            64 => $f::<8>($($arg),*),
            128 => $f::<16>($($arg),*),
            256 => $f::<32>($($arg),*),
            512 => $f::<64>($($arg),*),
            1024 => $f::<128>($($arg),*),
            2048 => $f::<256>($($arg),*),
            4096 => $f::<512>($($arg),*),
            n => unreachable!("item size {n} passed parse_item_size"),
        }
    };
}

fn item_size(a: &RingArgs) -> usize {
    a.item_size.unwrap_or(DEFAULT_ITEM_SIZE)
}

/// The longest line an item of `size` bytes holds.
fn max_line(size: usize) -> usize {
    size - PREFIX
}

/// `line` as an item, or `None` if it does not fit.
fn encode<const W: usize>(line: &[u8]) -> Option<[u64; W]>
where
    [u64; W]: Pod,
{
    let mut item = <[u64; W]>::zeroed();
    let b = bytemuck::bytes_of_mut(&mut item);
    if line.len() > max_line(b.len()) {
        return None;
    }
    let len = u32::try_from(line.len()).ok()?;
    b[..PREFIX].copy_from_slice(&len.to_le_bytes());
    b[PREFIX..PREFIX + line.len()].copy_from_slice(line);
    Some(item)
}

/// The line in `item`, or the length it claims if that does not fit (it
/// came from shared memory: untrusted).
fn decode<const W: usize>(item: &[u64; W]) -> Result<&[u8], u32>
where
    [u64; W]: Pod,
{
    let b = bytemuck::bytes_of(item);
    let len = u32::from_le_bytes(b[..PREFIX].try_into().expect("4 bytes"));
    match usize::try_from(len) {
        Ok(n) if n <= max_line(b.len()) => Ok(&b[PREFIX..PREFIX + n]),
        _ => Err(len),
    }
}

// --------------------------------------------------------------------------
// Opening the ring
// --------------------------------------------------------------------------

/// What `shmq send/recv --kind broadcast` say instead of a bare library
/// error.
fn explain(e: Error, name: &str, size: usize) -> Box<dyn std::error::Error> {
    match e {
        Error::NotFound { .. } => format!(
            "no broadcast ring named {name:?}: start one side with --create first \
             (e.g. `shmq recv --kind broadcast --create {name}`), or pass --create here"
        )
        .into(),
        Error::Incompatible {
            field: "queue kind",
            found,
            ..
        } => {
            let kind = u32::try_from(found)
                .ok()
                .and_then(QueueKind::from_raw)
                .map_or_else(
                    || format!("of unknown kind {found}"),
                    |k| k.label().to_owned(),
                );
            let hint = if found == QueueKind::Bytes as u64 {
                "; use it without --kind broadcast (or with --kind bytes)"
            } else {
                "; shmq send/recv use byte rings and broadcast rings only"
            };
            format!(
                "{name:?} is not a broadcast ring: it is a {kind} queue{hint} (see \
                 `shmq stat {name}`; or pick another name, or create one with --create)"
            )
            .into()
        }
        Error::Incompatible {
            field: "element size",
            found,
            ..
        } => {
            if usize::try_from(found).is_ok_and(|n| ITEM_SIZES.contains(&n)) {
                format!(
                    "{name:?} holds items of {found} bytes, not {size}: pass --item-size {found} \
                     (the item size is fixed when the ring is created)"
                )
                .into()
            } else {
                format!(
                    "{name:?} is a broadcast ring of {found}-byte items, which shmq send/recv \
                     did not make (their items are {} bytes); a program's own items are not \
                     lines",
                    sizes()
                )
                .into()
            }
        }
        Error::Incompatible {
            field: field @ ("element alignment" | "schema tag"),
            found,
            ..
        } => format!(
            "{name:?} is a broadcast ring that shmq send/recv did not make (its {field} is \
             {found:#x}; shmq's rings have items of u64 words and schema tag {SCHEMA:#x}): its \
             items are not lines"
        )
        .into(),
        Error::RoleTaken { holder_pid, .. } => format!(
            "another publisher (pid {holder_pid}) is attached to {name:?}; a broadcast ring has \
             one publisher at a time: wait for it to finish, or stop it"
        )
        .into(),
        Error::RegistryFull { limit, .. } => format!(
            "all {limit} subscriber slots of {name:?} are held by live subscribers (see \
             `shmq stat {name}`); stop one, or create the ring with a larger --max-subscribers"
        )
        .into(),
        Error::StartGone {
            requested,
            oldest,
            next,
        } => format!(
            "--start {requested}: {name:?} holds positions {oldest} to {} (the next line \
             published is {next}); use --start oldest for what is there",
            next.saturating_sub(1)
        )
        .into(),
        e => e.into(),
    }
}

fn builder<const W: usize>() -> Builder<[u64; W]>
where
    [u64; W]: Pod,
{
    Broadcast::<[u64; W]>::builder().schema(SCHEMA)
}

/// Open `name`, or with `--create` create it if it is missing.
fn open_ring<const W: usize>(a: &RingArgs) -> Res<(Broadcast<[u64; W]>, Owned)>
where
    [u64; W]: Pod,
{
    let name = shm_name(&a.name);
    let size = W * 8;
    let opened = |name: String, r: Result<Broadcast<[u64; W]>, Error>| match r {
        Ok(ring) => Ok((
            ring,
            Owned {
                name,
                remove: false,
            },
        )),
        Err(e) => Err(e),
    };
    if !a.create {
        let r = builder::<W>().open(&name);
        return opened(name.clone(), r).map_err(|e| explain(e, &name, size));
    }
    // Create, or open what someone else created; retry if it is removed
    // between the two.
    for _ in 0..5 {
        let mut b = builder::<W>().capacity(a.capacity.unwrap_or(DEFAULT_CAPACITY));
        b = if a.overwrite {
            b.overwrite()
        } else {
            b.lossless()
        };
        if let Some(lag) = a.max_lag {
            b = b.max_lag(lag);
        }
        if let Some(n) = a.max_subscribers {
            b = b.max_subscribers(n);
        }
        if let Some(m) = a.mode {
            b = b.mode(m);
        }
        match b.create(&name) {
            Ok(ring) => {
                let remove = !a.keep;
                return Ok((ring, Owned { name, remove }));
            }
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(explain(e, &name, size)),
        }
        match builder::<W>().open(&name) {
            Err(Error::NotFound { .. }) => continue,
            r => return opened(name.clone(), r).map_err(|e| explain(e, &name, size)),
        }
    }
    Err(
        format!("{name:?} keeps appearing and disappearing; is another process removing it?")
            .into(),
    )
}

// --------------------------------------------------------------------------
// send
// --------------------------------------------------------------------------

pub fn send(a: SendArgs) -> Res {
    by_item_size!(item_size(&a.ring), send_typed(a))
}

fn send_typed<const W: usize>(a: SendArgs) -> Res
where
    [u64; W]: Pod,
{
    let (ring, owned) = open_ring::<W>(&a.ring)?;
    let name = owned.name.clone();
    let timeout = a.ring.timeout;
    let size = W * 8;
    let mut tx = ring.publisher().map_err(|e| explain(e, &name, size))?;
    let sep = if a.null { 0 } else { b'\n' };
    let mut stdin = io::stdin().lock();
    let mut buf = Vec::new();
    let mut sent = 0u64;
    loop {
        buf.clear();
        if stdin.read_until(sep, &mut buf).map_err(stdin_error)? == 0 {
            break;
        }
        if buf.last() == Some(&sep) {
            buf.pop();
        }
        let Some(item) = encode::<W>(&buf) else {
            let bigger = ITEM_SIZES
                .iter()
                .find(|&&n| max_line(n) >= buf.len())
                .map_or_else(
                    || {
                        format!(
                            "no --item-size is that large: lines of a broadcast ring hold at \
                             most {} bytes (send it through a byte ring, without --kind)",
                            max_line(4096)
                        )
                    },
                    |n| format!("use a larger --item-size: create the ring with --item-size {n}"),
                );
            return Err(format!(
                "line {} is {} bytes, longer than the {} bytes an item of {name:?} holds \
                 (--item-size {size}, less the 4-byte length); {bigger}; {sent} line(s) were \
                 published, the rest of stdin was not",
                sent + 1,
                buf.len(),
                max_line(size)
            )
            .into());
        };
        let r = match timeout {
            Some(t) => tx.publish_timeout(item, t),
            None => tx.publish(item),
        };
        match r {
            Ok(()) => sent += 1,
            Err(PushError::Timeout(_)) => {
                return Err(timed_out(format!(
                    "timed out after {} waiting for the slowest subscriber of {name:?} to make \
                     room (it is stopped or not keeping up; see `shmq stat {name}`); {sent} \
                     line(s) were published, the rest of stdin was not",
                    fmt_dur(timeout.unwrap_or_default())
                )))
            }
            Err(PushError::Corrupt(_, c)) => return Err(c.to_string().into()),
            // Never for a broadcast publisher (nobody to disconnect from).
            Err(_) => {
                return Err(
                    format!("publishing to {name:?} failed; {sent} line(s) were published").into(),
                )
            }
        }
    }
    if owned.remove {
        wait_delivered(&ring, &name, timeout)?;
    }
    drop(tx);
    drop(owned);
    Ok(())
}

/// Wait until a subscriber has attached (now or earlier) and every live
/// attached subscriber has read everything published. There is no event
/// for this, so it polls, backing off to 10 ms.
fn wait_delivered<T: Pod>(ring: &Broadcast<T>, name: &str, timeout: Option<Duration>) -> Res {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut seen = false;
    let mut nap = Duration::from_micros(100);
    loop {
        let s = ring.stats();
        let behind: u64 = s
            .subscribers
            .iter()
            .filter(|x| x.alive)
            .map(|x| x.lag)
            .sum();
        if behind == 0 {
            seen = seen || subscriber_seen(name);
            if seen {
                return Ok(());
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let why = if behind > 0 {
                format!("its subscribers have {behind} line(s) left to read")
            } else {
                "no subscriber has attached".to_owned()
            };
            return Err(timed_out(format!(
                "timed out after {} waiting for subscribers of {name:?} to read everything \
                 ({why}); the ring is removed (attached subscribers still read it); use \
                 --keep to leave it for later subscribers",
                fmt_dur(timeout.unwrap_or_default())
            )));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    }
}

/// Whether any subscriber has ever attached to `name`: some subscriber
/// entry is no longer vacant.
fn subscriber_seen(name: &str) -> bool {
    shmqueue::inspect(name).is_ok_and(|s| {
        s.endpoints
            .iter()
            .any(|e| e.role == Role::Consumer && e.status != EndpointStatus::Vacant)
    })
}

// --------------------------------------------------------------------------
// recv
// --------------------------------------------------------------------------

pub fn recv(a: RecvArgs) -> Res {
    by_item_size!(item_size(&a.ring), recv_typed(a))
}

fn recv_typed<const W: usize>(a: RecvArgs) -> Res
where
    [u64; W]: Pod,
{
    let (ring, owned) = open_ring::<W>(&a.ring)?;
    let name = owned.name.clone();
    let timeout = a.ring.timeout;
    let size = W * 8;
    let start = a.start.unwrap_or(Start::Latest);
    let mut rx = ring.subscribe(start).map_err(|e| explain(e, &name, size))?;
    // A publisher that has already left, and nothing left for us: wait for
    // the next publisher rather than reporting the end at once.
    wait_for_peer(&name, Role::Producer, timeout, || rx.lag() > 0)?;
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 << 10, stdout.lock());
    let (mut got, mut missed, mut times) = (0u64, 0u64, 0u64);
    while a.count.map_or(true, |c| got < c) {
        // Batch output while lines are waiting; flush before blocking.
        if rx.lag() == 0 {
            out.flush().map_err(stdout_error)?;
        }
        let r = match timeout {
            Some(t) => rx.recv_timeout(t),
            None => rx.recv(),
        };
        match r {
            Ok(item) => {
                let line = decode(&item).map_err(|len| {
                    format!(
                        "the line at position {} of {name:?} claims {len} bytes, more than an \
                         item of {size} bytes holds: the ring is corrupt, or was not written by \
                         shmq send; {got} line(s) received",
                        rx.position() - 1
                    )
                })?;
                write_message(&mut out, line, &a).map_err(stdout_error)?;
                got += 1;
            }
            Err(RecvError::Disconnected) => break,
            Err(RecvError::Timeout) => {
                out.flush().map_err(stdout_error)?;
                return Err(timed_out(format!(
                    "timed out after {} waiting for a line on {name:?} ({got} received)",
                    fmt_dur(timeout.unwrap_or_default())
                )));
            }
            Err(e @ (RecvError::Lagged { missed: m } | RecvError::Evicted { missed: m })) => {
                out.flush().map_err(stdout_error)?;
                missed += m;
                times += 1;
                let what = if matches!(e, RecvError::Lagged { .. }) {
                    "lapped: the publisher overwrote"
                } else {
                    "evicted for holding the publisher past the ring's max lag: skipped"
                };
                eprintln!(
                    "shmq: warning: {what} {m} line(s) before this subscriber read them; \
                     going on from the oldest line still in {name:?}"
                );
            }
            Err(e) => {
                out.flush().map_err(stdout_error)?;
                return Err(format!("{e}; {got} line(s) received").into());
            }
        }
    }
    out.flush().map_err(stdout_error)?;
    drop(rx);
    drop(owned);
    if missed > 0 {
        return Err(Box::new(ExitWith {
            code: EXIT_MISSED,
            msg: format!(
                "{missed} line(s) were missed (lapped or evicted {times} time(s)); {got} received"
            ),
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_hold_lines_up_to_the_item_size_less_the_prefix() {
        let full = vec![b'x'; 60];
        let item = encode::<8>(&full).expect("60 bytes fit 64");
        assert_eq!(decode(&item), Ok(&full[..]));
        assert!(encode::<8>(&[b'x'; 61]).is_none());
        assert_eq!(decode(&encode::<8>(b"").unwrap()), Ok(&b""[..]));
        // A length from shared memory is not trusted.
        let mut bad = encode::<8>(b"hi").unwrap();
        bytemuck::bytes_of_mut(&mut bad)[..4].copy_from_slice(&61u32.to_le_bytes());
        assert_eq!(decode(&bad), Err(61));
        assert_eq!(parse_item_size("1k"), Ok(1024));
        assert!(parse_item_size("100").is_err());
    }
}
