//! `shmq send NAME` / `shmq recv NAME` on a byte ring (`--kind bytes`, the
//! default): move lines of text or raw records through a
//! `shmqueue::ByteRing` from the shell.
//!
//! Framing (the same flag on both sides):
//!
//! * default: one message per line of stdin, the `\n` stripped; `recv`
//!   prints each message followed by `\n`. Empty lines are empty messages.
//! * `--null` / `-0`: NUL-separated records, likewise.
//! * `--raw`: `send` streams the whole of stdin as **one** message of any
//!   size (fragmented through the ring, never held whole); `recv` writes
//!   each message's bytes as they are, with nothing between messages.
//! * `send --record-size N`: fixed-size binary records of N bytes (a short
//!   last record is sent as it is); receive them with `recv --raw`.
//! * `recv --json`: one JSON object per line, `{"len": N, "text": "..."}`
//!   for UTF-8 messages, `{"len": N, "base64": "..."}` for the others.
//!
//! Line, NUL, record and JSON messages are at most 16 MiB (the library's
//! default limit, which bounds what `recv` allocates); `--raw` has no limit.
//!
//! Rings: without `--create` the ring must exist (and be a byte ring).
//! `--create [--capacity BYTES] [--mode OCTAL]` creates it if it is missing
//! and otherwise opens it, so either side may start first. A ring this
//! command created is removed when the command exits, unless `--keep`:
//! `send` first waits until a receiver has attached and taken everything
//! (so `send` exiting 0 means the data was delivered to a receiver), `recv`
//! removes it when it is done. Removing the name never disturbs a peer that
//! already has the ring open. A ring this command merely opened is left as
//! it is. (Killed by a signal, a command leaves the ring behind:
//! `shmq rm --stale`.)
//!
//! Waiting: `send` blocks while the ring is full (backpressure) and until a
//! receiver has drained a ring it created; `recv` blocks for the next
//! message. `--timeout DUR` (`500ms`, `2s`, `1m`, or seconds) bounds each
//! wait: for `send`, sending one message (with `--raw`: the whole stream)
//! and the final drain; for `recv`, the next message (with `--raw`: the
//! whole of it).
//!
//! Exit status: 0 success (`send`: stdin was at EOF and everything was
//! sent, and drained if it created the ring; `recv`: the sender disconnected
//! and the ring was drained, or `--count` messages were received); 1 error
//! (missing ring, not a byte ring, role taken, peer gone mid-stream, a
//! message abandoned part-way, I/O); 2 usage; 4 a `--timeout` expired.

use std::io::{self, BufRead, BufWriter, Read, Write};
use std::time::{Duration, Instant};

use shmqueue::bytes::{self, DEFAULT_MAX_MESSAGE_SIZE};
use shmqueue::{ByteRing, Error, RecvError, Role, SendError};

use super::{
    fmt_dur, peer, shm_name, stdin_error, stdout_error, timed_out, wait_for_peer, write_message,
    Owned, Peer, RecvArgs, RingArgs, SendArgs,
};
use crate::Res;

/// Data area of a byte ring `--create` makes without `--capacity`.
const DEFAULT_CAPACITY: usize = 1 << 20;

// --------------------------------------------------------------------------
// Opening the ring
// --------------------------------------------------------------------------

/// What `shmq send`/`recv` say instead of a bare library error.
fn explain(e: Error, name: &str) -> Box<dyn std::error::Error> {
    match e {
        Error::NotFound { .. } => format!(
            "no byte ring named {name:?}: start the other side with --create first \
             (e.g. `shmq recv --create {name}`), or pass --create here"
        )
        .into(),
        Error::Incompatible {
            field: "queue kind",
            found,
            ..
        } => {
            let what = shmqueue::inspect(name).map_or_else(
                |_| "another kind of queue".to_owned(),
                |s| {
                    let kind = s.kind_label();
                    let a = if kind.starts_with('b') { "a" } else { "an" };
                    match s.elem_size {
                        Some(n) => format!("{a} {kind} queue of {n}-byte elements"),
                        None => format!("{a} {kind} queue"),
                    }
                },
            );
            let hint = if found == shmqueue::QueueKind::Broadcast as u64 {
                "; to publish or subscribe to it, pass --kind broadcast"
            } else {
                "; shmq send/recv use byte rings and broadcast rings only"
            };
            format!(
                "{name:?} is not a byte ring: it is {what}{hint} (see `shmq stat {name}`; \
                 or pick another name, or create one with --create)"
            )
            .into()
        }
        e => e.into(),
    }
}

