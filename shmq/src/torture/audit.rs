//! The audit: what each consumer delivered against what each producer
//! pushed, with the duplicate, order and loss checks.

use std::collections::HashMap;
use std::time::Duration;

use super::supervisor::*;

/// What was delivered, and the order checks.
#[derive(Default)]
pub(super) struct Book {
    /// Dead producers: id -> (confirmed, in-flight window).
    pub(super) producers: HashMap<u64, (u64, u64)>,
    /// Every producer ever started: id -> window.
    pub(super) started: HashMap<u64, u64>,
    /// Recorded values, one bit per (producer, seq).
    pub(super) delivered: HashMap<u64, Vec<u64>>,
    /// Consumers in start order.
    pub(super) consumers: Vec<ConsumerRec>,
    /// SPSC: the last value of the concatenated records.
    pub(super) last: Option<u64>,
    pub(super) moved: u64,
    pub(super) duplicates: u64,
    pub(super) order_violations: u64,
    pub(super) phantoms: u64,
    pub(super) problems: Vec<String>,
}

pub(super) struct ConsumerRec {
    pub(super) id: u64,
    pub(super) killed: bool,
    pub(super) window: u64,
    pub(super) first: Option<u64>,
    pub(super) last: Option<u64>,
}

impl Book {
    pub(super) fn problem(&mut self, p: String) {
        if self.problems.len() < 20 {
            self.problems.push(p);
        }
    }
}

#[derive(Default, Debug)]
pub(super) struct Summary {
    pub(super) kind: &'static str,
    pub(super) iterations: u64,
    pub(super) kills_producer: u64,
    pub(super) kills_consumer: u64,
    pub(super) points: KillPoints,
    pub(super) retirements: u64,
    pub(super) pushed: u64,
    pub(super) moved: u64,
    pub(super) in_flight_delivered: u64,
    pub(super) drained: u64,
    pub(super) lost: u64,
    pub(super) loss_bound: u64,
    /// Consumers killed inside a pop or before recording it.
    pub(super) exposed_consumer_kills: u64,
    /// SPSC: how many consumer boundaries the losses sit at.
    pub(super) loss_gaps: Option<u64>,
    pub(super) duplicates: u64,
    pub(super) order_violations: u64,
    pub(super) phantoms: u64,
    pub(super) recoveries: u64,
    pub(super) max_recovery: Duration,
    pub(super) sum_recovery: Duration,
    pub(super) claims: ClaimKills,
    pub(super) claims_known: bool,
    /// Children frozen (SIGSTOP, then SIGCONT) rather than killed, and how
    /// many of them inside a claim.
    pub(super) freezes: u64,
    pub(super) freezes_in_claim: u64,
    pub(super) holes: Option<u64>,
    pub(super) releases: Option<u64>,
    pub(super) elapsed: Duration,
    /// Where the time went: random delays, stopping and killing victims,
    /// waiting for replacements to move.
    pub(super) t_delay: Duration,
    pub(super) t_kill: Duration,
    pub(super) t_recover: Duration,
    pub(super) problems: Vec<String>,
}

impl Summary {
    pub(super) fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}
