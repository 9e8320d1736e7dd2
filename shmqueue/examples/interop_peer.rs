//! A Rust process for foreign peers to talk to: the Python binding's tests
//! run it against a Python process on the same ring. It opens rings that
//! the other side created (the other side owns and removes the name).
//!
//! ```text
//! interop_peer produce spsc|mpmc NAME N     push 0..N (u64), then exit
//! interop_peer consume spsc|mpmc NAME N     pop N, each the next of 0..N, then
//!                                           wait for the producer to go
//! interop_peer drain spsc|mpmc NAME         pop until the producer is gone;
//!                                           print how many, exit 0
//! interop_peer hold spsc|mpmc NAME          become the producer, print
//!                                           "ready", wait to be killed
//! interop_peer bytes-produce NAME N MAX     N messages of pseudo-random size
//!                                           0..=MAX, each its own pattern
//! interop_peer bytes-consume NAME N MAX     receive and check those N
//! interop_peer bcast-publish NAME N         publish 0..N (u64) to a broadcast
//!                                           ring, then exit
//! interop_peer bcast-subscribe NAME N       subscribe at sequence 0, check
//!                                           0..N arrive in order, then wait
//!                                           for the publisher to go
//! ```
//!
//! Exit status 0 when every check passed, 1 with a message otherwise.

use std::process::exit;
use std::time::Duration;

use shmqueue::broadcast::{self, Broadcast, Start};
use shmqueue::{ByteRing, Mpmc, PopError, RecvError, Spsc};

fn fail(msg: String) -> ! {
    eprintln!("interop_peer: {msg}");
    exit(1)
}

/// The size of message `i` (a fixed LCG, so both sides agree).
fn msg_len(i: u64, max: u64) -> usize {
    let x = i
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((x >> 33) % (max + 1)) as usize
}

/// The content of message `i`: byte `j` is `(i * 31 + j) mod 251`.
fn msg(i: u64, max: u64) -> Vec<u8> {
    (0..msg_len(i, max))
        .map(|j| ((i * 31 + j as u64) % 251) as u8)
        .collect()
}

/// A blocking pop of either kind.
type Pop = Box<dyn FnMut() -> Result<u64, PopError>>;

fn consumer(kind: &str, name: &str) -> Pop {
    match kind {
        "spsc" => {
            let q = Spsc::<u64>::open(name).unwrap_or_else(|e| fail(format!("open: {e}")));
            let mut c = q
                .consumer()
                .unwrap_or_else(|e| fail(format!("consumer: {e}")));
            Box::new(move || c.pop())
        }
        "mpmc" => {
            let q = Mpmc::<u64>::open(name).unwrap_or_else(|e| fail(format!("open: {e}")));
            let mut c = q
                .consumer()
                .unwrap_or_else(|e| fail(format!("consumer: {e}")));
            Box::new(move || c.pop())
        }
        k => fail(format!("unknown kind {k}")),
    }
}