/// Open `name`, or with `--create` create it if it is missing. Returns the
/// ring and whether this call created it.
fn open_ring(a: &RingArgs, max_message: usize) -> Res<(ByteRing, Owned)> {
    let name = shm_name(&a.name);
    let builder = || ByteRing::builder().max_message_size(max_message);
    if !a.create {
        let ring = builder().open(&name).map_err(|e| explain(e, &name))?;
        return Ok((
            ring,
            Owned {
                name,
                remove: false,
            },
        ));
    }
    // Create, or open what someone else created; retry if it is removed
    // between the two.
    for _ in 0..5 {
        let mut b = builder().capacity(a.capacity.unwrap_or(DEFAULT_CAPACITY));
        if let Some(m) = a.mode {
            b = b.mode(m);
        }
        match b.create(&name) {
            Ok(ring) => {
                let remove = !a.keep;
                return Ok((ring, Owned { name, remove }));
            }
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(explain(e, &name)),
        }
        match builder().open(&name) {
            Ok(ring) => {
                return Ok((
                    ring,
                    Owned {
                        name,
                        remove: false,
                    },
                ))
            }
            Err(Error::NotFound { .. }) => continue,
            Err(e) => return Err(explain(e, &name)),
        }
    }
    Err(
        format!("{name:?} keeps appearing and disappearing; is another process removing it?")
            .into(),
    )
}

fn role_error(e: Error, name: &str) -> Box<dyn std::error::Error> {
    match e {
        Error::RoleTaken { role, holder_pid } => {
            let who = match role {
                Role::Producer => "sender",
                Role::Consumer => "receiver",
            };
            format!(
                "another {who} (pid {holder_pid}) is attached to {name:?}; a byte ring has \
                 one {who} at a time: wait for it to finish, or stop it"
            )
            .into()
        }
        e => e.into(),
    }
}

// --------------------------------------------------------------------------
// send
// --------------------------------------------------------------------------

/// Why a send failed, said for the shell. `sent`: messages sent before
/// this one, or `None` for the one `--raw` message.
fn send_error(
    e: SendError,
    name: &str,
    sent: Option<u64>,
    timeout: Option<Duration>,
) -> Box<dyn std::error::Error> {
    let progress = match sent {
        Some(n) => format!("{n} message(s) were sent, the rest of stdin was not"),
        None => "the message was abandoned part-way (a receiver sees it cut off)".into(),
    };
    match e {
        SendError::Timeout => timed_out(format!(
            "timed out after {} waiting for room in {name:?} (no receiver, or it is not \
             keeping up); {progress}",
            fmt_dur(timeout.unwrap_or_default())
        )),
        SendError::Disconnected => format!("the receiver of {name:?} has gone; {progress}").into(),
        SendError::TooLarge { len, max } => format!(
            "message {} is {len} bytes, over the limit of {max} bytes; send it with --raw \
             (any size) and receive it with `recv --raw`",
            sent.unwrap_or(0) + 1
        )
        .into(),
        e => e.into(),
    }
}

fn send_one(
    tx: &mut bytes::Producer,
    msg: &[u8],
    timeout: Option<Duration>,
) -> Result<(), SendError> {
    match timeout {
        Some(t) => tx.send_timeout(msg, t),
        None => tx.send(msg),
    }
}

