//! The receiving side: take frames from zenoh, push their items into a
//! local ring, in order, each once.
//!
//! The subscriber's queue is bounded, and a frame is taken from it only
//! when the previous one is in the ring: a full local ring stops this loop,
//! zenoh's queue fills, its link stops reading, and the sender's blocking
//! `put` waits. After each frame the state file records how far the stream
//! is in the ring, and the sender is told (`Ack`, at most every millisecond
//! while busy) so it can forget those frames.
//!
//! Duplicates (resent frames, or overlap after a restart) are dropped by
//! sequence number. A gap in a lossless stream is never passed on: the
//! frame is dropped and the sender asked (`Hello`) for everything from the
//! first missing item. A lossy stream's gaps are counted as lost.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use zenoh::handlers::FifoChannel;
use zenoh::qos::CongestionControl;
use zenoh::Wait;

use crate::error::BridgeError;
use crate::local::{Create, Writer};
use crate::state::State;
use crate::wire::{Ctl, FrameHeader, StreamInfo};

/// An in-bridge: which key, which ring, how. From a service
/// (`examples/embed.rs`, compiled by `cargo test`):
///
/// ```rust,ignore
/// let session = shmq_bridge::open_session(&[], &["tcp/127.0.0.1:7447".into()], None)?;
/// let mut bridge = shmq_bridge::In::new("orders/eu", "/orders-remote", "/var/lib/orders.state");
/// bridge.create = Some(shmq_bridge::Create::default()); // make the ring like the source's
/// let report = bridge.run(&session)?;
/// println!("{} items in, {} duplicates dropped", report.items, report.duplicates);
/// ```
#[derive(Clone, Debug)]
pub struct In {
    /// The zenoh key expression to subscribe to.
    pub key: String,
    /// The local ring to push into.
    pub ring: String,
    /// Create the ring if it does not exist, like this.
    pub create: Option<Create>,
    /// The state file (see the `state` module docs).
    pub state: PathBuf,
    /// The largest byte-ring message accepted.
    pub max_message: usize,
    /// Frames zenoh may hold for this bridge before its link stops reading.
    pub queue_frames: usize,
}

/// What an in-bridge did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InReport {
    /// The stream received (0 if none arrived).
    pub stream: u64,
    /// Items (byte messages) pushed into the ring.
    pub items: u64,
    /// Items received again and dropped (already in the ring).
    pub duplicates: u64,
    /// Items that never arrived: a lossy stream's losses, or items of a
    /// lossless stream from before this bridge joined it.
    pub lost: u64,
    /// Items a previous bridge of this state file may have pushed twice:
    /// it died while pushing them (see the `state` module docs).
    pub possible_duplicates: u64,
    /// The sequence number this bridge resumed from.
    pub resumed_from: u64,
    /// Messages on the key that were not frames of this format, ignored.
    pub foreign: u64,
}

impl In {
    /// An in-bridge of `key` into `ring`, recording its progress in `state`,
    /// with the defaults: the ring must exist, byte messages up to 64 MiB,
    /// 64 frames queued in zenoh.
    pub fn new(key: &str, ring: &str, state: impl Into<PathBuf>) -> In {
        In {
            key: key.to_string(),
            ring: ring.to_string(),
            create: None,
            state: state.into(),
            max_message: 64 << 20,
            queue_frames: 64,
        }
    }

