//! Copies between this process's memory and the shared mapping.
//!
//! A slot or record another process can write is never read or written
//! through a `&T` or `&[T]`. The protocol (Release/Acquire on the index or
//! sequence words) guarantees that a well-behaved peer never writes what we
//! are copying; a hostile or buggy one can, and then a plain `memcpy` racing
//! its writes is, in the Rust memory model, a data race: undefined
//! behaviour, not merely garbage. The functions here copy with relaxed
//! atomic loads and stores of whole words (bytes at unaligned edges), in the
//! manner of the `atomic-memcpy` crate, so that even then every access is
//! atomic and the outcome is only wrong bytes, which every reader treats as
//! untrusted anyway. See docs/DESIGN.md, "Copies", for what was measured and
//! where each kind of copy is used.

use core::mem::{align_of, size_of, MaybeUninit};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use bytemuck::Pod;

/// Typed values up to this size are copied with atomic words
/// ([`load_value`], [`store_value`]); larger ones, and bulk copies (batches,
/// windows, byte-ring records), with `memcpy`. Measured: parity at 8 bytes,
/// +3.5 ns at 64, but 2.9-4.8x the copy time from 512 bytes up (DESIGN.md,
/// "Copies").
pub(crate) const ATOMIC_VALUE_MAX: usize = 64;

/// Read one `T` out of a slot: atomic words up to [`ATOMIC_VALUE_MAX`]
/// bytes, a plain read above.
///
/// # Safety
/// As [`load`].
#[inline(always)]
pub(crate) unsafe fn load_value<T: Pod>(src: *const T) -> T {
    if size_of::<T>() <= ATOMIC_VALUE_MAX {
        // SAFETY: the caller's contract.
        unsafe { load(src) }
    } else {
        // SAFETY: the caller's contract; any bytes are a valid `T: Pod`.
        unsafe { src.read() }
    }
}

/// Write one `T` into a slot: atomic words up to [`ATOMIC_VALUE_MAX`]
/// bytes, a plain write above.
///
/// # Safety
/// As [`store`].
#[inline(always)]
pub(crate) unsafe fn store_value<T: Pod>(dst: *mut T, value: T) {
    if size_of::<T>() <= ATOMIC_VALUE_MAX {
        // SAFETY: the caller's contract.
        unsafe { store(dst, value) }
    } else {
        // SAFETY: the caller's contract.
        unsafe { dst.write(value) }
    }
}

/// Read a `T` from shared memory with relaxed atomic loads of its words.
///
/// For `T = u64` (and every 8-aligned `T` up to a few words) this compiles
/// to the same plain loads as `ptr::read`.
///
/// # Safety
/// `src` is valid for reads of `size_of::<T>()` bytes and aligned for `T`;
/// the memory stays mapped for the call. (Concurrent writes by another
/// process are allowed: they can only make the value wrong.)
#[inline(always)]
pub(crate) unsafe fn load<T: Pod>(src: *const T) -> T {
    let mut out = MaybeUninit::<T>::uninit();
    let dst = out.as_mut_ptr().cast::<u8>();
    // SAFETY: the caller's contract for `src`; `dst` is our own `T`-sized,
    // `T`-aligned buffer.
    unsafe { load_words(src.cast(), dst, size_of::<T>(), align_of::<T>()) };
    // SAFETY: every byte was written above, and any bytes are a valid `T`.
    unsafe { out.assume_init() }
}

/// Write `value` to shared memory with relaxed atomic stores of its words.
///
/// # Safety
/// `dst` is valid for writes of `size_of::<T>()` bytes and aligned for `T`;
/// the memory stays mapped for the call.
#[inline(always)]
pub(crate) unsafe fn store<T: Pod>(dst: *mut T, value: T) {
    let src = (&value as *const T).cast::<u8>();
    // SAFETY: the caller's contract for `dst`; `src` is our own `value`.
    unsafe { store_words(src, dst.cast(), size_of::<T>(), align_of::<T>()) };
}

/// Copy `len` bytes out of shared memory (`src`) into private memory.
///
/// # Safety
/// `src` valid for reads and `dst` for writes of `len` bytes; `dst` is not
/// shared with another process and does not overlap `src`.
#[inline]
pub(crate) unsafe fn copy_from_shared(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's contract; alignment 1 makes no claim about it.
    unsafe { load_words(src, dst, len, 1) }
}

/// Copy `len` bytes of private memory (`src`) into shared memory (`dst`).
///
/// # Safety
/// As [`copy_from_shared`], the roles of the two pointers exchanged.
#[inline]
pub(crate) unsafe fn copy_to_shared(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's contract.
    unsafe { store_words(src, dst, len, 1) }
}

