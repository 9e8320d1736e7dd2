//! The POSIX message-queue peer (`mq_open`), through libc.
//!
//! The kernel caps a queue's message size at `/proc/sys/fs/mqueue/msgsize_max`
//! (8192 by default) and its depth at `msg_max` (10) for unprivileged users:
//! payloads above the cap are skipped and the report says so.

use super::payload::{get_bytes, set_bytes};
use super::peers::Duplex;
use super::sys::cstring;
use crate::Res;

/// The kernel's limits for unprivileged queues.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub msgsize_max: usize,
    pub msg_max: usize,
}

fn read_limit(file: &str, default: usize) -> usize {
    std::fs::read_to_string(format!("/proc/sys/fs/mqueue/{file}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

pub fn limits() -> Limits {
    Limits {
        msgsize_max: read_limit("msgsize_max", 8192),
        msg_max: read_limit("msg_max", 10),
    }
}

/// An open queue descriptor, closed on drop.
pub struct Mqd(libc::mqd_t);

impl Drop for Mqd {
    fn drop(&mut self) {
        // SAFETY: a descriptor returned by mq_open, closed once.
        unsafe {
            libc::mq_close(self.0);
        }
    }
}

/// Create `name` exclusively for messages of `size` bytes. The caller
/// registers a `Cleanup::Mq`.
pub fn create(name: &str, size: usize) -> Res<Mqd> {
    let l = limits();
    if size > l.msgsize_max {
        return Err(format!("mq: {size} B exceeds msgsize_max {}", l.msgsize_max).into());
    }
    let c = cstring(name)?;
    // SAFETY: mq_attr is plain data; zero is a valid starting value.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_maxmsg = l.msg_max.min(10) as libc::c_long;
    attr.mq_msgsize = size as libc::c_long;
    // SAFETY: `c` is a NUL-terminated name; with O_CREAT mq_open reads a
    // mode (promoted to unsigned int) and a pointer to a valid mq_attr.
    let d = unsafe {
        libc::mq_open(
            c.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
            0o600 as libc::c_uint,
            &mut attr as *mut libc::mq_attr,
        )
    };
    if d == -1 {
        return Err(format!("mq_open {name}: {}", std::io::Error::last_os_error()).into());
    }
    Ok(Mqd(d))
}

/// Open an existing queue.
pub fn open(name: &str) -> Res<Mqd> {
    let c = cstring(name)?;
    // SAFETY: `c` is a NUL-terminated name; without O_CREAT no more
    // arguments are read.
    let d = unsafe { libc::mq_open(c.as_ptr(), libc::O_RDWR) };
    if d == -1 {
        return Err(format!("mq_open {name}: {}", std::io::Error::last_os_error()).into());
    }
    Ok(Mqd(d))
}

pub fn unlink(name: &str) -> Result<(), String> {
    let c = CStringOrErr::new(name)?;
    // SAFETY: a NUL-terminated name.
    if unsafe { libc::mq_unlink(c.0.as_ptr()) } == -1 {
        return Err(format!(
            "mq_unlink {name}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

struct CStringOrErr(std::ffi::CString);
impl CStringOrErr {
    fn new(s: &str) -> Result<Self, String> {
        std::ffi::CString::new(s)
            .map(CStringOrErr)
            .map_err(|e| e.to_string())
    }
}

/// One side: sends on `tx`, receives on `rx`.
pub struct MqDuplex {
    pub tx: Mqd,
    pub rx: Mqd,
    pub buf: Vec<u8>,
}

impl Duplex for MqDuplex {
    fn send(&mut self, v: u64) -> Res {
        set_bytes(&mut self.buf, v);
        loop {
            // SAFETY: buf is valid for buf.len() bytes, which is the queue's
            // message size.
            let r =
                unsafe { libc::mq_send(self.tx.0, self.buf.as_ptr().cast(), self.buf.len(), 0) };
            if r == 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("mq_send: {e}").into());
            }
        }
    }

    fn recv(&mut self) -> Res<u64> {
        loop {
            // SAFETY: buf is writable for buf.len() bytes, the queue's
            // message size (mq_receive requires at least that); the priority
            // pointer may be null.
            let r = unsafe {
                libc::mq_receive(
                    self.rx.0,
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    std::ptr::null_mut(),
                )
            };
            if r >= 8 {
                return Ok(get_bytes(&self.buf));
            }
            let e = std::io::Error::last_os_error();
            if r >= 0 {
                return Err(format!("mq_receive: short message of {r} bytes").into());
            }
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("mq_receive: {e}").into());
            }
        }
    }
}
