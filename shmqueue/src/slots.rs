//! Where the payload lives: slot addresses and copies for the three slot
//! layouts (SPSC typed slots, MPMC slots of a sequence word and a value,
//! byte-ring bytes), at indices the algorithms have bounds-checked.

use std::ptr::NonNull;

use bytemuck::Pod;

#[cfg(not(shmqueue_loom))]
use crate::copy::copy_bytes;
use crate::registry::Attachment;

impl Attachment {
    /// Slots in the ring (the validated geometry's `buffer_size`).
    #[inline]
    pub(crate) fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    /// Byte ring: the start of the data area (`buffer_size` bytes, 128-aligned
    /// in the mapping), for the raw pointers the zero-copy API hands out
    /// (`bytes.rs`); copies go through [`Attachment::write_bytes`] and
    /// [`Attachment::read_bytes`].
    #[cfg(not(shmqueue_loom))]
    #[inline]
    pub(crate) fn data_ptr(&self) -> NonNull<u8> {
        debug_assert_eq!(self.ring.geom.kind, crate::header::QueueKind::Bytes);
        self.slots
    }

    /// Byte ring: copy `src` into the data area from byte `at`.
    ///
    /// # Safety
    /// The ring's kind is Bytes (one-byte slots); `at + src.len() <=
    /// buffer_size`; and the queue protocol gives the caller those bytes (no
    /// endpoint of this queue reads or writes them concurrently).
    #[inline]
    pub(crate) unsafe fn write_bytes(&self, at: usize, src: &[u8]) {
        debug_assert!(at + src.len() <= self.buffer_size);
        #[cfg(shmqueue_loom)]
        for (k, &b) in src.iter().enumerate() {
            self.ring.heap.slots[at + k].with_mut(|p| {
                // SAFETY: loom's cell hands out its Vec of slot_stride = 1
                // byte; exclusive access is the caller's contract, which loom
                // checks.
                unsafe { (&mut *p)[0] = b }
            });
        }
        #[cfg(not(shmqueue_loom))]
        // SAFETY: the range is inside the slot array (contract; one-byte
        // slots, so byte offsets are slot indices), which lies in the mapping
        // (checked geometry); `src` is the caller's own memory, so the two
        // cannot overlap; a raw copy, never a `&mut [u8]` over shared memory.
        unsafe {
            copy_bytes(src.as_ptr(), self.slots.as_ptr().add(at), src.len())
        }
    }

    /// Byte ring: copy `len` bytes of the data area from byte `at` to `dst`.
    ///
    /// # Safety
    /// As [`Attachment::write_bytes`], with the bytes published to the
    /// caller; `dst` is valid for `len` bytes of writes and is process-local
    /// memory (not in the mapping).
    #[inline]
    pub(crate) unsafe fn read_bytes(&self, at: usize, dst: *mut u8, len: usize) {
        debug_assert!(at + len <= self.buffer_size);
        #[cfg(shmqueue_loom)]
        for k in 0..len {
            self.ring.heap.slots[at + k].with(|p| {
                // SAFETY: as in write_bytes; `dst + k` is in the caller's
                // buffer (contract).
                unsafe { dst.add(k).write((&*p)[0]) }
            });
        }
        #[cfg(not(shmqueue_loom))]
        // SAFETY: as write_bytes, in the other direction; any bytes are
        // valid u8s.
        unsafe {
            copy_bytes(self.slots.as_ptr().add(at), dst, len)
        }
    }

    /// MPMC and broadcast: the sequence word of slot `i` (`i <
    /// buffer_size`, checked).
    #[inline]
    pub(crate) fn seq(&self, i: usize) -> &crate::sync::AtomicU64 {
        assert!(i < self.buffer_size, "slot index out of range");
        debug_assert!(matches!(
            self.ring.geom.kind,
            crate::header::QueueKind::Mpmc | crate::header::QueueKind::Broadcast
        ));
        #[cfg(shmqueue_loom)]
        return &self.ring.heap.seqs[i];
        #[cfg(not(shmqueue_loom))]
        // SAFETY: only mpmc.rs and broadcast/ call this, on rings whose
        // validated kind is MPMC or broadcast, whose geometry starts every slot with an 8-byte sequence word
        // (slot stride >= 8 and a multiple of 8: exactly 8 for a zero-sized
        // `T`, as in `Mpmc<()>`). Slot i starts i * stride
        // bytes into the slot array, which holds buffer_size slots inside the
        // mapping (checked geometry); the array start is 128-aligned; the
        // word is an atomic, valid for any bytes.
        unsafe {
            &*(self.slots.as_ptr().add(i * self.stride) as *const crate::sync::AtomicU64)
        }
    }