/// `len` bytes from shared `src` to private `dst`: the widest aligned
/// atomic loads (1, 2 or 4 bytes) up to an 8-aligned `src`, 8-byte loads,
/// then the widest aligned loads for the rest. `align` is a known
/// alignment of `src` (an 8-aligned `T` skips the edge steps at compile
/// time, so a `u64` is one load).
#[inline(always)]
unsafe fn load_words(src: *const u8, dst: *mut u8, len: usize, align: usize) {
    let mut i = 0;
    if align < 8 {
        while i < len && (src as usize + i) % 8 != 0 {
            // In each arm, [i, i + w) is inside both ranges and src + i is
            // w-aligned (checked); `dst` may be unaligned.
            let p = src as usize + i;
            if p % 4 == 0 && i + 4 <= len {
                // SAFETY: a 4-aligned word in range (see above).
                unsafe {
                    let w = (*src.add(i).cast::<AtomicU32>()).load(Relaxed);
                    dst.add(i).cast::<u32>().write_unaligned(w);
                }
                i += 4;
            } else if p % 2 == 0 && i + 2 <= len {
                // SAFETY: a 2-aligned half-word in range (see above).
                unsafe {
                    let w = (*src.add(i).cast::<AtomicU16>()).load(Relaxed);
                    dst.add(i).cast::<u16>().write_unaligned(w);
                }
                i += 2;
            } else {
                // SAFETY: a byte in range (see above).
                unsafe { *dst.add(i) = (*src.add(i).cast::<AtomicU8>()).load(Relaxed) };
                i += 1;
            }
        }
    }
    while i + 8 <= len {
        // SAFETY: src + i is 8-aligned (above, or `align >= 8`) and inside
        // the range; `dst` may be unaligned, hence write_unaligned.
        unsafe {
            let w = (*src.add(i).cast::<AtomicU64>()).load(Relaxed);
            dst.add(i).cast::<u64>().write_unaligned(w);
        }
        i += 8;
    }
    // From here src + i is 8-aligned: the steps below are aligned.
    if i + 4 <= len {
        // SAFETY: in range, 4-aligned.
        unsafe {
            let w = (*src.add(i).cast::<AtomicU32>()).load(Relaxed);
            dst.add(i).cast::<u32>().write_unaligned(w);
        }
        i += 4;
    }
    if i + 2 <= len {
        // SAFETY: in range, 2-aligned.
        unsafe {
            let w = (*src.add(i).cast::<AtomicU16>()).load(Relaxed);
            dst.add(i).cast::<u16>().write_unaligned(w);
        }
        i += 2;
    }
    if i < len {
        // SAFETY: i < len.
        unsafe { *dst.add(i) = (*src.add(i).cast::<AtomicU8>()).load(Relaxed) };
    }
}

/// `len` bytes from private `src` to shared `dst`, as [`load_words`] with
/// the atomic side on `dst`.
#[inline(always)]
unsafe fn store_words(src: *const u8, dst: *mut u8, len: usize, align: usize) {
    let mut i = 0;
    if align < 8 {
        while i < len && (dst as usize + i) % 8 != 0 {
            // In each arm, [i, i + w) is inside both ranges and dst + i is
            // w-aligned (checked); `src` may be unaligned.
            let p = dst as usize + i;
            if p % 4 == 0 && i + 4 <= len {
                // SAFETY: a 4-aligned word in range (see above).
                unsafe {
                    let w = src.add(i).cast::<u32>().read_unaligned();
                    (*dst.add(i).cast::<AtomicU32>()).store(w, Relaxed);
                }
                i += 4;
            } else if p % 2 == 0 && i + 2 <= len {
                // SAFETY: a 2-aligned half-word in range (see above).
                unsafe {
                    let w = src.add(i).cast::<u16>().read_unaligned();
                    (*dst.add(i).cast::<AtomicU16>()).store(w, Relaxed);
                }
                i += 2;
            } else {
                // SAFETY: a byte in range (see above).
                unsafe { (*dst.add(i).cast::<AtomicU8>()).store(*src.add(i), Relaxed) };
                i += 1;
            }
        }
    }
    while i + 8 <= len {
        // SAFETY: dst + i is 8-aligned and inside the range; `src` may be
        // unaligned, hence read_unaligned.
        unsafe {
            let w = src.add(i).cast::<u64>().read_unaligned();
            (*dst.add(i).cast::<AtomicU64>()).store(w, Relaxed);
        }
        i += 8;
    }
    if i + 4 <= len {
        // SAFETY: in range, 4-aligned (dst + i is 8-aligned here).
        unsafe {
            let w = src.add(i).cast::<u32>().read_unaligned();
            (*dst.add(i).cast::<AtomicU32>()).store(w, Relaxed);
        }
        i += 4;
    }
    if i + 2 <= len {
        // SAFETY: in range, 2-aligned.
        unsafe {
            let w = src.add(i).cast::<u16>().read_unaligned();
            (*dst.add(i).cast::<AtomicU16>()).store(w, Relaxed);
        }
        i += 2;
    }
    if i < len {
        // SAFETY: i < len.
        unsafe { (*dst.add(i).cast::<AtomicU8>()).store(*src.add(i), Relaxed) };
    }
}

