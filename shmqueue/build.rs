//! Deliberate mutations for the loom suite: `SHMQ_MUTATION=<name>` compiles
//! one known bug into the library (see loom-tests/README.md), so CI can show
//! that the model checker rejects it. Selecting it through the environment
//! (not RUSTFLAGS) rebuilds only this crate, not every dependency.
//!
//! A mutation exists only in a model-checking build (`--cfg shmqueue_loom`):
//! a normal build, a downstream user's included, ignores the variable, so a
//! stray `SHMQ_MUTATION` in someone's environment can never compile a known
//! race into code that runs on real shared memory.
fn main() {
    println!("cargo:rerun-if-env-changed=SHMQ_MUTATION");
    // Cargo passes the cfgs of RUSTFLAGS to build scripts as CARGO_CFG_*.
    let model_checking = std::env::var_os("CARGO_CFG_SHMQUEUE_LOOM").is_some();
    if let Ok(m) = std::env::var("SHMQ_MUTATION") {
        if !m.is_empty() && model_checking {
            println!("cargo:rustc-cfg=shmqueue_mutation=\"{m}\"");
        }
    }
}
