//! The committed C header is what cbindgen generates from the sources now,
//! and it compiles cleanly as C11 and as C++.

use std::path::{Path, PathBuf};
use std::process::Command;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate() -> String {
    let dir = crate_dir();
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("utf-8 header")
}

#[test]
fn committed_header_is_current() {
    let path = crate_dir().join("include/shmqueue.h");
    let fresh = generate();
    if std::env::var_os("SHMQ_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write the header");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale: the C API changed. Regenerate it with\n  \
         SHMQ_BLESS=1 cargo test -p shmqueue-ffi --test header\nand commit it.",
        path.display()
    );
}

fn compile(compiler: &str, args: &[&str], file: &Path) {
    let include = crate_dir().join("include");
    let out = Command::new(compiler)
        .args(args)
        .arg("-I")
        .arg(&include)
        .arg("-fsyntax-only")
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("run {compiler} (is a C compiler installed?): {e}"));
    assert!(
        out.status.success(),
        "{compiler} {args:?} rejected the header:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn header_compiles_as_c11() {
    let f = crate_dir().join("tests/c/header_check.c");
    compile(
        "cc",
        &["-Wall", "-Wextra", "-Werror", "-pedantic", "-std=c11"],
        &f,
    );
}

#[test]
fn header_compiles_as_cpp() {
    let f = crate_dir().join("tests/c/header_check.c");
    compile(
        "c++",
        &["-Wall", "-Wextra", "-Werror", "-x", "c++", "-std=c++11"],
        &f,
    );
}