/// For the benchmarks (benches/copy.rs): the atomic copy and, to compare,
/// a plain `memcpy` of the same bytes. Not part of the API.
#[doc(hidden)]
pub mod bench {
    /// `copy_from_shared` (the crate-private atomic copy) over two private
    /// buffers.
    pub fn atomic_copy(src: &[u8], dst: &mut [u8]) {
        let n = src.len().min(dst.len());
        // SAFETY: both ranges are in bounds and distinct (& and &mut).
        unsafe { super::copy_from_shared(src.as_ptr(), dst.as_mut_ptr(), n) }
    }

    /// `copy_to_shared` (the crate-private atomic copy) over two private
    /// buffers.
    pub fn atomic_store_copy(src: &[u8], dst: &mut [u8]) {
        let n = src.len().min(dst.len());
        // SAFETY: both ranges are in bounds and distinct (& and &mut).
        unsafe { super::copy_to_shared(src.as_ptr(), dst.as_mut_ptr(), n) }
    }

    /// `copy_from_slice`, for comparison.
    pub fn plain_copy(src: &[u8], dst: &mut [u8]) {
        let n = src.len().min(dst.len());
        dst[..n].copy_from_slice(&src[..n]);
    }
}

/// Copies of at least this many bytes are checked for 4 KiB aliasing.
#[cfg(not(shmqueue_loom))]
const ALIAS_CHECK_MIN: usize = 2048;
/// Chunk size of an aliased copy: below glibc's `rep movsb` threshold, so
/// each piece takes its vector loop.
#[cfg(not(shmqueue_loom))]
const ALIAS_CHUNK: usize = 1024;

/// `copy_nonoverlapping` of `len` bytes that avoids the 4 KiB-aliasing
/// trap of `rep movsb`.
///
/// glibc's `memcpy` copies a few KiB and more with `rep movsb` on CPUs with
/// fast short `rep movsb` (FSRM), and there that instruction is ~25x slower
/// when `(dst - src) mod 4096` is small but not 0 (measured on the project's
/// EPYC guest: 64 KiB in 20-26 µs instead of 1.2 µs; a vector loop is
/// unaffected). Whether a copy between a caller's buffer and a ring slot
/// falls there depends on where the allocator put the buffer and, for the
/// byte ring, on the record's position, so it is not the caller's to
/// avoid. Such copies are cut into pieces that take glibc's vector loop.
///
/// # Safety
/// As [`core::ptr::copy_nonoverlapping`] for `len` bytes.
#[cfg(not(shmqueue_loom))]
#[inline]
pub(crate) unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    let distance = (dst as usize).wrapping_sub(src as usize) & 4095;
    if len < ALIAS_CHECK_MIN || distance == 0 || distance >= 64 {
        // SAFETY: the caller's contract.
        unsafe { core::ptr::copy_nonoverlapping(src, dst, len) };
        return;
    }
    let mut done = 0;
    while done < len {
        let n = ALIAS_CHUNK.min(len - done);
        // SAFETY: `done + n <= len`, inside both ranges of the contract.
        unsafe { core::ptr::copy_nonoverlapping(src.add(done), dst.add(done), n) };
        done += n;
    }
}

#[cfg(all(test, not(shmqueue_loom)))]
mod aliasing_tests {
    use super::copy_bytes;

