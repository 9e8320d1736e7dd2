//! `shmq ls`, `shmq stat`, `shmq rm`: inspect and clean up segments in
//! /dev/shm, built on `shmqueue::inspect`. Nothing here attaches to a queue
//! or writes a segment; `rm` only unlinks.
//!
//! Exit status: 0 success; 1 error (not found, I/O, bad name); 2 usage
//! error (from the argument parser); 3 `rm` refused at least one name (not
//! a shmqueue segment, or in use without `--force`) and hit no error.
//!
//! `--json` prints one JSON document on stdout: `ls` an array of segment
//! objects, `stat` one segment object, `rm` an array of
//! `{"name", "result": "removed"|"refused"|"error", "reason"}`. A segment
//! object has: `name`, `shmqueue`, `kind` (number or null), `kind_name`
//! ("spsc", "mpmc", "bytes", "broadcast" or null), `version`, `elem_size`,
//! `elem_align`, `capacity`, `size`, `fill`, `schema`, `creator_pid`, `uid`,
//! `gid`, `mode` (octal string), `init` ("ready", "uninitialised",
//! "invalid" or null), `in_use`, `stale`, `endpoints_alive`,
//! `endpoints_attached`, the broadcast fields (null for other kinds):
//! `policy` ("lossless"|"overwrite"), `max_lag_ns` (null when not set),
//! `published`, `evictions`, `laps`; `endpoints` (`index`, `role`,
//! `status`, `generation`, `pid`, `alive`, `liveness`:
//! "alive"|"dead"|"free", `claim`, and for broadcast subscribers `cursor`,
//! `lag`, `evicted`) and `checks` (`name`, `outcome`:
//! "pass"|"fail"|"skipped", `detail`). Header values are as found in the
//! segment: untrusted.
//!
//! `ls` columns: NAME, KIND, POLICY (broadcast: lossless/overwrite; `-`
//! otherwise), ELEM, CAPACITY, FILL, ALIVE/ATT, STALE, CHECKS.

use clap::Args;
use serde::Serialize;
use shmqueue::broadcast::Policy;
use shmqueue::inspect::{
    self, EndpointInfo, EndpointStatus, InitState, Liveness, Outcome, Refusal, Removal, SegmentInfo,
};
use shmqueue::Error;
use shmqueue::{QueueKind, Role};

use crate::{ExitWith, Res};

/// Exit status of `rm` when it refused a name.
const EXIT_REFUSED: u8 = 3;

#[derive(Args, Clone)]
pub struct LsArgs {
    /// Print JSON (an array of segment objects) instead of a table.
    #[arg(long)]
    json: bool,
    /// Only names starting with this (e.g. "/myapp-").
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
}

#[derive(Args, Clone)]
pub struct StatArgs {
    /// The segment's name ("/orders"; the leading '/' may be left out).
    name: String,
    /// Print JSON (one segment object).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
pub struct RmArgs {
    /// Names to remove ("/orders"; the leading '/' may be left out).
    #[arg(required_unless_present = "stale", conflicts_with = "stale")]
    names: Vec<String>,
    /// Remove every stale shmqueue segment (no process has it open) and
    /// nothing else.
    #[arg(long)]
    stale: bool,
    /// With --stale: only names starting with this.
    #[arg(long, value_name = "PREFIX", requires = "stale")]
    prefix: Option<String>,
    /// Remove named segments even while processes use them (they keep their
    /// mapping; new opens fail). Never removes a file that is not a shmqueue
    /// segment.
    #[arg(long, conflicts_with = "stale")]
    force: bool,
    /// Print JSON (an array of {name, result, reason}).
    #[arg(long)]
    json: bool,
}

/// `orders` → `/orders`; names already starting with '/' are kept.
fn shm_name(arg: &str) -> String {
    if arg.starts_with('/') {
        arg.to_owned()
    } else {
        format!("/{arg}")
    }
}

#[derive(Serialize)]
struct JsonSegment<'a> {
    name: &'a str,
    shmqueue: bool,
    kind: Option<u32>,
    kind_name: Option<String>,
    version: Option<u32>,
    elem_size: Option<u64>,
    elem_align: Option<u64>,
    capacity: Option<u64>,
    size: u64,
    fill: Option<u64>,
    schema: Option<u64>,
    creator_pid: Option<u32>,
    uid: u32,
    gid: u32,
    mode: String,
    init: Option<&'static str>,
    in_use: bool,
    stale: bool,
    endpoints_alive: usize,
    endpoints_attached: usize,
    policy: Option<&'static str>,
    max_lag_ns: Option<u64>,
    published: Option<u64>,
    evictions: Option<u64>,
    laps: Option<u64>,
    endpoints: Vec<JsonEndpoint>,
    checks: Vec<JsonCheck<'a>>,
}

