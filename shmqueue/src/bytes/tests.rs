//! Unit tests of the byte ring's record logic (the processes tests are in
//! tests/bytes_*.rs).

use super::*;
use super::{consumer::*, producer::*, record::*};

#[test]
fn limits_of_small_and_large_rings() {
    let l = Limits::new(64, usize::MAX);
    assert_eq!((l.max_record, l.chunk), (56, 24));
    let l = Limits::new(1 << 20, 1000);
    assert_eq!((l.max_record, l.chunk), ((1 << 20) - 8, (1 << 19) - 8));
    assert_eq!(record_size(0), 8);
    assert_eq!(record_size(1), 16);
    assert_eq!(record_size(8), 16);
    assert_eq!(record_size(9), 24);
}

/// A segment unlinked on drop, unique per test.
struct Name(String);
impl Name {
    fn new(tag: &str) -> Name {
        Name(format!("/shmq-unit-bytes-{}-{tag}", std::process::id()))
    }
}
impl Drop for Name {
    fn drop(&mut self) {
        let _ = crate::unlink(&self.0);
    }
}

fn pair(name: &Name, cap: usize) -> (Producer, Consumer) {
    let q = ByteRing::create(&name.0, cap).unwrap();
    (q.producer().unwrap(), q.consumer().unwrap())
}

#[test]
fn a_fragmented_message_too_big_for_the_slice_is_kept_and_streams() {
    use std::io::Read;
    let n = Name::new("ready");
    let (mut tx, mut rx) = pair(&n, 128);
    let msg: Vec<u8> = (0..100).collect(); // > 56: two fragments, 112 bytes
    tx.send(&msg).unwrap();
    let mut small = [0u8; 10];
    assert_eq!(
        rx.recv_into(&mut small),
        Err(RecvError::BufferTooSmall { needed: 100 })
    );
    assert_eq!(rx.mode, Mode::Ready);
    assert_eq!(rx.try_read().map(|_| ()), Err(RecvError::Fragmented));
    // The kept message streams out of the reassembly buffer.
    let mut v = Vec::new();
    rx.read_message().unwrap().read_to_end(&mut v).unwrap();
    assert_eq!(v, msg);
    assert_eq!(rx.mode, Mode::Idle);
}

#[test]
fn a_streaming_read_continues_a_partly_assembled_message() {
    use std::io::{Read, Write};
    let n = Name::new("assembling");
    let (mut tx, mut rx) = pair(&n, 64);
    let mut w = tx.write_message();
    w.write_all(&[1; 20]).unwrap();
    w.flush().unwrap();
    let mut buf = Vec::new();
    assert_eq!(rx.try_recv(&mut buf), Err(RecvError::Empty));
    assert_eq!(rx.mode, Mode::Assembling);
    w.write_all(&[2; 20]).unwrap();
    w.finish().unwrap();
    let mut v = Vec::new();
    rx.read_message().unwrap().read_to_end(&mut v).unwrap();
    assert_eq!(v, [[1u8; 20], [2; 20]].concat());
}

#[test]
fn a_reader_dropped_early_skips_the_rest_of_its_message() {
    use std::io::{Read, Write};
    let n = Name::new("dropreader");
    let (mut tx, mut rx) = pair(&n, 64);
    // Two fragments (24 + 10 bytes; 56 of the 64 bytes), all published.
    let mut w = tx.write_message();
    w.write_all(&[9; 34]).unwrap();
    w.finish().unwrap();
    let mut r = rx.read_message().unwrap();
    let mut first = [0u8; 5];
    r.read_exact(&mut first).unwrap();
    assert!(!r.is_finished());
    drop(r);
    assert_eq!(rx.mode, Mode::Skipping);
    tx.send(b"next").unwrap(); // wraps with a PAD
    let mut buf = Vec::new();
    rx.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"next");
    assert!(rx.is_empty());
}

#[test]
fn a_panic_inside_a_message_writer_aborts_the_message() {
    use std::io::Write;
    let n = Name::new("panicwriter");
    let (mut tx, mut rx) = pair(&n, 256);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut w = tx.write_message();
        w.write_all(&[1; 200]).unwrap(); // > one fragment: the first is out
        panic!("writer dies");
    }));
    assert!(r.is_err());
    let mut buf = Vec::new();
    assert_eq!(rx.try_recv(&mut buf), Err(RecvError::Truncated));
    tx.send(b"ok").unwrap();
    rx.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"ok");
}

#[test]
fn positions_are_checked() {
    assert!(check_positions(0, 0, 64).is_ok());
    assert!(check_positions(64, 0, 64).is_ok());
    assert!(check_positions(72, 0, 64).is_err());
    assert!(check_positions(4, 0, 64).is_err());
    assert!(check_positions(0, 8, 64).is_err());
    assert!(check_positions(8, 4, 64).is_err());
    let edge = MAX_POSITION;
    assert!(check_positions(edge + 8, edge, 64).is_ok());
    assert!(check_positions(edge + 8, edge + 8, 64).is_err());
    assert!(check_positions(u64::MAX - 7, u64::MAX - 7, 64).is_err());
}
