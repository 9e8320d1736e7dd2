//! Model checks of shmqueue under loom live in tests/ (run with --cfg
//! shmqueue_loom); this library holds what every model file shares.
#![cfg(shmqueue_loom)]

use loom::thread;
use shmqueue::TryPushError;

/// Check `f` under loom with every model's defaults: at most 3 preemptions
/// unless `LOOM_MAX_PREEMPTIONS` says otherwise (run.sh sets it per file).
pub fn model(f: impl Fn() + Sync + Send + 'static) {
    builder().check(f);
}

/// Like [`model`], with room for the branches that retry loops add (each
/// yield of a `try_*` loop is a branch).
pub fn model_with_retries(f: impl Fn() + Sync + Send + 'static) {
    let mut b = builder();
    b.max_branches = 100_000;
    b.check(f);
}

fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b
}

/// Push `v` with a `try_*` call, yielding while the ring is full; any other
/// error is a failure of the model.
pub fn push_retry<T: std::fmt::Debug>(
    mut v: T,
    mut try_push: impl FnMut(T) -> Result<(), TryPushError<T>>,
) {
    loop {
        match try_push(v) {
            Ok(()) => return,
            Err(TryPushError::Full(back)) => {
                v = back;
                thread::yield_now();
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}
