//! The message every peer carries: `N` bytes whose first eight hold a
//! sequence number or a CLOCK_MONOTONIC stamp, the rest zeros.

use bytemuck::{Pod, Zeroable};

/// The payload sizes the typed rings are compiled for (bytes).
pub const SIZES: [usize; 5] = [8, 64, 512, 4096, 65536];

/// An `N`-byte message, 8-aligned like a real message struct with a `u64`
/// in it (and like the `u64` items of the criterion benches). bytemuck
/// implements `Pod` for `[u8; N]` only for a fixed list of lengths without
/// its `min_const_generics` feature, which this binary does not switch on
/// for the library; a one-field wrapper does.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub struct Msg<const N: usize>(pub [u8; N]);

// SAFETY: all-zero bytes are a valid `[u8; N]`.
unsafe impl<const N: usize> Zeroable for Msg<N> {}
// SAFETY: `[u8; N]` has no pointers and accepts every bit pattern; with
// `N % 8 == 0` (checked in `Msg::NO_PADDING`, evaluated by every
// constructor) the 8-alignment adds no padding; it is `Copy` and `'static`.
unsafe impl<const N: usize> Pod for Msg<N> {}

impl<const N: usize> Msg<N> {
    const NO_PADDING: () = assert!(N % 8 == 0 && N >= 8, "payload sizes are multiples of 8");

    /// An all-zero message.
    pub fn zeroed() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::NO_PADDING;
        Msg([0; N])
    }

    #[inline(always)]
    pub fn set(&mut self, v: u64) {
        self.0[..8].copy_from_slice(&v.to_ne_bytes());
    }

    #[inline(always)]
    pub fn get(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_ne_bytes(b)
    }
}

/// Write `v` into the first eight bytes of a byte buffer.
#[inline(always)]
pub fn set_bytes(buf: &mut [u8], v: u64) {
    buf[..8].copy_from_slice(&v.to_ne_bytes());
}

/// Read the first eight bytes of a byte buffer.
#[inline(always)]
pub fn get_bytes(buf: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[..8]);
    u64::from_ne_bytes(b)
}

/// Call `$body` with `const $n: usize` bound to the runtime size `$size`
/// (one of [`SIZES`]); `$other` otherwise.
macro_rules! with_size {
    ($size:expr, $n:ident => $body:expr, _ => $other:expr) => {
        match $size {
            8 => {
                const $n: usize = 8;
                $body
            }
            64 => {
                const $n: usize = 64;
                $body
            }
            512 => {
                const $n: usize = 512;
                $body
            }
            4096 => {
                const $n: usize = 4096;
                $body
            }
            65536 => {
                const $n: usize = 65536;
                $body
            }
            _ => $other,
        }
    };
}
pub(crate) use with_size;
