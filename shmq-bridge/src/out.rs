//! The sending side: read a local ring, publish its items in frames.
//!
//! Lossless (the default): frames go out with zenoh's reliable delivery and
//! `CongestionControl::Block`, so a slow link or a slow receiver makes
//! `put` wait, this loop stops reading, and the local ring fills until its
//! producer blocks. Every frame is also kept until the receiver acknowledges
//! that its items are in the receiving ring; at most `window_bytes` are
//! unacknowledged, past which this loop stops reading too. A receiver that
//! starts (or restarts, or sees a gap) says so with a `Hello` naming the
//! next item it needs, and the frames from there are sent again.
//!
//! Lossy: `CongestionControl::Drop`, nothing kept, no acknowledgements; the
//! receiver counts what never arrived by its sequence numbers.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use zenoh::bytes::ZBytes;
use zenoh::qos::CongestionControl;
use zenoh::Wait;

use crate::error::BridgeError;
use crate::local::{From, Got, Reader};
use crate::wire::{Ctl, FrameHeader, HEADER_LEN};

/// An out-bridge: which ring, which key, how. From a service
/// (`examples/embed.rs`, compiled by `cargo test`):
///
/// ```rust,ignore
/// let session = shmq_bridge::open_session(&["tcp/127.0.0.1:7447".into()], &[], None)?;
/// let report = shmq_bridge::Out::new("/orders", "orders/eu").run(&session)?;
/// println!("{} items sent", report.items);
/// ```
#[derive(Clone, Debug)]
pub struct Out {
    /// The local ring to read (any kind).
    pub ring: String,
    /// The zenoh key expression to publish on (control messages use
    /// `<key>/ctl`).
    pub key: String,
    /// Best effort instead of lossless.
    pub lossy: bool,
    /// Bytes of items per frame, at most (a byte message larger than this
    /// travels alone).
    pub batch_bytes: usize,
    /// Lossless: bytes of frames sent but not acknowledged, at most.
    pub window_bytes: usize,
    /// A broadcast source: where the bridge's subscriber starts.
    pub from: From,
    /// The largest byte-ring message the bridge carries.
    pub max_message: usize,
}

/// What an out-bridge did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutReport {
    /// The stream's id.
    pub stream: u64,
    /// Items (byte messages) sent.
    pub items: u64,
    /// Frames sent, not counting resends.
    pub frames: u64,
    /// Frames sent again in answer to a receiver's `Hello`.
    pub resent: u64,
    /// Broadcast source: items the bridge's own subscriber missed (lapped
    /// or evicted); they never reached the bridge.
    pub missed_locally: u64,
}

impl Out {
    /// A lossless bridge of `ring` onto `key`, with the defaults: 63 KiB
    /// of items per frame (a frame then fits one zenoh batch, 64 KiB, and
    /// is never fragmented), a 16 MiB window, a broadcast source read from its oldest
    /// item, byte messages up to 64 MiB.
    pub fn new(ring: &str, key: &str) -> Out {
        Out {
            ring: ring.to_string(),
            key: key.to_string(),
            lossy: false,
            batch_bytes: 63 << 10,
            window_bytes: 16 << 20,
            from: From::Oldest,
            max_message: 64 << 20,
        }
    }

    /// Run until the local ring's producer has gone and everything read is
    /// delivered (lossless: acknowledged by the receiver; it waits for one
    /// as long as it takes), or until an error.
    pub fn run(&self, session: &zenoh::Session) -> Result<OutReport, BridgeError> {
        let key = crate::key_expr(&self.key)?;
        let mut reader = Reader::open(&self.ring, self.from, self.max_message)?;
        let info = crate::wire::StreamInfo {
            lossy: self.lossy,
            ..reader.info()
        };
        let stream = crate::random_id();
        let publisher = session
            .declare_publisher(key.clone())
            .congestion_control(if self.lossy {
                CongestionControl::Drop
            } else {
                CongestionControl::Block
            })
            .wait()?;
        let ctl = Arc::new(Control::default());
        let _ctl_sub = if self.lossy {
            None
        } else {
            let c = ctl.clone();
            Some(
                session
                    .declare_subscriber(key.join("ctl")?)
                    .callback(move |s| c.on_message(stream, &s.payload().to_bytes()))
                    .wait()?,
            )
        };
        let mut rep = OutReport {
            stream,
            ..OutReport::default()
        };
        let mut sent = Sent::default();
        let mut next = 0u64;
        let header = |first: u64, count: u32, end: bool| FrameHeader {
            end,
            info,
            stream,
            first,
            count,
            answer: 0,
        };
        loop {
            if !self.lossy {
                // Nothing goes out before a receiver has said hello: frames
                // would reach no one, and resending them would duplicate
                // what a receiver that joined meanwhile already has.
                if !ctl.greeted() {
                    ctl.wait(Duration::from_millis(100), 0);
                    continue;
                }
                self.service(&ctl, &mut sent, &publisher, &mut rep, None)?;
                if sent.bytes >= self.window_bytes {
                    ctl.wait(Duration::from_millis(100), ctl.acked());
                    continue;
                }
            }
            let mut frame = Vec::with_capacity(HEADER_LEN + self.batch_bytes);
            frame.resize(HEADER_LEN, 0);
            match reader.read(&mut frame, self.batch_bytes, Duration::from_millis(20))? {
                Got::Items(n) => {
                    let mut h = Vec::with_capacity(HEADER_LEN);
                    header(next, n, false).write(&mut h);
                    frame[..HEADER_LEN].copy_from_slice(&h);
                    let z = ZBytes::from(frame);
                    if !self.lossy {
                        sent.push(next, n, z.clone());
                    }
                    publisher.put(z).wait()?;
                    next += u64::from(n);
                    rep.items += u64::from(n);
                    rep.frames += 1;
                }
                Got::Idle => {}
                Got::Closed => break,
            }
        }
        rep.missed_locally = reader.missed();
        let mut end = Vec::with_capacity(HEADER_LEN);
        header(next, 0, true).write(&mut end);
        if self.lossy {
            // The end is the one frame of a lossy stream that must not be
            // dropped: the receiver counts the stream's losses against it.
            // Sent blocking, through the same session and priority queue as
            // the data (so after it); nothing
            // confirms it, so a receiver that is not there when it goes out
            // waits for a next stream.
            session
                .put(key, end)
                .congestion_control(CongestionControl::Block)
                .wait()?;
            return Ok(rep);
        }
        publisher.put(end.clone()).wait()?;
        let mut last_end = Instant::now();
        while ctl.acked() < next {
            self.service(&ctl, &mut sent, &publisher, &mut rep, Some(&end))?;
            ctl.wait(Duration::from_millis(100), ctl.acked());
            // A receiver that was not there when the end went out learns of
            // it from its `Hello`'s answer; this covers an end lost with a
            // receiver that was there.
            if last_end.elapsed() >= Duration::from_secs(1) {
                publisher.put(end.clone()).wait()?;
                last_end = Instant::now();
            }
        }
        Ok(rep)
    }

