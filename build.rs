//! Deliberate mutations for the loom suite: `SHMQ_MUTATION=<name>` compiles
//! one known bug into the library (see loom-tests/README.md), so CI can show
//! that the model checker rejects it. Selecting it through the environment
//! (not RUSTFLAGS) rebuilds only this crate, not every dependency.
fn main() {
    println!("cargo:rerun-if-env-changed=SHMQ_MUTATION");
    if let Ok(m) = std::env::var("SHMQ_MUTATION") {
        if !m.is_empty() {
            println!("cargo:rustc-cfg=shmq_mutation=\"{m}\"");
        }
    }
}
