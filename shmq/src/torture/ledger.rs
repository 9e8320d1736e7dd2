//! What the children write and the supervisor reads: item values, the
//! random source, and the shared-memory ledger of each child.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

// ---------------------------------------------------------------------------
// Values, randomness, ledgers
// ---------------------------------------------------------------------------

pub(super) const SEQ_BITS: u32 = 40;
pub(super) const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

pub(super) fn item(id: u64, seq: u64) -> u64 {
    id << SEQ_BITS | seq
}

pub(super) fn split(v: u64) -> (u64, u64) {
    (v >> SEQ_BITS, v & SEQ_MASK)
}

/// splitmix64: small, seedable, good enough to pick victims and delays.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `pct`%.
    pub(super) fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

// Ledger words.
pub(super) const STATE: usize = 0;
pub(super) const COUNT: usize = 1;
pub(super) const PHASE: usize = 2;
pub(super) const STOP: usize = 3;
/// Set by a self-test consumer once its injected fault is in the record: the
/// count just after it (never 0: the fault comes after item 10).
pub(super) const FAULTED: usize = 4;
pub(super) const VALUES: usize = 8;

// STATE values.
pub(super) const ST_STARTING: u64 = 0;
pub(super) const ST_ATTACHED: u64 = 1;
pub(super) const ST_STOPPED: u64 = 2;
pub(super) const ST_RETIRED: u64 = 3;
pub(super) const ST_DRAINED: u64 = 4;

// PHASE values: what the child was doing (racy, for reports only).
pub(super) const PH_EXEC: u64 = 0;
pub(super) const PH_ATTACH: u64 = 1;
pub(super) const PH_OP: u64 = 2;
pub(super) const PH_BATCH: u64 = 3;
pub(super) const PH_RECORD: u64 = 4;
pub(super) const PH_PACE: u64 = 5;
pub(super) const PH_ABSENT: u64 = 6;
pub(super) const PH_STOP: u64 = 7;

pub(super) fn phase_name(p: u64) -> &'static str {
    match p {
        PH_EXEC => "starting",
        PH_ATTACH => "attaching",
        PH_OP => "in push/pop",
        PH_BATCH => "mid-batch",
        PH_RECORD => "recording",
        PH_PACE => "pausing",
        PH_ABSENT => "peer absent",
        PH_STOP => "stopping",
        _ => "?",
    }
}

/// Words in a file mapped shared by the supervisor and one child.
pub(super) struct Ledger {
    pub(super) map: memmap2::MmapRaw,
}

impl Ledger {
    pub(super) fn create(path: &Path, words: usize) -> std::io::Result<Ledger> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        f.set_len(words as u64 * 8)?;
        Ok(Ledger {
            map: memmap2::MmapRaw::map_raw(&f)?,
        })
    }

    pub(super) fn open(path: &Path) -> std::io::Result<Ledger> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        let map = memmap2::MmapRaw::map_raw(&f)?;
        if map.len() < VALUES * 8 {
            return Err(std::io::Error::other("ledger file too small"));
        }
        Ok(Ledger { map })
    }

    pub(super) fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned, `len` bytes long, and lives as
        // long as `self`; AtomicU64 has the size and alignment of u64 and
        // every bit pattern is valid. The file is private to this run (made
        // with create_new in the supervisor's own directory) and never
        // truncated; every process accesses it only through these atomics,
        // via the mapping's mutable pointer.
        unsafe {
            std::slice::from_raw_parts(
                self.map.as_mut_ptr().cast::<AtomicU64>(),
                self.map.len() / 8,
            )
        }
    }

    pub(super) fn get(&self, w: usize) -> u64 {
        self.words()[w].load(Ordering::Acquire)
    }

    pub(super) fn set(&self, w: usize, v: u64) {
        self.words()[w].store(v, Ordering::Release);
    }

    pub(super) fn phase(&self, p: u64) {
        self.words()[PHASE].store(p, Ordering::Relaxed);
    }
}