    /// MPMC: copy `value` into slot `i`'s value.
    ///
    /// # Safety
    /// `i < buffer_size`; `T` has the geometry's element size and alignment;
    /// the caller owns the slot by the sequence protocol (it won the position
    /// and has not yet published it).
    #[inline]
    pub(crate) unsafe fn write_value<T: Pod>(&self, i: usize, value: T) {
        debug_assert!(i < self.buffer_size);
        #[cfg(shmqueue_loom)]
        return self.ring.heap.slots[i].with_mut(|p| {
            // SAFETY: loom's cell hands out its Vec; stride >= size_of::<T>().
            unsafe { (*p).as_mut_ptr().cast::<T>().write_unaligned(value) }
        });
        #[cfg(not(shmqueue_loom))]
        // SAFETY: in bounds by the contract and the checked geometry
        // (value_offset + size <= stride); aligned because the array start,
        // the stride and value_offset are multiples of the alignment; a
        // copy through a raw pointer, never a `&mut T` over shared memory.
        unsafe {
            crate::copy::store_value(
                self.slots
                    .as_ptr()
                    .add(i * self.stride + self.value_offset)
                    .cast::<T>(),
                value,
            )
        }
    }

    /// MPMC: copy slot `i`'s value out.
    ///
    /// # Safety
    /// As [`Attachment::write_value`], with the slot published to the caller.
    #[inline]
    pub(crate) unsafe fn read_value<T: Pod>(&self, i: usize) -> T {
        debug_assert!(i < self.buffer_size);
        #[cfg(shmqueue_loom)]
        return self.ring.heap.slots[i].with(|p| {
            // SAFETY: as in write_value; any bytes are a valid `T: Pod`.
            unsafe { (*p).as_ptr().cast::<T>().read_unaligned() }
        });
        #[cfg(not(shmqueue_loom))]
        // SAFETY: as in write_value; any bytes are a valid `T: Pod`.
        unsafe {
            crate::copy::load_value(
                self.slots
                    .as_ptr()
                    .add(i * self.stride + self.value_offset)
                    .cast::<T>(),
            )
        }
    }

    /// Broadcast: copy `value` into slot `i`'s value with relaxed atomic
    /// word stores, whatever its size: subscribers may be copying the same
    /// slot out at the same time (the seqlock tells them afterwards), and
    /// only atomic accesses make that race defined.
    ///
    /// # Safety
    /// The ring's kind is broadcast; `i < buffer_size`; `T` has the
    /// geometry's element size and alignment; the caller is the publisher
    /// (the only writer of values).
    #[inline]
    pub(crate) unsafe fn store_racy_value<T: Pod>(&self, i: usize, value: T) {
        debug_assert!(i < self.buffer_size);
        #[cfg(shmqueue_loom)]
        {
            let h = &self.ring.heap;
            let bytes = bytemuck::bytes_of(&value);
            for (k, chunk) in bytes.chunks(8).enumerate() {
                let mut w = [0u8; 8];
                w[..chunk.len()].copy_from_slice(chunk);
                h.words[i * h.words_per_slot + k]
                    .store(u64::from_le_bytes(w), crate::sync::Ordering::Relaxed);
            }
        }
        #[cfg(not(shmqueue_loom))]
        // SAFETY: in bounds by the contract and the checked geometry
        // (value_offset + size <= stride); aligned because the array start,
        // the stride and value_offset are multiples of the alignment; atomic
        // word stores, so a concurrent reader's loads are not a data race.
        unsafe {
            crate::copy::store(
                self.slots
                    .as_ptr()
                    .add(i * self.stride + self.value_offset)
                    .cast::<T>(),
                value,
            )
        }
    }