/// Read until `buf` is full or EOF; the number of bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

pub fn send(a: SendArgs) -> Res {
    let max = if a.raw {
        usize::MAX
    } else {
        DEFAULT_MAX_MESSAGE_SIZE
    };
    let (ring, owned) = open_ring(&a.ring, max)?;
    let name = owned.name.clone();
    let timeout = a.ring.timeout;
    let mut tx = ring.producer().map_err(|e| role_error(e, &name))?;
    // A receiver that has already left cannot be sent to: wait for the next.
    wait_for_peer(&name, Role::Consumer, timeout, || false)?;
    let mut stdin = io::stdin().lock();
    let mut sent = 0u64;
    if a.raw {
        send_raw(&mut tx, &mut stdin, &name, timeout)?;
    } else if let Some(n) = a.record_size {
        let mut buf = vec![0u8; n];
        loop {
            let k = read_full(&mut stdin, &mut buf).map_err(stdin_error)?;
            if k == 0 {
                break;
            }
            send_one(&mut tx, &buf[..k], timeout)
                .map_err(|e| send_error(e, &name, Some(sent), timeout))?;
            sent += 1;
            if k < n {
                break;
            }
        }
    } else {
        let sep = if a.null { 0 } else { b'\n' };
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if stdin.read_until(sep, &mut buf).map_err(stdin_error)? == 0 {
                break;
            }
            if buf.last() == Some(&sep) {
                buf.pop();
            }
            send_one(&mut tx, &buf, timeout)
                .map_err(|e| send_error(e, &name, Some(sent), timeout))?;
            sent += 1;
        }
    }
    if owned.remove {
        wait_drained(&tx, &name, timeout)?;
    }
    drop(tx);
    drop(owned);
    Ok(())
}

/// Stream stdin as one message. Whatever stdin has given is published as
/// soon as a read comes back short (stdin has nothing more right now), so
/// a slow stream (`tail -f`) reaches the receiver as it comes.
fn send_raw(
    tx: &mut bytes::Producer,
    stdin: &mut impl Read,
    name: &str,
    timeout: Option<Duration>,
) -> Res {
    let mut w = match timeout {
        Some(t) => tx.write_message_timeout(t),
        None => tx.write_message(),
    };
    let mut buf = vec![0u8; 64 << 10];
    let failed = |e: io::Error| -> Box<dyn std::error::Error> {
        match e.get_ref().and_then(|i| i.downcast_ref::<SendError>()) {
            Some(s) => send_error(*s, name, None, timeout),
            None => e.into(),
        }
    };
    loop {
        let k = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Abandoned: a receiver sees a truncated message, never a short one.
                w.abort();
                return Err(stdin_error(e));
            }
        };
        let r = w
            .write_all(&buf[..k])
            .and_then(|()| if k < buf.len() { w.flush() } else { Ok(()) });
        if let Err(e) = r {
            w.abort();
            return Err(failed(e));
        }
    }
    w.finish().map_err(|e| send_error(e, name, None, timeout))
}

