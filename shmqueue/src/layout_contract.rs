//! The segment format as a contract (docs/LAYOUT.md): the page's field
//! table must match the code, and the code's layout fingerprint must be the
//! one pinned for its layout version, so a layout change without a version
//! bump (and a new page) fails the suite.

use core::mem::{offset_of, size_of};

use crate::bytes::record::{FLAGS_AT, FLAG_ABORT, FLAG_CONT, FLAG_MORE, FLAG_PAD, LEN_AT};
use crate::header::{
    bcast_seq, mpmc_seq, EndpointEntry, Event, Events, Header, Identity, IndexLine,
    BYTE_RECORD_ALIGN, CLAIM_ACTIVE, FLAG_OVERWRITE, FLAG_PADDED_SLOTS, INIT_READY, LAYOUT_VERSION,
    LINE, MAGIC, MAX_POSITION, MIN_BYTE_CAPACITY, REGISTRY_OFFSET, STATUS_ATTACHED,
    STATUS_DETACHED, STATUS_MASK, STATUS_VACANT,
};
use crate::liveness::HANDLE_BYTE;

const PAGE: &str = include_str!("../../docs/LAYOUT.md");

/// Every layout version ever released, with its fingerprint. A new layout
/// adds a line here (and bumps `LAYOUT_VERSION`); a line is never edited.
const KNOWN: &[(u32, u64)] = &[(2, 0xad08_5ed5_12aa_b017), (3, 0xf99b_7914_4f80_c8fb)];

/// (name as in LAYOUT.md, offset, size) of every field in the format.
fn fields() -> Vec<(&'static str, usize, usize)> {
    let id = |o: usize| offset_of!(Header, identity) + o;
    let ev = |o: usize| offset_of!(Header, events) + o;
    // The size of a field, from a pointer to it (no value is built).
    fn sz<T>(_: fn(&Identity) -> &T) -> usize {
        size_of::<T>()
    }
    vec![
        (
            "identity.magic",
            id(offset_of!(Identity, magic)),
            sz(|i| &i.magic),
        ),
        (
            "identity.version",
            id(offset_of!(Identity, version)),
            sz(|i| &i.version),
        ),
        (
            "identity.kind",
            id(offset_of!(Identity, kind)),
            sz(|i| &i.kind),
        ),
        (
            "identity.elem_size",
            id(offset_of!(Identity, elem_size)),
            sz(|i| &i.elem_size),
        ),
        (
            "identity.elem_align",
            id(offset_of!(Identity, elem_align)),
            sz(|i| &i.elem_align),
        ),
        (
            "identity.capacity",
            id(offset_of!(Identity, capacity)),
            sz(|i| &i.capacity),
        ),
        (
            "identity.buffer_size",
            id(offset_of!(Identity, buffer_size)),
            sz(|i| &i.buffer_size),
        ),
        (
            "identity.schema",
            id(offset_of!(Identity, schema)),
            sz(|i| &i.schema),
        ),
        (
            "identity.total_size",
            id(offset_of!(Identity, total_size)),
            sz(|i| &i.total_size),
        ),
        (
            "identity.slots_offset",
            id(offset_of!(Identity, slots_offset)),
            sz(|i| &i.slots_offset),
        ),
        (
            "identity.slot_stride",
            id(offset_of!(Identity, slot_stride)),
            sz(|i| &i.slot_stride),
        ),
        (
            "identity.endpoints",
            id(offset_of!(Identity, endpoints)),
            sz(|i| &i.endpoints),
        ),
        (
            "identity.init",
            id(offset_of!(Identity, init)),
            sz(|i| &i.init),
        ),
        (
            "identity.creator_pid",
            id(offset_of!(Identity, creator_pid)),
            sz(|i| &i.creator_pid),
        ),
        (
            "identity.flags",
            id(offset_of!(Identity, flags)),
            sz(|i| &i.flags),
        ),
        (
            "identity.producer_entries",
            id(offset_of!(Identity, producer_entries)),
            sz(|i| &i.producer_entries),
        ),
        (
            "identity.max_lag_ns",
            id(offset_of!(Identity, max_lag_ns)),
            sz(|i| &i.max_lag_ns),
        ),
        (
            "head.value",
            offset_of!(Header, head) + offset_of!(IndexLine, value),
            8,
        ),
        (
            "tail.value",
            offset_of!(Header, tail) + offset_of!(IndexLine, value),
            8,
        ),
        (
            "events.not_empty.epoch",
            ev(offset_of!(Events, not_empty) + offset_of!(Event, epoch)),
            4,
        ),
        (
            "events.not_empty.armed",
            ev(offset_of!(Events, not_empty) + offset_of!(Event, armed)),
            4,
        ),
        (
            "events.not_full.epoch",
            ev(offset_of!(Events, not_full) + offset_of!(Event, epoch)),
            4,
        ),
        (
            "events.not_full.armed",
            ev(offset_of!(Events, not_full) + offset_of!(Event, armed)),
            4,
        ),
        ("events.producers", ev(offset_of!(Events, producers)), 4),
        ("events.consumers", ev(offset_of!(Events, consumers)), 4),
        ("events.ever", ev(offset_of!(Events, ever)), 4),
        ("events.joins", ev(offset_of!(Events, joins)), 4),
        ("events.holes", ev(offset_of!(Events, holes)), 8),
        ("events.releases", ev(offset_of!(Events, releases)), 8),
        ("registry", REGISTRY_OFFSET, size_of::<EndpointEntry>()),
        ("entry.state", offset_of!(EndpointEntry, state), 4),
        ("entry.pid", offset_of!(EndpointEntry, pid), 4),
        ("entry.claim", offset_of!(EndpointEntry, claim), 8),
        ("entry.mark", offset_of!(EndpointEntry, mark), 8),
        ("record.len", LEN_AT, 4),
        ("record.flags", FLAGS_AT, 4),
    ]
}

