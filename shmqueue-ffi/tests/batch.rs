//! The `*_many` batch calls, through the C ABI from Rust: counts, order,
//! the try/blocking/timeout outcomes and their statuses, on SPSC and MPMC
//! memfd rings (nothing is left in /dev/shm).

use std::ffi::c_void;

use shmqueue_ffi::*;

fn ring(kind: shmq_kind, capacity: usize) -> (shmq_queue_t, shmq_producer_t, shmq_consumer_t) {
    let mut cfg = shmq_queue_config_default(kind as i32, 8, 8);
    cfg.capacity = capacity;
    let mut q = shmq_queue_t::default();
    // SAFETY: valid config and out pointers.
    let st = unsafe { shmq_queue_create_memfd(&cfg, &mut q) };
    assert_eq!(st, shmq_status::SHMQ_OK);
    let (mut p, mut c) = (shmq_producer_t::default(), shmq_consumer_t::default());
    // SAFETY: valid out pointers.
    assert_eq!(unsafe { shmq_producer(q, &mut p) }, shmq_status::SHMQ_OK);
    // SAFETY: valid out pointers.
    assert_eq!(unsafe { shmq_consumer(q, &mut c) }, shmq_status::SHMQ_OK);
    (q, p, c)
}

fn batches(kind: shmq_kind) {
    let (q, p, c) = ring(kind, 64);
    let mut cap = 0usize;
    // SAFETY: valid out pointer.
    let st = unsafe { shmq_queue_capacity(q, &mut cap) };
    assert_eq!(st, shmq_status::SHMQ_OK);
    let items: Vec<u64> = (0..cap as u64 + 10).collect();
    let mut done = usize::MAX;

    // A try push of more than fits takes exactly what fits, in order.
    // SAFETY: `items` holds `items.len()` u64s; `done` is writable.
    let st = unsafe { shmq_try_push_many(p, items.as_ptr().cast(), items.len(), &mut done) };
    assert_eq!((st, done), (shmq_status::SHMQ_OK, cap));
    // Full: nothing fits, and the count says so.
    // SAFETY: as above.
    let st = unsafe { shmq_try_push_many(p, items.as_ptr().cast(), 1, &mut done) };
    assert_eq!((st, done), (shmq_status::SHMQ_FULL, 0));
    // A timed push of two into a full ring times out with 0 pushed.
    // SAFETY: as above.
    let st = unsafe { shmq_push_many_timeout(p, items.as_ptr().cast(), 2, &mut done, 1_000_000) };
    assert_eq!((st, done), (shmq_status::SHMQ_TIMEOUT, 0));

    // Pop in two batches: a short one, then the rest, then empty.
    let mut out = vec![0u64; cap + 5];
    // SAFETY: `out` has room for `out.len()` u64s.
    let st = unsafe { shmq_try_pop_many(c, out.as_mut_ptr().cast::<c_void>(), 3, &mut done) };
    assert_eq!((st, done), (shmq_status::SHMQ_OK, 3));
    assert_eq!(&out[..3], &[0, 1, 2]);
    // SAFETY: as above.
    let st = unsafe { shmq_pop_many(c, out.as_mut_ptr().cast::<c_void>(), out.len(), &mut done) };
    assert_eq!((st, done), (shmq_status::SHMQ_OK, cap - 3));
    assert!(out[..cap - 3].iter().copied().eq(3..cap as u64));
    // SAFETY: as above.
    let st = unsafe { shmq_try_pop_many(c, out.as_mut_ptr().cast::<c_void>(), 4, &mut done) };
    assert_eq!((st, done), (shmq_status::SHMQ_EMPTY, 0));
    // SAFETY: as above.
    let st = unsafe { shmq_pop_many_timeout(c, out.as_mut_ptr().cast(), 4, &mut done, 1_000_000) };
    assert_eq!((st, done), (shmq_status::SHMQ_TIMEOUT, 0));

    // A blocking push of fewer than capacity, unaligned source: all go in.
    let mut bytes = [0u8; 8 * 5 + 1];
    for (i, ch) in bytes[1..].chunks_mut(8).enumerate() {
        ch.copy_from_slice(&(100 + i as u64).to_ne_bytes());
    }
    // SAFETY: `bytes[1..]` holds 5 elements of 8 bytes.
    let st = unsafe { shmq_push_many(p, bytes[1..].as_ptr().cast(), 5, &mut done) };
    assert_eq!((st, done), (shmq_status::SHMQ_OK, 5));
    // SAFETY: as above.
    let st = unsafe { shmq_pop_many(c, out.as_mut_ptr().cast::<c_void>(), 10, &mut done) };
    assert_eq!((st, done), (shmq_status::SHMQ_OK, 5));
    assert_eq!(&out[..5], &[100, 101, 102, 103, 104]);

    // Zero elements is success with 0 and touches nothing; NULL counts
    // and NULL arrays are typed errors.
    // SAFETY: a NULL array with n == 0 is allowed.
    let st = unsafe { shmq_try_push_many(p, std::ptr::null(), 0, &mut done) };
    assert_eq!((st, done), (shmq_status::SHMQ_OK, 0));
    // SAFETY: NULL is allowed and reported.
    let st = unsafe { shmq_try_push_many(p, std::ptr::null(), 1, &mut done) };
    assert_eq!(st, shmq_status::SHMQ_ERR_NULL_ARGUMENT);
    // SAFETY: NULL is allowed and reported.
    let st = unsafe { shmq_try_pop_many(c, out.as_mut_ptr().cast(), 1, std::ptr::null_mut()) };
    assert_eq!(st, shmq_status::SHMQ_ERR_NULL_ARGUMENT);

    // The producer gone: a batch pop drains, then says disconnected.
    // SAFETY: one element of 8 bytes.
    let st = unsafe { shmq_push_many(p, items.as_ptr().cast(), 1, &mut done) };
    assert_eq!(st, shmq_status::SHMQ_OK);
    assert_eq!(shmq_producer_free(p), shmq_status::SHMQ_OK);
    // SAFETY: as above.
    let st = unsafe { shmq_pop_many(c, out.as_mut_ptr().cast::<c_void>(), 10, &mut done) };
    assert_eq!((st, done), (shmq_status::SHMQ_OK, 1));
    // SAFETY: as above.
    let st = unsafe { shmq_pop_many(c, out.as_mut_ptr().cast::<c_void>(), 10, &mut done) };
    assert_eq!((st, done), (shmq_status::SHMQ_DISCONNECTED, 0));
    // A freed handle is an error code.
    // SAFETY: as above.
    let st = unsafe { shmq_push_many(p, items.as_ptr().cast(), 1, &mut done) };
    assert_eq!(st, shmq_status::SHMQ_ERR_INVALID_HANDLE);

    assert_eq!(shmq_consumer_free(c), shmq_status::SHMQ_OK);
    assert_eq!(shmq_queue_free(q), shmq_status::SHMQ_OK);
}

#[test]
fn spsc_batches() {
    batches(shmq_kind::SHMQ_KIND_SPSC);
}

#[test]
fn mpmc_batches() {
    batches(shmq_kind::SHMQ_KIND_MPMC);
}
