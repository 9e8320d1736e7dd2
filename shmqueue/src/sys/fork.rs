//! Being told about `fork()`: a `pthread_atfork` child handler (glibc runs
//! it in the child of every `fork()`, not for `posix_spawn`/`vfork`+`exec`).

/// Run `handler` in the child after every `fork()` of this process. It must
/// be async-signal-safe (the child of a multi-threaded process may run only
/// such code until it `exec`s). `Err` carries the errno (ENOMEM).
pub(crate) fn on_fork_in_child(handler: extern "C" fn()) -> Result<(), i32> {
    // SAFETY: pthread_atfork only records the function pointers; `handler`
    // is a plain `extern "C" fn()` that lives as long as the program.
    match unsafe { libc::pthread_atfork(None, None, Some(handler)) } {
        0 => Ok(()),
        e => Err(e),
    }
}