    /// Run until the stream ends (the sender's ring closed and everything
    /// is in this ring), or until an error. A mismatched stream is refused
    /// (the sender is told) before anything is written.
    pub fn run(&self, session: &zenoh::Session) -> Result<InReport, BridgeError> {
        let key = crate::key_expr(&self.key)?;
        let mut state = State::open(&self.state)?;
        let mut rep = InReport {
            stream: state.stream,
            possible_duplicates: state.pending - state.committed,
            resumed_from: state.committed,
            ..InReport::default()
        };
        if state.pending > state.committed {
            let (s, c) = (state.stream, state.committed);
            state.begin(s, c)?;
        }
        let sub = session
            .declare_subscriber(key.clone())
            .with(FifoChannel::new(self.queue_frames.max(1)))
            .wait()?;
        let ctl = session
            .declare_publisher(key.join("ctl")?)
            .congestion_control(CongestionControl::Block)
            .wait()?;
        let send = |c: Ctl| ctl.put(c.to_bytes()).wait().map_err(BridgeError::from);
        let hello = |state: &State, incarnation| {
            send(Ctl::Hello {
                stream: state.stream,
                next: state.committed,
                incarnation,
            })
        };

        let mut incarnation = crate::random_id();
        // Until a frame of the stream arrives, and after a gap: ask again,
        // after 10 ms, then twice as long each time up to `RETRY` (the first
        // hello is often lost: zenoh propagates the sender's subscription
        // asynchronously, and a put before the route exists goes nowhere).
        let mut asking = true;
        let mut last_hello = Instant::now();
        hello(&state, incarnation)?;
        let mut writer: Option<(Writer, StreamInfo)> = None;
        let mut acked = state.committed;
        let mut last_ack = Instant::now();
        const RETRY: Duration = Duration::from_millis(250);
        let mut retry = Duration::from_millis(10);
        loop {
            let sample = match sub.recv_timeout(retry) {
                Ok(Some(s)) => Some(s),
                Ok(None) => None,
                Err(e) => return Err(BridgeError::Zenoh(e)),
            };
            let lossy = writer.as_ref().is_some_and(|(_, i)| i.lossy);
            if !lossy {
                if asking && last_hello.elapsed() >= retry {
                    hello(&state, incarnation)?;
                    last_hello = Instant::now();
                    retry = (retry * 2).min(RETRY);
                }
                if acked != state.committed
                    && (sample.is_none() || last_ack.elapsed() >= Duration::from_millis(1))
                {
                    send(Ctl::Ack {
                        stream: state.stream,
                        next: state.committed,
                    })?;
                    acked = state.committed;
                    last_ack = Instant::now();
                }
            }
            let Some(sample) = sample else { continue };
            let bytes = sample.payload().to_bytes();
            let (h, payload) = match FrameHeader::read(&bytes) {
                Ok(f) => f,
                Err(_) => {
                    rep.foreign += 1;
                    continue;
                }
            };
            // The first frame decides the ring; every later one must match.
            match &writer {
                Some((_, info)) => {
                    if let Err(e) = crate::local::check_match(&self.ring, info, &h.info) {
                        return Err(self.refuse(&send, h.stream, e));
                    }
                }
                None => {
                    match Writer::open(&self.ring, &h.info, self.create.as_ref(), self.max_message)
                    {
                        Ok(w) => writer = Some((w, h.info)),
                        Err(e @ BridgeError::Mismatch { .. }) => {
                            return Err(self.refuse(&send, h.stream, e))
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            let lossy = h.info.lossy;
            if h.stream != state.stream {
                // Another stream: a restarted sender (seq 0), or, for a
                // lossless one, the answer to this bridge's hello, which
                // starts at the oldest item the sender still holds. A frame
                // of a lossless stream sent before the hello was answered
                // is dropped: its answer will hold it.
                let ours = h.answer == incarnation as u32;
                if !(lossy || h.first == 0 || ours) {
                    continue;
                }
                if state.stream != 0 || h.first > 0 {
                    rep.lost += h.first;
                }
                state.begin(h.stream, h.first)?;
                rep.stream = h.stream;
                acked = u64::MAX;
            }
            let end = h.first + u64::from(h.count);
            if h.first > state.committed {
                if lossy {
                    rep.lost += h.first - state.committed;
                    state.commit(h.first)?;
                } else {
                    // A gap: ask for it (a new incarnation, so the sender
                    // answers although it answered this bridge before).
                    if !asking || last_hello.elapsed() >= retry {
                        incarnation = crate::random_id();
                        hello(&state, incarnation)?;
                        last_hello = Instant::now();
                    }
                    if !asking {
                        retry = Duration::from_millis(10);
                    }
                    asking = true;
                    continue;
                }
            }
            if h.end {
                // Everything before it is here: the stream is complete.
                if !lossy {
                    send(Ctl::Ack {
                        stream: state.stream,
                        next: state.committed,
                    })?;
                }
                return Ok(rep);
            }
            asking = false;
            if end <= state.committed {
                rep.duplicates += u64::from(h.count);
                continue;
            }
            let skip = (state.committed - h.first) as u32;
            rep.duplicates += u64::from(skip);
            state.pending(end)?;
            let (w, _) = writer.as_mut().expect("opened above");
            w.write(payload, h.count, skip)?;
            state.commit(end)?;
            rep.items += u64::from(h.count - skip);
        }
    }

    /// Tell the sender why its stream is refused, and return the error.
    fn refuse(
        &self,
        send: &impl Fn(Ctl) -> Result<(), BridgeError>,
        stream: u64,
        e: BridgeError,
    ) -> BridgeError {
        let _ = send(Ctl::Refuse {
            stream,
            reason: e.to_string(),
        });
        e
    }
}
