//! What relaxed-atomic word copies (`shmqueue::copy`, used for payload in
//! shared memory) cost against a plain `memcpy` of the same bytes, in one
//! run, interleaved round by round: `cargo bench --bench copy`.
//! Both buffers are private and cache-hot: this isolates the copy loop.

use std::hint::black_box;
use std::time::Instant;

use shmqueue::copy::bench::{atomic_copy, atomic_store_copy, plain_copy};

const SIZES: [usize; 5] = [8, 64, 512, 4096, 65536];
const ROUNDS: usize = 15;

fn time(f: fn(&[u8], &mut [u8]), src: &[u8], dst: &mut [u8], reps: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..reps {
        f(black_box(src), black_box(&mut *dst));
    }
    t.elapsed().as_nanos() as f64 / reps as f64
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let rounds = if smoke { 1 } else { ROUNDS };
    println!("size      plain ns   load ns   store ns   load/plain [p25, p75]   store/plain");
    for size in SIZES {
        let src = vec![7u8; size];
        let mut dst = vec![0u8; size];
        let reps = if smoke {
            10
        } else {
            (50_000_000 / size).clamp(1000, 2_000_000)
        };
        let (mut p, mut a, mut st, mut r, mut rs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let tp = time(plain_copy, &src, &mut dst, reps);
            let ta = time(atomic_copy, &src, &mut dst, reps);
            let ts = time(atomic_store_copy, &src, &mut dst, reps);
            p.push(tp);
            a.push(ta);
            st.push(ts);
            r.push(ta / tp);
            rs.push(ts / tp);
        }
        for v in [&mut p, &mut a, &mut st, &mut r, &mut rs] {
            v.sort_by(f64::total_cmp);
        }
        let q = |v: &[f64], f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
        println!(
            "{size:>6} {:>10.1} {:>9.1} {:>10.1}   {:.2} [{:.2}, {:.2}]        {:.2}",
            q(&p, 0.5),
            q(&a, 0.5),
            q(&st, 0.5),
            q(&r, 0.5),
            q(&r, 0.25),
            q(&r, 0.75),
            q(&rs, 0.5)
        );
    }
}
