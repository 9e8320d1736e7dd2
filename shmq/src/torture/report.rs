//! The summary printed at the end of a run.

use std::time::Duration;

use super::audit::*;
use super::*;

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(super) fn print_summary(s: &Summary, a: &TortureArgs) {
    let k = s.kind;
    let points: Vec<String> = s
        .points
        .pairs()
        .iter()
        .map(|(n, c)| format!("{n} {c}"))
        .collect();
    println!(
        "{k}: {} iterations in {:.1} s: {} producer and {} consumer kills ({}); {} retirements",
        s.iterations,
        s.elapsed.as_secs_f64(),
        s.kills_producer,
        s.kills_consumer,
        points.join(", "),
        s.retirements
    );
    println!(
        "{k}: items: {} pushed and confirmed, {} recorded by consumers ({} of them unconfirmed: \
         in flight at a producer's kill), {} by the final drain",
        s.pushed, s.moved, s.in_flight_delivered, s.drained
    );
    let window = match k {
        "spsc" => format!("1 item each, or up to {} in batch mode", a.max_batch.max(1)),
        _ => "1 item each".to_owned(),
    };
    let gaps = match s.loss_gaps {
        Some(g) => format!(
            ", at {g} boundaries between consumer records, each within the windows of the \
             consumers killed there"
        ),
        None => String::new(),
    };
    println!(
        "{k}: lost {} (bound {}: the {} consumers killed inside a pop or before recording \
         it, {window}){gaps}; duplicates {}, order violations {}, phantoms {}",
        s.lost,
        s.loss_bound,
        s.exposed_consumer_kills,
        s.duplicates,
        s.order_violations,
        s.phantoms
    );
    let mean = if s.recoveries > 0 {
        ms(s.sum_recovery) / s.recoveries as f64
    } else {
        0.0
    };
    println!(
        "{k}: recovery (kill -> replacement moved an item): max {:.1} ms, mean {mean:.1} ms \
         over {} kills{}",
        ms(s.max_recovery),
        s.recoveries,
        match (s.holes, s.releases) {
            (Some(h), Some(r)) => format!("; holes skipped {h}, slots released {r}"),
            _ => String::new(),
        }
    );
    println!(
        "{k}: {} children frozen for 50-250 ms and resumed{}",
        s.freezes,
        if k == "mpmc" {
            format!(
                " ({} inside a claim, which survivors must not resolve)",
                s.freezes_in_claim
            )
        } else {
            String::new()
        }
    );
    if k == "mpmc" && !s.claims_known {
        println!("{k}: kills inside a claim: unknown (the segment's registry was not readable)");
    } else if k == "mpmc" {
        let c = &s.claims;
        println!(
            "{k}: kills inside a claim: {} producers with a won, unpublished position \
             (+{} ambiguous), {} consumers with a taken, unreleased slot (+{} ambiguous), \
             {} about to claim",
            c.won_producer, c.ambiguous_producer, c.won_consumer, c.ambiguous_consumer, c.pending
        );
    }
    println!(
        "{k}: time: {:.1} s in random delays, {:.1} s stopping and killing victims, {:.1} s \
         waiting for replacements",
        s.t_delay.as_secs_f64(),
        s.t_kill.as_secs_f64(),
        s.t_recover.as_secs_f64()
    );
    for p in &s.problems {
        println!("{k}: VIOLATION: {p}");
    }
    println!(
        "summary: kind={k} iterations={} kills_producer={} kills_consumer={} items_moved={} \
         lost={} loss_bound={} duplicates={} order_violations={} phantoms={} \
         max_recovery_ms={:.1} result={}",
        s.iterations,
        s.kills_producer,
        s.kills_consumer,
        s.moved,
        s.lost,
        s.loss_bound,
        s.duplicates,
        s.order_violations,
        s.phantoms,
        ms(s.max_recovery),
        if s.ok() { "OK" } else { "FAIL" }
    );
    if a.json {
        let points: Vec<String> = s
            .points
            .pairs()
            .iter()
            .map(|(n, c)| format!("\"{n}\":{c}"))
            .collect();
        let problems: Vec<String> = s
            .problems
            .iter()
            .map(|p| format!("\"{}\"", p.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        println!(
            "{{\"kind\":\"{k}\",\"iterations\":{},\"kills_producer\":{},\"kills_consumer\":{},\
             \"kill_points\":{{{}}},\"retirements\":{},\"pushed\":{},\"items_moved\":{},\
             \"in_flight_delivered\":{},\"drained\":{},\"lost\":{},\"loss_bound\":{},\
             \"duplicates\":{},\"order_violations\":{},\"phantoms\":{},\"max_recovery_ms\":{:.3},\
             \"mean_recovery_ms\":{mean:.3},\"holes_skipped\":{},\"slots_released\":{},\
             \"kills_in_claim\":{{\"producer_won\":{},\"producer_ambiguous\":{},\
             \"consumer_won\":{},\"consumer_ambiguous\":{},\"pending\":{}}},\
             \"elapsed_s\":{:.3},\"ok\":{},\"violations\":[{}]}}",
            s.iterations,
            s.kills_producer,
            s.kills_consumer,
            points.join(","),
            s.retirements,
            s.pushed,
            s.moved,
            s.in_flight_delivered,
            s.drained,
            s.lost,
            s.loss_bound,
            s.duplicates,
            s.order_violations,
            s.phantoms,
            ms(s.max_recovery),
            s.holes.map_or("null".into(), |h| h.to_string()),
            s.releases.map_or("null".into(), |r| r.to_string()),
            s.claims.won_producer,
            s.claims.ambiguous_producer,
            s.claims.won_consumer,
            s.claims.ambiguous_consumer,
            s.claims.pending,
            s.elapsed.as_secs_f64(),
            s.ok(),
            problems.join(",")
        );
    }
}