/// The numbers of the format that are not offsets.
fn constants() -> Vec<(&'static str, u64)> {
    vec![
        ("magic", MAGIC),
        ("line", LINE as u64),
        ("init_ready", INIT_READY.into()),
        ("status_vacant", STATUS_VACANT.into()),
        ("status_attached", STATUS_ATTACHED.into()),
        ("status_detached", STATUS_DETACHED.into()),
        ("status_mask", STATUS_MASK.into()),
        ("claim_active", CLAIM_ACTIVE),
        ("mpmc_skip", mpmc_seq::SKIP),
        ("mpmc_free_of_3", mpmc_seq::free(3)),
        ("mpmc_published_of_3", mpmc_seq::published(3)),
        ("mpmc_max_position", mpmc_seq::MAX_POSITION),
        ("bytes_max_position", MAX_POSITION),
        ("flag_padded_slots", FLAG_PADDED_SLOTS.into()),
        ("flag_overwrite", FLAG_OVERWRITE.into()),
        ("bcast_writing_of_3", bcast_seq::writing(3)),
        ("bcast_published_of_3", bcast_seq::published(3)),
        ("bcast_evicted", bcast_seq::EVICTED),
        ("record_pad", FLAG_PAD.into()),
        ("record_more", FLAG_MORE.into()),
        ("record_cont", FLAG_CONT.into()),
        ("record_abort", FLAG_ABORT.into()),
        ("record_align", BYTE_RECORD_ALIGN as u64),
        ("min_byte_capacity", MIN_BYTE_CAPACITY as u64),
        ("handle_byte", HANDLE_BYTE),
    ]
}

/// FNV-1a over every field and constant, in order.
fn fingerprint() -> u64 {
    let mut text = String::new();
    for (n, o, z) in fields() {
        text += &format!("{n}@{o}+{z};");
    }
    for (n, v) in constants() {
        text += &format!("{n}={v:#x};");
    }
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The value after `key: ` on its own line of the page.
fn page_value(key: &str) -> &'static str {
    PAGE.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("docs/LAYOUT.md has no `{key}:` line"))
        .trim()
}

#[test]
fn the_layout_version_has_its_pinned_fingerprint() {
    let now = fingerprint();
    let pinned = KNOWN.iter().find(|(v, _)| *v == LAYOUT_VERSION);
    assert_eq!(
        pinned.map(|(_, f)| *f),
        Some(now),
        "the segment layout changed (fingerprint {now:#018x}) but LAYOUT_VERSION is still \
         {LAYOUT_VERSION}: bump it, add ({}, {now:#018x}) to KNOWN and update docs/LAYOUT.md",
        LAYOUT_VERSION + 1
    );
    assert_eq!(page_value("layout-version"), LAYOUT_VERSION.to_string());
    assert_eq!(page_value("layout-fingerprint"), format!("{now:#018x}"));
}

#[test]
fn the_field_table_of_layout_md_is_the_code() {
    let mut documented = std::collections::BTreeMap::new();
    for line in PAGE.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | name | offset | size | meaning |
        if cells.len() >= 5 {
            if let (Ok(o), Ok(z)) = (cells[2].parse::<usize>(), cells[3].parse::<usize>()) {
                documented.insert(cells[1].to_string(), (o, z));
            }
        }
    }
    let code = fields();
    for (name, o, z) in &code {
        assert_eq!(
            documented.get(*name),
            Some(&(*o, *z)),
            "docs/LAYOUT.md: `{name}` must be at offset {o}, size {z}"
        );
    }
    assert_eq!(
        documented.len(),
        code.len(),
        "docs/LAYOUT.md documents fields the code has not"
    );
}