/// Wait until a receiver has attached (now or earlier) and the ring is
/// empty. There is no event for "drained", so this polls, backing off to
/// 10 ms.
fn wait_drained(tx: &bytes::Producer, name: &str, timeout: Option<Duration>) -> Res {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut seen = false;
    let mut nap = Duration::from_micros(100);
    loop {
        if tx.is_empty() {
            seen = seen || receiver_seen(name);
            if seen {
                return Ok(());
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(timed_out(format!(
                "timed out after {} waiting for a receiver to take everything from {name:?} \
                 ({} bytes left); the ring is removed (an attached receiver still drains it); \
                 use --keep to leave it for a later receiver",
                fmt_dur(timeout.unwrap_or_default()),
                tx.len()
            )));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    }
}

/// Whether a receiver has ever attached to `name`: its registry entry is no
/// longer vacant.
fn receiver_seen(name: &str) -> bool {
    peer(name, Role::Consumer) != Peer::Vacant
}

// --------------------------------------------------------------------------
// recv
// --------------------------------------------------------------------------

fn recv_timed_out(name: &str, got: u64, timeout: Option<Duration>) -> Box<dyn std::error::Error> {
    timed_out(format!(
        "timed out after {} waiting for a message on {name:?} ({got} received)",
        fmt_dur(timeout.unwrap_or_default())
    ))
}

pub fn recv(a: RecvArgs) -> Res {
    let max = if a.raw {
        usize::MAX
    } else {
        DEFAULT_MAX_MESSAGE_SIZE
    };
    let (ring, owned) = open_ring(&a.ring, max)?;
    let name = owned.name.clone();
    let timeout = a.ring.timeout;
    let mut rx = ring.consumer().map_err(|e| role_error(e, &name))?;
    // An empty ring whose sender has already left: wait for the next sender
    // (or for data) rather than reporting the end at once.
    wait_for_peer(&name, Role::Producer, timeout, || !rx.is_empty())?;
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 << 10, stdout.lock());
    let mut got = 0u64;
    let mut lost = 0u64;
    let mut buf = Vec::new();
    while a.count.map_or(true, |c| got < c) {
        // Batch output while messages are waiting; flush before blocking.
        let r = if a.raw {
            if rx.is_empty() {
                out.flush().map_err(stdout_error)?;
            }
            recv_raw(&mut rx, &mut out, timeout)
        } else {
            let mut r = rx.try_recv(&mut buf);
            if r == Err(RecvError::Empty) {
                out.flush().map_err(stdout_error)?;
                r = match timeout {
                    Some(t) => rx.recv_timeout(&mut buf, t),
                    None => rx.recv(&mut buf),
                };
            }
            r.map_err(Failure::Recv)
                .and_then(|()| write_message(&mut out, &buf, &a).map_err(Failure::Out))
        };
        match r {
            Ok(()) => got += 1,
            Err(Failure::Recv(RecvError::Disconnected)) => break,
            Err(Failure::Recv(RecvError::Timeout)) => {
                out.flush().map_err(stdout_error)?;
                return Err(recv_timed_out(&name, got, timeout));
            }
            Err(Failure::Recv(e @ (RecvError::Truncated | RecvError::TooLarge { .. }))) => {
                if a.raw {
                    // Part of it may be written already: stop here.
                    out.flush().map_err(stdout_error)?;
                    return Err(format!("{e}; stopped, {got} message(s) received").into());
                }
                lost += 1;
                out.flush().map_err(stdout_error)?;
                eprintln!("shmq: warning: {e}");
            }
            Err(Failure::Recv(e)) => return Err(e.into()),
            Err(Failure::Out(e)) => return Err(stdout_error(e)),
        }
    }
    out.flush().map_err(stdout_error)?;
    drop(rx);
    drop(owned);
    if lost > 0 {
        return Err(format!(
            "{lost} message(s) were lost (abandoned part-way by the sender, or too large); \
             {got} received"
        )
        .into());
    }
    Ok(())
}

enum Failure {
    Recv(RecvError),
    Out(io::Error),
}

/// Stream one message to `out` as it arrives, flushing each piece (a raw
/// message may be an endless stream).
fn recv_raw(
    rx: &mut bytes::Consumer,
    out: &mut impl Write,
    timeout: Option<Duration>,
) -> Result<(), Failure> {
    let mut m = match timeout {
        Some(t) => rx.read_message_timeout(t),
        None => rx.read_message(),
    }
    .map_err(Failure::Recv)?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match m.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let inner = e
                    .get_ref()
                    .and_then(|i| i.downcast_ref::<RecvError>())
                    .copied();
                return Err(match inner {
                    Some(r) => Failure::Recv(r),
                    None => Failure::Out(e),
                });
            }
        };
        out.write_all(&buf[..n]).map_err(Failure::Out)?;
        out.flush().map_err(Failure::Out)?;
    }
}