#[derive(Serialize)]
struct JsonEndpoint {
    index: u32,
    role: String,
    status: &'static str,
    generation: u32,
    pid: u32,
    alive: bool,
    liveness: &'static str,
    claim: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lag: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    evicted: Option<bool>,
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    name: &'static str,
    outcome: &'static str,
    detail: &'a str,
}

#[derive(Serialize)]
struct JsonRm {
    name: String,
    result: &'static str,
    reason: Option<String>,
}

fn status_name(s: EndpointStatus) -> &'static str {
    match s {
        EndpointStatus::Vacant => "vacant",
        EndpointStatus::Attached => "attached",
        EndpointStatus::Detached => "detached",
        EndpointStatus::Invalid => "invalid",
    }
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass",
        Outcome::Fail => "fail",
        Outcome::Skipped => "skipped",
    }
}

fn policy_name(p: Policy) -> &'static str {
    match p {
        Policy::Lossless => "lossless",
        Policy::Overwrite => "overwrite",
    }
}

/// "publisher"/"subscriber" on a broadcast ring, the role otherwise.
fn role_name(s: &SegmentInfo, e: &EndpointInfo) -> String {
    match (s.queue_kind(), e.role) {
        (Some(QueueKind::Broadcast), Role::Producer) => "publisher".into(),
        (Some(QueueKind::Broadcast), Role::Consumer) => "subscriber".into(),
        (_, r) => r.to_string(),
    }
}

fn init_name(i: InitState) -> &'static str {
    match i {
        InitState::Ready => "ready",
        InitState::Uninitialised => "uninitialised",
        InitState::Invalid(_) => "invalid",
    }
}

fn json_segment(s: &SegmentInfo) -> JsonSegment<'_> {
    JsonSegment {
        name: &s.name,
        shmqueue: s.shmqueue,
        kind: s.kind,
        kind_name: s.queue_kind().map(|_| s.kind_label()),
        version: s.version,
        elem_size: s.elem_size,
        elem_align: s.elem_align,
        capacity: s.capacity,
        size: s.size,
        fill: s.fill,
        schema: s.schema,
        creator_pid: s.creator_pid,
        uid: s.uid,
        gid: s.gid,
        mode: format!("{:04o}", s.mode),
        init: s.init.map(init_name),
        in_use: s.in_use,
        stale: s.stale,
        endpoints_alive: s.endpoints_alive(),
        endpoints_attached: s.endpoints_attached(),
        policy: s.policy.map(policy_name),
        max_lag_ns: s
            .max_lag
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        published: s.published,
        evictions: s.evictions,
        laps: s.laps,
        endpoints: s
            .endpoints
            .iter()
            .map(|e| JsonEndpoint {
                index: e.index,
                role: e.role.to_string(),
                status: status_name(e.status),
                generation: e.generation,
                pid: e.pid,
                alive: e.alive,
                liveness: e.liveness().label(),
                claim: e.claim,
                cursor: e.cursor,
                lag: e.lag,
                evicted: e.cursor.map(|_| e.evicted),
            })
            .collect(),
        checks: s
            .checks
            .iter()
            .map(|c| JsonCheck {
                name: c.name,
                outcome: outcome_name(c.outcome),
                detail: &c.detail,
            })
            .collect(),
    }
}

