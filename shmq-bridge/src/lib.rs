//! Carry a shmqueue ring to another host over zenoh.
//!
//! An [`Out`] bridge reads a local ring (SPSC, MPMC, byte ring or
//! broadcast) and publishes its items, in frames, on a zenoh key; an [`In`]
//! bridge on another host subscribes to that key and pushes the items into
//! its own local ring. Producers and consumers keep using their rings as
//! they are; neither side knows the other is remote.
//!
//! * **Lossless** (the default): zenoh's reliable delivery with
//!   `CongestionControl::Block`, so a slow receiver slows the producer
//!   through both rings; sequence numbers on every frame, acknowledgements
//!   from the receiver once items are in its ring, and frames kept by the
//!   sender until then. The delivery guarantee, exactly: every item read
//!   from the source ring reaches the receiving ring, in order, **at least
//!   once**; duplicates are removed by sequence number, except after the
//!   receiving bridge is killed while pushing a frame, when up to that one
//!   frame's items may be in the ring twice; the restarted bridge reports
//!   how many ([`InReport::possible_duplicates`]). A killed *sending*
//!   bridge loses the items it had read and not yet had acknowledged (at
//!   most its window).
//! * **Lossy** ([`Out::lossy`]): `CongestionControl::Drop`, nothing kept,
//!   no acknowledgements: the sender never waits, and the receiver counts
//!   what never arrived ([`InReport::lost`]).
//!
//! The stream's element size, alignment and schema travel in every frame;
//! a receiving ring that does not match refuses the stream with
//! [`BridgeError::Mismatch`], before it writes anything, and the sender
//! stops with [`BridgeError::Refused`]. docs/DESIGN.md ("Bridge") has the
//! protocol; docs/BRIDGE.md how to deploy it.
//!
//! This crate is separate from `shmqueue` so the library never pulls zenoh.

#![deny(unsafe_op_in_unsafe_fn)]

mod error;
mod inbound;
mod local;
mod out;
mod state;
pub mod wire;

use std::hash::{BuildHasher, Hasher};

pub use error::BridgeError;
pub use inbound::{In, InReport};
pub use local::{Create, From};
pub use out::{Out, OutReport};

/// A zenoh configuration for a bridge: peer mode, multicast and gossip
/// scouting **off** (a bridge connects only where it is told), listening on
/// `listen` and connecting to `connect` (zenoh endpoints such as
/// `tcp/127.0.0.1:7447`). With `file`, that configuration (JSON5) is the
/// base instead of zenoh's defaults, and scouting is left as it says.
///
/// With no `listen` endpoint the session listens on an ephemeral loopback
/// port only, rather than zenoh's default of every interface. A blocked
/// `put` may wait an hour, not zenoh's 5 s, before the session is closed:
/// backpressure from a slow far consumer is a bridge's normal state.
pub fn config(
    listen: &[String],
    connect: &[String],
    file: Option<&std::path::Path>,
) -> Result<zenoh::Config, BridgeError> {
    let mut c = match file {
        Some(p) => zenoh::Config::from_file(p)?,
        None => {
            let mut c = zenoh::Config::default();
            c.insert_json5("mode", "\"peer\"")?;
            c.insert_json5("scouting/multicast/enabled", "false")?;
            c.insert_json5("scouting/gossip/enabled", "false")?;
            // A blocking put that waits longer than this closes the whole
            // session (zenoh's default: 5 s). A bridge blocks on purpose
            // while the far ring is full, for as long as its consumer is
            // slow; a dead link is still noticed by zenoh's lease.
            c.insert_json5(
                "transport/link/tx/queue/congestion_control/block/wait_before_close",
                "3600000000",
            )?;
            c
        }
    };
    let list = |v: &[String]| {
        serde_json::to_string(v).map_err(|e| BridgeError::Usage(format!("endpoints: {e}")))
    };
    if !listen.is_empty() {
        c.insert_json5("listen/endpoints", &list(listen)?)?;
    } else if file.is_none() {
        c.insert_json5("listen/endpoints", "[\"tcp/127.0.0.1:0\"]")?;
    }
    if !connect.is_empty() {
        c.insert_json5("connect/endpoints", &list(connect)?)?;
    }
    Ok(c)
}

/// Open a zenoh session with [`config`]'s configuration (see
/// `examples/embed.rs`).
pub fn open_session(
    listen: &[String],
    connect: &[String],
    file: Option<&std::path::Path>,
) -> Result<zenoh::Session, BridgeError> {
    use zenoh::Wait;
    Ok(zenoh::open(config(listen, connect, file)?).wait()?)
}

/// `key` as a zenoh key expression, or a usage error saying why not.
pub(crate) fn key_expr(key: &str) -> Result<zenoh::key_expr::KeyExpr<'static>, BridgeError> {
    zenoh::key_expr::KeyExpr::try_from(key.to_string()).map_err(|e| {
        BridgeError::Usage(format!(
            "{key:?} is not a zenoh key expression ({e}); keys look like orders/eu, \
             with no leading or trailing '/'"
        ))
    })
}

/// A random non-zero id (stream ids, receiver incarnations).
pub(crate) fn random_id() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish() | 1
}

#[cfg(test)]
mod tests {
    #[test]
    fn config_turns_scouting_off_and_listens_on_loopback_only() {
        let c = super::config(&[], &["tcp/127.0.0.1:7447".into()], None).unwrap();
        assert_eq!(c.get_json("scouting/multicast/enabled").unwrap(), "false");
        assert_eq!(c.get_json("scouting/gossip/enabled").unwrap(), "false");
        assert_eq!(c.get_json("mode").unwrap(), "\"peer\"");
        assert_eq!(
            c.get_json("listen/endpoints").unwrap(),
            "[\"tcp/127.0.0.1:0\"]"
        );
        let c = super::config(&["tcp/0.0.0.0:7447".into()], &[], None).unwrap();
        assert!(c
            .get_json("listen/endpoints")
            .unwrap()
            .contains("0.0.0.0:7447"));
        assert_eq!(
            c.get_json("transport/link/tx/queue/congestion_control/block/wait_before_close")
                .unwrap(),
            "3600000000"
        );
        assert!(super::key_expr("/orders").is_err());
        assert!(super::key_expr("orders/eu").is_ok());
    }
}