fn produce(kind: &str, name: &str, n: u64, hold: bool) {
    let mut push: Box<dyn FnMut(u64)> = match kind {
        "spsc" => {
            let q = Spsc::<u64>::open(name).unwrap_or_else(|e| fail(format!("open: {e}")));
            let mut p = q
                .producer()
                .unwrap_or_else(|e| fail(format!("producer: {e}")));
            Box::new(move |v| p.push(v).unwrap_or_else(|e| fail(format!("push: {e}"))))
        }
        "mpmc" => {
            let q = Mpmc::<u64>::open(name).unwrap_or_else(|e| fail(format!("open: {e}")));
            let mut p = q
                .producer()
                .unwrap_or_else(|e| fail(format!("producer: {e}")));
            Box::new(move |v| p.push(v).unwrap_or_else(|e| fail(format!("push: {e}"))))
        }
        k => fail(format!("unknown kind {k}")),
    };
    for i in 0..n {
        push(i);
    }
    if hold {
        println!("ready");
        // Wait to be killed; the test's deadline bounds this.
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str {
        args.get(i)
            .map(String::as_str)
            .unwrap_or_else(|| fail("missing argument (see the file's docs)".into()))
    };
    let num = |i: usize| -> u64 {
        arg(i)
            .parse()
            .unwrap_or_else(|_| fail(format!("not a number: {}", arg(i))))
    };
    match arg(0) {
        "produce" => produce(arg(1), arg(2), num(3), false),
        "hold" => produce(arg(1), arg(2), 0, true),
        "consume" => {
            let n = num(3);
            let mut pop = consumer(arg(1), arg(2));
            for i in 0..n {
                match pop() {
                    Ok(v) if v == i => {}
                    Ok(v) => fail(format!("item {i} was {v}")),
                    Err(e) => fail(format!("pop {i}: {e}")),
                }
            }
            match pop() {
                Err(PopError::Disconnected) => {}
                r => fail(format!(
                    "after {n} items: {r:?}, expected the producer gone"
                )),
            }
        }
        "drain" => {
            let mut pop = consumer(arg(1), arg(2));
            let mut k = 0u64;
            loop {
                match pop() {
                    Ok(_) => k += 1,
                    Err(PopError::Disconnected) => break,
                    Err(e) => fail(format!("pop: {e}")),
                }
            }
            println!("{k}");
        }
        "bytes-produce" => {
            let (n, max) = (num(2), num(3));
            let r = ByteRing::open(arg(1)).unwrap_or_else(|e| fail(format!("open: {e}")));
            let mut p = r
                .producer()
                .unwrap_or_else(|e| fail(format!("producer: {e}")));
            for i in 0..n {
                p.send(&msg(i, max))
                    .unwrap_or_else(|e| fail(format!("send {i}: {e}")));
            }
        }
        "bytes-consume" => {
            let (n, max) = (num(2), num(3));
            let r = ByteRing::open(arg(1)).unwrap_or_else(|e| fail(format!("open: {e}")));
            let mut c = r
                .consumer()
                .unwrap_or_else(|e| fail(format!("consumer: {e}")));
            let mut buf = Vec::new();
            for i in 0..n {
                c.recv(&mut buf)
                    .unwrap_or_else(|e| fail(format!("recv {i}: {e}")));
                if buf != msg(i, max) {
                    fail(format!("message {i}: {} bytes, not as sent", buf.len()));
                }
            }
            match c.recv(&mut buf) {
                Err(RecvError::Disconnected) => {}
                r => fail(format!(
                    "after {n} messages: {r:?}, expected the producer gone"
                )),
            }
        }
        "bcast-publish" => {
            let n = num(2);
            let b = Broadcast::<u64>::open(arg(1)).unwrap_or_else(|e| fail(format!("open: {e}")));
            let mut p = b
                .publisher()
                .unwrap_or_else(|e| fail(format!("publisher: {e}")));
            for i in 0..n {
                p.publish(i)
                    .unwrap_or_else(|e| fail(format!("publish {i}: {e}")));
            }
        }
        "bcast-subscribe" => {
            let n = num(2);
            let b = Broadcast::<u64>::open(arg(1)).unwrap_or_else(|e| fail(format!("open: {e}")));
            let mut s = b
                .subscribe(Start::At(0))
                .unwrap_or_else(|e| fail(format!("subscribe: {e}")));
            println!("ready");
            for i in 0..n {
                match s.recv() {
                    Ok(v) if v == i => {}
                    Ok(v) => fail(format!("item {i} was {v}")),
                    Err(e) => fail(format!("recv {i}: {e}")),
                }
            }
            match s.recv() {
                Err(broadcast::RecvError::Disconnected) => {}
                r => fail(format!(
                    "after {n} items: {r:?}, expected the publisher gone"
                )),
            }
        }
        c => fail(format!("unknown command {c}")),
    }
}