    /// The chunked path (aliased distances) and the plain one copy the same
    /// bytes, whatever the distance and length.
    #[test]
    fn copy_bytes_is_a_copy_at_every_aliasing_distance() {
        let src: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut dst = vec![0u8; 20_000];
        for len in [0, 1, 2047, 2048, 2049, 4096, 10_000] {
            for distance in (0..80).chain(4090..4100) {
                // Place the destination `distance` bytes (mod 4096) after the
                // source's position within its page.
                let s_off = 5;
                let want = (src.as_ptr() as usize + s_off + distance) & 4095;
                let d_off = (want + 4096 - (dst.as_ptr() as usize & 4095)) & 4095;
                dst.fill(0);
                // SAFETY: s_off + len and d_off + len are within the buffers
                // (5 + 10_000 and 4095 + 10_000 < 20_000), which are distinct.
                unsafe { copy_bytes(src.as_ptr().add(s_off), dst.as_mut_ptr().add(d_off), len) };
                assert_eq!(
                    &dst[d_off..d_off + len],
                    &src[s_off..s_off + len],
                    "len {len}, distance {distance}"
                );
                assert!(
                    dst[..d_off].iter().all(|&b| b == 0),
                    "wrote before the range"
                );
                assert!(
                    dst[d_off + len..].iter().all(|&b| b == 0),
                    "wrote past the range"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length 0..=300 at every alignment 0..8 of either side, both
    /// directions, against a plain copy; and past the word loop's range.
    #[test]
    fn atomic_copies_are_copies_at_every_length_and_alignment() {
        let src: Vec<u8> = (0..5000u32).map(|i| (i * 13 + i / 7) as u8).collect();
        for len in (0..=300).chain([1023, 1024, 1025, 2048, 4095, 4096]) {
            for s in 0..8 {
                for d in 0..8 {
                    let mut a = vec![0xAAu8; len + 16];
                    let mut b = vec![0x55u8; len + 16];
                    // SAFETY: in bounds of the buffers, which do not overlap.
                    unsafe {
                        copy_from_shared(src.as_ptr().add(s), a.as_mut_ptr().add(d), len);
                        copy_to_shared(src.as_ptr().add(s), b.as_mut_ptr().add(d), len);
                    }
                    assert_eq!(
                        &a[d..d + len],
                        &src[s..s + len],
                        "from, len {len} s {s} d {d}"
                    );
                    assert_eq!(
                        &b[d..d + len],
                        &src[s..s + len],
                        "to, len {len} s {s} d {d}"
                    );
                    assert!(a[..d].iter().all(|&x| x == 0xAA), "wrote before the range");
                    assert!(
                        a[d + len..].iter().all(|&x| x == 0xAA),
                        "wrote past the range"
                    );
                    assert!(
                        b[d + len..].iter().all(|&x| x == 0x55),
                        "wrote past the range"
                    );
                }
            }
        }
    }

    /// Small types at every slot of an array, so 4-aligned `u32`s that are
    /// not 8-aligned, and 2-aligned `u16`s, take their one-access paths.
    #[test]
    fn small_typed_values_at_every_slot_round_trip() {
        let mut words = [0u32; 7];
        for (k, w) in words.iter_mut().enumerate() {
            // SAFETY: an element of a local array.
            unsafe { store(w, 0xA0B0_C0D0 + k as u32) };
        }
        for (k, w) in words.iter().enumerate() {
            // SAFETY: as above.
            assert_eq!(unsafe { load(w) }, 0xA0B0_C0D0 + k as u32);
        }
        let mut halves = [0u16; 9];
        for (k, h) in halves.iter_mut().enumerate() {
            // SAFETY: an element of a local array.
            unsafe { store(h, 0xBEE0 + k as u16) };
        }
        for (k, h) in halves.iter().enumerate() {
            // SAFETY: as above.
            assert_eq!(unsafe { load(h) }, 0xBEE0 + k as u16);
        }
    }

    #[test]
    fn typed_loads_and_stores_round_trip() {
        #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        #[repr(C)]
        struct Odd {
            a: u16,
            b: [u8; 5],
            c: u8,
        }
        let mut slot = 0u64;
        // SAFETY: a local u64, aligned and in bounds.
        unsafe { store(&mut slot, 0x0102_0304_0506_0708u64) };
        // SAFETY: as above.
        assert_eq!(unsafe { load(&slot) }, 0x0102_0304_0506_0708u64);
        let v = Odd {
            a: 7,
            b: [1, 2, 3, 4, 5],
            c: 9,
        };
        let mut o = Odd {
            a: 0,
            b: [0; 5],
            c: 0,
        };
        // SAFETY: a local Odd.
        unsafe { store(&mut o, v) };
        // SAFETY: as above.
        assert_eq!(unsafe { load(&o) }, v);
        let big = [0x5A5A_0102_0304_0506u64; 32];
        let mut back = [0u64; 32];
        // SAFETY: local arrays.
        unsafe { store(&mut back, big) };
        assert_eq!(back, big);
    }
}