fn print_json(v: &impl Serialize) -> Res {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

pub fn ls(a: LsArgs) -> Res {
    let prefix = a.prefix.as_deref().map(shm_name);
    let segs: Vec<SegmentInfo> = inspect::list()?
        .into_iter()
        .filter(|s| prefix.as_deref().map_or(true, |p| s.name.starts_with(p)))
        .collect();
    if a.json {
        return print_json(&segs.iter().map(json_segment).collect::<Vec<_>>());
    }
    let rows: Vec<[String; 9]> = segs
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.kind_label(),
                s.policy.map_or("-", policy_name).into(),
                opt(s.elem_size),
                opt(s.capacity),
                opt(s.fill),
                format!("{}/{}", s.endpoints_alive(), s.endpoints_attached()),
                if s.stale { "yes" } else { "no" }.into(),
                s.first_failure()
                    .map_or_else(|| "ok".into(), |c| format!("FAIL {}", c.name)),
            ]
        })
        .collect();
    let head = [
        "NAME",
        "KIND",
        "POLICY",
        "ELEM",
        "CAPACITY",
        "FILL",
        "ALIVE/ATT",
        "STALE",
        "CHECKS",
    ];
    let mut w = head.map(str::len);
    for r in &rows {
        for (w, c) in w.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 9]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(w).enumerate() {
            // Names and words left-aligned, numbers right-aligned.
            if (3..=5).contains(&i) {
                s += &format!("{c:>w$}  ");
            } else {
                s += &format!("{c:<w$}  ");
            }
        }
        println!("{}", s.trim_end());
    };
    line(head);
    for r in &rows {
        line(r.each_ref().map(String::as_str));
    }
    if rows.is_empty() {
        println!("(no shmqueue segments)");
    }
    Ok(())
}

pub fn stat(a: StatArgs) -> Res {
    let s = inspect::inspect(&shm_name(&a.name))?;
    if a.json {
        return print_json(&json_segment(&s));
    }
    let unreadable = s.check("readable").map(|c| c.outcome) == Some(Outcome::Fail);
    let verdict = if unreadable {
        "cannot be read by this user"
    } else if !s.shmqueue {
        "NOT a shmqueue segment"
    } else if s.stale {
        "shmqueue segment, STALE (no process has it open)"
    } else if s.in_use {
        "shmqueue segment, in use"
    } else {
        "shmqueue segment"
    };
    println!("{}: {verdict}", s.name);
    println!("  size          {} bytes", s.size);
    println!(
        "  owner         uid {} gid {} mode {:04o}",
        s.uid, s.gid, s.mode
    );
    if s.shmqueue {
        println!(
            "  kind          {} (layout version {})",
            s.kind_label(),
            opt(s.version)
        );
        println!(
            "  element       {} bytes, aligned to {}",
            opt(s.elem_size),
            opt(s.elem_align)
        );
        println!("  capacity      {}", opt(s.capacity));
        println!("  fill          {}", opt(s.fill));
        println!(
            "  schema        {}",
            s.schema.map_or("-".into(), |v| format!("{v:#x}"))
        );
        println!("  creator pid   {}", opt(s.creator_pid));
        println!("  init          {}", s.init.map_or("-", init_name));
        println!(
            "  open          {}",
            if s.in_use {
                "yes (a process holds a handle)"
            } else {
                "no handle held"
            }
        );
        println!("  stale         {}", if s.stale { "yes" } else { "no" });
        if let Some(p) = s.policy {
            let lag = s.max_lag.map_or_else(
                || match p {
                    Policy::Lossless => {
                        ", no max lag (a stopped subscriber holds the publisher)".to_owned()
                    }
                    Policy::Overwrite => String::new(),
                },
                |d| format!(", max lag {d:?} (then evicted)"),
            );
            println!("  policy        {}{lag}", policy_name(p));
            println!("  published     {}", opt(s.published));
            println!(
                "  evictions     {} (laps {})",
                opt(s.evictions),
                opt(s.laps)
            );
        }
        println!(
            "  endpoints     {} alive, {} attached",
            s.endpoints_alive(),
            s.endpoints_attached()
        );
        let mut never = 0;
        for e in &s.endpoints {
            if e.status == EndpointStatus::Vacant && !e.alive {
                never += 1;
                continue;
            }
            let claim = e.claim.map_or(String::new(), |c| format!(", claims {c}"));
            let cursor = e.cursor.filter(|_| e.status == EndpointStatus::Attached);
            let cursor = cursor.map_or(String::new(), |c| {
                format!(
                    ", cursor {c}, lag {}{}",
                    e.lag
                        .map_or_else(|| "? (cursor past the publisher)".into(), |l| l.to_string()),
                    if e.evicted { ", EVICTED" } else { "" }
                )
            });
            println!(
                "    #{:<4} {:<10} {:<8} gen {:<5} pid {:<8} {}{claim}{cursor}",
                e.index,
                role_name(&s, e),
                status_name(e.status),
                e.generation,
                e.pid,
                match e.liveness() {
                    Liveness::Alive => "alive",
                    Liveness::Dead => "DEAD (holder died)",
                    Liveness::Free => "free",
                }
            );
        }
        if never > 0 {
            println!("    ({never} more never attached)");
        }
    }
    println!("  checks");
    for c in &s.checks {
        let o = match c.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Skipped => "skip",
        };
        println!("    {o}  {:<15} {}", c.name, c.detail);
    }
    Ok(())
}