    /// Broadcast: copy slot `i`'s value out with relaxed atomic word loads.
    /// The result may be torn by a concurrent overwrite; the caller
    /// validates it with the slot's sequence word before using it.
    ///
    /// # Safety
    /// The ring's kind is broadcast; `i < buffer_size`; `T` has the
    /// geometry's element size and alignment.
    #[inline]
    pub(crate) unsafe fn load_racy_value<T: Pod>(&self, i: usize) -> T {
        debug_assert!(i < self.buffer_size);
        #[cfg(shmqueue_loom)]
        {
            let h = &self.ring.heap;
            let mut out = T::zeroed();
            let bytes = bytemuck::bytes_of_mut(&mut out);
            for (k, chunk) in bytes.chunks_mut(8).enumerate() {
                let w = h.words[i * h.words_per_slot + k]
                    .load(crate::sync::Ordering::Relaxed)
                    .to_le_bytes();
                let n = chunk.len();
                chunk.copy_from_slice(&w[..n]);
            }
            out
        }
        #[cfg(not(shmqueue_loom))]
        // SAFETY: as store_racy_value; atomic word loads, and any bytes are
        // a valid `T: Pod`, so even a torn value is a valid `T`.
        unsafe {
            crate::copy::load(
                self.slots
                    .as_ptr()
                    .add(i * self.stride + self.value_offset)
                    .cast::<T>(),
            )
        }
    }

    /// Address of slot `i` as a `T`.
    ///
    /// # Safety
    /// `i < buffer_size`, and `size_of::<T>()`/`align_of::<T>()` equal the
    /// geometry's element size/alignment.
    #[cfg(not(shmqueue_loom))]
    #[inline]
    unsafe fn slot<T: Pod>(&self, i: usize) -> *mut T {
        debug_assert!(i < self.buffer_size);
        debug_assert_eq!(core::mem::size_of::<T>(), self.ring.geom.slot_stride);
        debug_assert_eq!(core::mem::align_of::<T>(), self.ring.geom.elem_align);
        // SAFETY: the slot stride is the element size, so slot `i` starts
        // `i` elements past `slots`; i < buffer_size and the array's
        // buffer_size * slot_stride bytes lie inside the mapping (checked
        // arithmetic in Geometry::compute, validated against the file size).
        unsafe { self.slots.as_ptr().cast::<T>().add(i) }
    }

    /// Address of slot `i` as a `T`, for the SPSC windows that hand raw
    /// pointers to their callers (never references: the memory is shared
    /// with another process).
    ///
    /// # Safety
    /// `i < buffer_size`, and `size_of::<T>()`/`align_of::<T>()` equal the
    /// geometry's element size/alignment. Using the pointer is subject to
    /// [`Attachment::write_slot`]'s (or [`Attachment::read_slot`]'s)
    /// ownership contract for as long as it is used.
    #[cfg(not(shmqueue_loom))]
    #[inline]
    pub(crate) unsafe fn slot_ptr<T: Pod>(&self, i: usize) -> *mut T {
        // SAFETY: the caller's contract is `slot`'s.
        unsafe { self.slot::<T>(i) }
    }

    /// Copy `value` into slot `i`.
    ///
    /// # Safety
    /// `i < buffer_size`; `size_of::<T>()`/`align_of::<T>()` equal the
    /// geometry's element size/alignment; and the queue protocol gives the
    /// caller exclusive ownership of the slot (no endpoint of this queue reads
    /// or writes it concurrently).
    #[inline]
    pub(crate) unsafe fn write_slot<T: Pod>(&self, i: usize, value: T) {
        #[cfg(shmqueue_loom)]
        return self.ring.heap.slots[i].with_mut(|p| {
            // SAFETY: loom's cell hands out its Vec; stride = size_of::<T>()
            // bytes, written unaligned (a Vec<u8> is only byte-aligned).
            unsafe { (*p).as_mut_ptr().cast::<T>().write_unaligned(value) }
        });
        #[cfg(not(shmqueue_loom))]
        // SAFETY: in bounds by the contract; aligned because slots_offset
        // and slot_stride are multiples of the alignment and the base is
        // page-aligned; a copy through a raw pointer, never a `&mut T` over
        // shared memory.
        unsafe {
            crate::copy::store_value(self.slot::<T>(i), value)
        }
    }