    /// Apply acknowledgements and answer hellos.
    fn service(
        &self,
        ctl: &Control,
        sent: &mut Sent,
        publisher: &zenoh::pubsub::Publisher<'_>,
        rep: &mut OutReport,
        end: Option<&[u8]>,
    ) -> Result<(), BridgeError> {
        let (acked, hellos, refused) = ctl.take();
        if let Some(r) = refused {
            return Err(BridgeError::Refused(r));
        }
        sent.release(acked);
        for (from, incarnation) in hellos {
            for frame in sent.from(from) {
                // The frame again, marked as this hello's answer.
                let mut b = frame.to_bytes().into_owned();
                b[52..56].copy_from_slice(&(incarnation as u32).to_le_bytes());
                publisher.put(b).wait()?;
                rep.resent += 1;
            }
            if let Some(e) = end {
                let mut b = e.to_vec();
                b[52..56].copy_from_slice(&(incarnation as u32).to_le_bytes());
                publisher.put(b).wait()?;
            }
        }
        Ok(())
    }
}

/// Frames sent and not yet acknowledged, oldest first.
#[derive(Default)]
struct Sent {
    frames: VecDeque<(u64, u32, ZBytes)>,
    bytes: usize,
}

impl Sent {
    fn push(&mut self, first: u64, count: u32, z: ZBytes) {
        self.bytes += z.len();
        self.frames.push_back((first, count, z));
    }

    /// Drop the frames whose items are all before `acked`.
    fn release(&mut self, acked: u64) {
        while let Some((first, count, z)) = self.frames.front() {
            if first + u64::from(*count) > acked {
                break;
            }
            self.bytes -= z.len();
            self.frames.pop_front();
        }
    }

    /// The frames holding items from `from` on.
    fn from(&self, from: u64) -> Vec<ZBytes> {
        self.frames
            .iter()
            .filter(|(first, count, _)| first + u64::from(*count) > from)
            .map(|(_, _, z)| z.clone())
            .collect()
    }
}

/// What the receiver said, gathered by the control subscriber's callback
/// (a zenoh thread) for the sending loop.
#[derive(Default)]
struct Control {
    state: Mutex<ControlState>,
    changed: Condvar,
}

#[derive(Default)]
struct ControlState {
    acked: u64,
    /// (first item to resend, incarnation) per hello not yet answered.
    hellos: Vec<(u64, u64)>,
    answered: HashSet<u64>,
    refused: Option<String>,
}

impl ControlState {
    fn greeted(&self) -> bool {
        !self.answered.is_empty()
    }
}

impl Control {
    fn on_message(&self, stream: u64, b: &[u8]) {
        let Ok(msg) = Ctl::read(b) else {
            // Not ours (another program on `<key>/ctl`): ignored.
            return;
        };
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match msg {
            Ctl::Ack { stream: st, next } if st == stream => s.acked = s.acked.max(next),
            Ctl::Hello {
                stream: st,
                next,
                incarnation,
            } => {
                if s.answered.insert(incarnation) {
                    // A receiver with no state for this stream gets
                    // everything not acknowledged.
                    let from = if st == stream { next } else { 0 };
                    s.hellos.push((from, incarnation));
                }
            }
            Ctl::Refuse { stream: st, reason } if st == stream => s.refused = Some(reason),
            _ => return,
        }
        self.changed.notify_all();
    }

    fn take(&self) -> (u64, Vec<(u64, u64)>, Option<String>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (s.acked, std::mem::take(&mut s.hellos), s.refused.take())
    }

    fn greeted(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .greeted()
    }

    fn acked(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).acked
    }

    /// Wait up to `d` for news: an acknowledgement past `acked`, a hello
    /// or a refusal.
    fn wait(&self, d: Duration, acked: u64) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.changed.wait_timeout_while(s, d, |s| {
            s.acked <= acked && s.hellos.is_empty() && s.refused.is_none()
        });
    }
}