fn refusal_reason(s: &SegmentInfo, r: Refusal) -> String {
    match r {
        Refusal::NotShmqueue => {
            let why = s
                .first_failure()
                .map_or_else(String::new, |c| format!(": {} {}", c.name, c.detail));
            format!("not a shmqueue segment{why}; never removed")
        }
        Refusal::Unreadable => {
            "this user cannot read it, so it cannot be verified to be a shmqueue segment; \
             never removed"
                .into()
        }
        Refusal::InUse => format!(
            "in use ({} live endpoints{}); use --force to remove it anyway",
            s.endpoints_alive(),
            if s.in_use { ", open by a process" } else { "" }
        ),
        Refusal::UnknownLayout => format!(
            "layout version {} is unknown to this shmq, which cannot tell whether it is in use; \
             use --force to remove it anyway",
            opt(s.version)
        ),
    }
}

pub fn rm(a: RmArgs) -> Res {
    let names: Vec<String> = if a.stale {
        let prefix = a.prefix.as_deref().map(shm_name);
        inspect::list()?
            .into_iter()
            .filter(|s| s.stale && prefix.as_deref().map_or(true, |p| s.name.starts_with(p)))
            .map(|s| s.name)
            .collect()
    } else {
        a.names.iter().map(|n| shm_name(n)).collect()
    };
    let mut report = Vec::new();
    let (mut refused, mut failed) = (0, 0);
    for name in names {
        let (result, reason) = match inspect::remove(&name, a.force) {
            Ok(Removal::Removed(_)) => ("removed", None),
            // Under --stale, a segment someone opened (or removed) since
            // the listing is simply no longer stale: not an error.
            Ok(Removal::Refused(..)) | Err(Error::NotFound { .. }) if a.stale => continue,
            Ok(Removal::Refused(s, r)) => {
                refused += 1;
                ("refused", Some(refusal_reason(&s, r)))
            }
            Err(e) => {
                failed += 1;
                ("error", Some(e.to_string()))
            }
        };
        if !a.json {
            match &reason {
                None => println!("removed {name}{}", if a.stale { " (stale)" } else { "" }),
                Some(r) => eprintln!("shmq: {result} {name}: {r}"),
            }
        }
        report.push(JsonRm {
            name,
            result,
            reason,
        });
    }
    if a.json {
        print_json(&report)?;
    } else if a.stale && report.is_empty() {
        println!("no stale segments");
    }
    if failed > 0 {
        return Err(Box::new(ExitWith {
            code: 1,
            msg: String::new(),
        }));
    }
    if refused > 0 {
        return Err(Box::new(ExitWith {
            code: EXIT_REFUSED,
            msg: String::new(),
        }));
    }
    Ok(())
}