    /// Copy slot `i` out.
    ///
    /// # Safety
    /// As for [`Attachment::write_slot`], with the slot published to the
    /// caller.
    #[inline]
    pub(crate) unsafe fn read_slot<T: Pod>(&self, i: usize) -> T {
        #[cfg(shmqueue_loom)]
        return self.ring.heap.slots[i].with(|p| {
            // SAFETY: as in write_slot; any bytes are a valid `T: Pod`.
            unsafe { (*p).as_ptr().cast::<T>().read_unaligned() }
        });
        #[cfg(not(shmqueue_loom))]
        // SAFETY: in bounds and aligned as above; `T: Pod` is valid for any
        // bytes, so even a hostile peer's bytes make a valid `T`.
        unsafe {
            crate::copy::load_value(self.slot::<T>(i))
        }
    }

    /// Copy `items` into the consecutive slots `i..i + items.len()`.
    ///
    /// # Safety
    /// `i + items.len() <= buffer_size`, and as [`Attachment::write_slot`]
    /// for every slot in the range.
    #[inline]
    pub(crate) unsafe fn write_slots<T: Pod>(&self, i: usize, items: &[T]) {
        debug_assert!(i + items.len() <= self.buffer_size);
        #[cfg(shmqueue_loom)]
        for (k, v) in items.iter().enumerate() {
            // SAFETY: the caller's contract, slot by slot.
            unsafe { self.write_slot(i + k, *v) };
        }
        #[cfg(not(shmqueue_loom))]
        // SAFETY: the range is inside the slot array (contract), aligned as
        // in write_slot; the source is the caller's own slice, so the two
        // cannot overlap; a raw copy, never a `&mut [T]` over shared memory.
        unsafe {
            copy_bytes(
                items.as_ptr().cast(),
                self.slot::<T>(i).cast(),
                core::mem::size_of_val(items),
            )
        }
    }

    /// Write `f(k)` into slot `i + k` for every `k` in `0..n`, in order.
    ///
    /// The slot address is computed once: writes through a `*mut T` could
    /// alias `self`'s fields as far as the compiler knows, so going through
    /// [`Attachment::write_slot`] per item would reload the base each time
    /// and keep the loop from being vectorised.
    ///
    /// # Safety
    /// `i + n <= buffer_size`, and as [`Attachment::write_slot`] for every
    /// slot in the range.
    #[inline]
    pub(crate) unsafe fn fill_slots<T: Pod>(
        &self,
        i: usize,
        n: usize,
        mut f: impl FnMut(usize) -> T,
    ) {
        debug_assert!(i + n <= self.buffer_size);
        #[cfg(shmqueue_loom)]
        for k in 0..n {
            // SAFETY: the caller's contract, slot by slot.
            unsafe { self.write_slot(i + k, f(k)) };
        }
        #[cfg(not(shmqueue_loom))]
        {
            if n == 0 {
                return;
            }
            // SAFETY: i < buffer_size (n > 0 and the contract); T matches
            // the geometry.
            let base = unsafe { self.slot::<T>(i) };
            for k in 0..n {
                // SAFETY: i + k < buffer_size: inside the slot array, aligned
                // as in write_slot, owned by the caller; a raw write, never a
                // `&mut T` over shared memory.
                unsafe { base.add(k).write(f(k)) };
            }
        }
    }

    /// Copy the consecutive slots `i..i + out.len()` into `out`.
    ///
    /// # Safety
    /// `i + out.len() <= buffer_size`, and as [`Attachment::read_slot`] for
    /// every slot in the range.
    #[inline]
    pub(crate) unsafe fn read_slots<T: Pod>(&self, i: usize, out: &mut [T]) {
        debug_assert!(i + out.len() <= self.buffer_size);
        #[cfg(shmqueue_loom)]
        for (k, v) in out.iter_mut().enumerate() {
            // SAFETY: the caller's contract, slot by slot.
            *v = unsafe { self.read_slot(i + k) };
        }
        #[cfg(not(shmqueue_loom))]
        // SAFETY: as write_slots, in the other direction; any bytes are a
        // valid `T: Pod`.
        unsafe {
            copy_bytes(
                self.slot::<T>(i).cast_const().cast(),
                out.as_mut_ptr().cast(),
                core::mem::size_of_val(out),
            )
        }
    }
}
