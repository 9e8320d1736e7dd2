//! Advice and locking for a live mapping (`madvise`, `mlock`); the mapping
//! itself (`mmap`, `munmap`, `MAP_POPULATE`) is memmap2's, in `segment.rs`.

use memmap2::MmapRaw;
use rustix::io::Errno;
use rustix::mm::Advice;

use super::io;
use crate::Error;

/// Populate the whole advised mapping with write faults, which allocate
/// (huge) pages as `MADV_HUGEPAGE` allows and report a shortage as an error
/// rather than `SIGBUS` (`MADV_POPULATE_WRITE`, Linux 5.14).
pub(crate) fn populate_write(
    map: &MmapRaw,
    name: &str,
    available: Option<u64>,
) -> Result<(), Error> {
    // SAFETY: the range is exactly our own live mapping; populating only
    // faults its pages in (as a write of nothing would), it changes no data.
    let r = unsafe {
        rustix::mm::madvise(
            map.as_mut_ptr().cast(),
            map.len(),
            Advice::LinuxPopulateWrite,
        )
    };
    match r {
        Ok(()) => Ok(()),
        Err(Errno::NOMEM) | Err(Errno::FAULT) => Err(Error::NoSpace {
            name: name.into(),
            needed: map.len() as u64,
            available,
        }),
        Err(Errno::INVAL) => Err(Error::HugePagesUnavailable {
            detail: "this kernel lacks MADV_POPULATE_WRITE (Linux 5.14), which reserving an \
                     advised huge-page segment needs; mount /dev/shm with huge=within_size"
                .into(),
        }),
        Err(e) => Err(io("madvise(MADV_POPULATE_WRITE)", e)),
    }
}

/// `MADV_HUGEPAGE` on the whole mapping.
pub(crate) fn madvise_hugepage(map: &MmapRaw) -> Result<(), Error> {
    // SAFETY: the range is exactly our own live mapping; MADV_HUGEPAGE
    // changes only how future faults in it are served.
    let r =
        unsafe { rustix::mm::madvise(map.as_mut_ptr().cast(), map.len(), Advice::LinuxHugepage) };
    match r {
        Ok(()) => Ok(()),
        Err(Errno::INVAL) => Err(Error::HugePagesUnavailable {
            detail: "madvise(MADV_HUGEPAGE) is refused: this kernel has no transparent \
                     huge pages"
                .into(),
        }),
        Err(e) => Err(io("madvise(MADV_HUGEPAGE)", e)),
    }
}

/// `mlock` the whole mapping; the lock goes with the mapping (`munmap`).
pub(crate) fn mlock(map: &MmapRaw) -> Result<(), std::io::Error> {
    // SAFETY: the range is exactly our own live mapping; mlock faults its
    // pages in and pins them, it changes no data.
    unsafe { rustix::mm::mlock(map.as_mut_ptr().cast(), map.len()) }.map_err(Into::into)
}

/// The soft `RLIMIT_MEMLOCK`, `None` if unlimited or unknown.
pub(crate) fn memlock_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Memlock).current
}
