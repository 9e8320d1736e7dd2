//! The broadcast contenders (issue #12): shmqueue's lossless `Broadcast<u64>`
//! (spinning on `try_publish`/`try_recv`, or blocking `publish`/`recv`),
//! ringfire's SPMC ring (lossless backpressure; spinning, or its futex wait)
//! and iceoryx2's publish-subscribe (lossless: safe overflow off, the
//! publisher retrying until delivered). iceoryx2 is compiled in with shmq's
//! `iceoryx2` feature only (a large dependency tree); ringfire always.
//!
//! Every one carries `u64` items. A 1x1 contender is two rings, one each
//! way, each with one subscriber (the round trip needs the way back); a
//! fan-out contender (1xN) is one ring: side A publishes, side B holds N
//! subscribers that each receive every item.

use shmqueue::broadcast::{Broadcast, Publisher, Start, Subscriber, TryRecvError};
use shmqueue::TryPushError;

use super::peers::{Built, Duplex, Kind, PeerSpec};
use super::sys::{unique_name, Cleanup, Spin};
use crate::Res;

/// Items a broadcast contender's ring holds (as `capacity(8)` for the
/// other rings).
const CAP: usize = 1024;

/// Build a broadcast contender: side A into `built`, and the names side B
/// opens into `spec`. `subs == 1`: a ring each way; otherwise one ring.
pub fn build(kind: Kind, subs: usize, built: &mut Built, spec: &mut PeerSpec) -> Res {
    match kind {
        Kind::BcastSpin | Kind::BcastBlock => {
            let ab = unique_name("bab");
            let q1 = Broadcast::<u64>::builder()
                .capacity(CAP)
                .lossless()
                .create(&ab)?;
            built.guards.push(Cleanup::new(Cleanup::Queue(ab.clone())));
            let mut rx = None;
            spec.names.push(ab);
            if subs == 1 {
                let ba = unique_name("bba");
                let q2 = Broadcast::<u64>::builder()
                    .capacity(CAP)
                    .lossless()
                    .create(&ba)?;
                built.guards.push(Cleanup::new(Cleanup::Queue(ba.clone())));
                rx = Some(q2.subscribe(Start::Oldest)?);
                spec.names.push(ba);
            }
            built.a.push(Box::new(BcastDuplex {
                tx: Some(q1.publisher()?),
                rx,
                block: kind == Kind::BcastBlock,
            }));
        }
        Kind::Ringfire | Kind::RingfireFutex => rf::ringfire_build(kind, subs, built, spec)?,
        #[cfg(feature = "iceoryx2")]
        Kind::Iceoryx2 => iox::iceoryx2_build(subs, built, spec)?,
        _ => return Err(format!("{} is not a broadcast contender here", kind.name()).into()),
    }
    Ok(())
}

/// Open side B of a broadcast contender built by [`build`].
pub fn open_b(spec: &PeerSpec) -> Res<Vec<Box<dyn Duplex>>> {
    let name = |i: usize| -> Res<&str> {
        spec.names
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| "missing --names".into())
    };
    let mut b: Vec<Box<dyn Duplex>> = Vec::new();
    match spec.kind {
        Kind::BcastSpin | Kind::BcastBlock => {
            let q1 = Broadcast::<u64>::open(name(0)?)?;
            let block = spec.kind == Kind::BcastBlock;
            if spec.subs == 1 {
                let q2 = Broadcast::<u64>::open(name(1)?)?;
                b.push(Box::new(BcastDuplex {
                    tx: Some(q2.publisher()?),
                    rx: Some(q1.subscribe(Start::Oldest)?),
                    block,
                }));
            } else {
                for _ in 0..spec.subs {
                    b.push(Box::new(BcastDuplex {
                        tx: None,
                        rx: Some(q1.subscribe(Start::Oldest)?),
                        block,
                    }));
                }
            }
        }
        Kind::Ringfire | Kind::RingfireFutex => rf::ringfire_open_b(spec, &mut b)?,
        #[cfg(feature = "iceoryx2")]
        Kind::Iceoryx2 => iox::iceoryx2_open_b(spec, &mut b)?,
        _ => return Err(format!("{} is not a broadcast contender here", spec.kind.name()).into()),
    }
    Ok(b)
}

/// shmqueue's broadcast ring; either end may be missing (a fan-out
/// subscriber has no way back, the fan-out publisher none either).
struct BcastDuplex {
    tx: Option<Publisher<u64>>,
    rx: Option<Subscriber<u64>>,
    block: bool,
}

impl Duplex for BcastDuplex {
    #[inline]
    fn send(&mut self, v: u64) -> Res {
        let tx = self.tx.as_mut().ok_or("no publisher on this side")?;
        if self.block {
            return tx.publish(v).map_err(|e| e.to_string().into());
        }
        let mut spin = Spin::new();
        loop {
            match tx.try_publish(v) {
                Ok(()) => return Ok(()),
                Err(TryPushError::Full(_)) => spin.wait(),
                Err(e) => return Err(e.to_string().into()),
            }
        }
    }

    #[inline]
    fn recv(&mut self) -> Res<u64> {
        let rx = self.rx.as_mut().ok_or("no subscriber on this side")?;
        if self.block {
            return rx.recv().map_err(|e| e.to_string().into());
        }
        let mut spin = Spin::new();
        loop {
            match rx.try_recv() {
                Ok(v) => return Ok(v),
                Err(TryRecvError::Empty) => spin.wait(),
                Err(e) => return Err(e.to_string().into()),
            }
        }
    }
}

mod rf {
    use super::*;

    use ringfire::{
        CleanupMode, FlowControl, FutexWait, RingConsumer, RingProducer, RingProducerBuilder,
        RingfireError,
    };

    fn rf_path(name: &str) -> String {
        format!("/dev/shm{name}")
    }

    /// A lossless ringfire ring in /dev/shm, removed by its guard (it is
    /// created persistent so that it goes whichever way the bench ends).
    fn rf_create(name: &str, built: &mut Built) -> Res<RingProducer<u64>> {
        let tx = RingProducerBuilder::new(CAP as u64)
            .flow_control(FlowControl::LosslessBackpressure)
            .cleanup_mode(CleanupMode::Persistent)
            .build::<u64, _>(rf_path(name))?;
        built.guards.push(Cleanup::new(Cleanup::Shm(name.into())));
        Ok(tx)
    }

    fn rf_attach(name: &str) -> Res<RingConsumer<u64>> {
        Ok(RingConsumer::<u64>::attach(rf_path(name))?)
    }

    pub fn ringfire_build(kind: Kind, subs: usize, built: &mut Built, spec: &mut PeerSpec) -> Res {
        let ab = unique_name("rfab");
        let tx = rf_create(&ab, built)?;
        spec.names.push(ab);
        // The way back is created by side B (a ringfire producer creates
        // its file); side A attaches to it before its first call.
        let mut back = None;
        if subs == 1 {
            let ba = unique_name("rfba");
            built.guards.push(Cleanup::new(Cleanup::Shm(ba.clone())));
            spec.names.push(ba.clone());
            back = Some(ba);
        }
        built.a.push(Box::new(RfDuplex {
            tx: Some(tx),
            rx: None,
            back,
            futex: kind == Kind::RingfireFutex,
            wait: FutexWait::default(),
        }));
        Ok(())
    }

    pub fn ringfire_open_b(spec: &PeerSpec, b: &mut Vec<Box<dyn Duplex>>) -> Res {
        let futex = spec.kind == Kind::RingfireFutex;
        let ab = spec.names.first().ok_or("missing --names")?;
        if spec.subs == 1 {
            let ba = spec.names.get(1).ok_or("missing --names")?;
            let tx = RingProducerBuilder::new(CAP as u64)
                .flow_control(FlowControl::LosslessBackpressure)
                .cleanup_mode(CleanupMode::Persistent)
                .build::<u64, _>(rf_path(ba))?;
            b.push(Box::new(RfDuplex {
                tx: Some(tx),
                rx: Some(rf_attach(ab)?),
                back: None,
                futex,
                wait: FutexWait::default(),
            }));
        } else {
            for _ in 0..spec.subs {
                b.push(Box::new(RfDuplex {
                    tx: None,
                    rx: Some(rf_attach(ab)?),
                    back: None,
                    futex,
                    wait: FutexWait::default(),
                }));
            }
        }
        Ok(())
    }

    /// ringfire SPMC, lossless. Side A attaches to the way back (made by
    /// side B's producer) on its first call, before it has sent anything,
    /// so nothing B sends back can precede the attach.
    struct RfDuplex {
        tx: Option<RingProducer<u64>>,
        rx: Option<RingConsumer<u64>>,
        /// The way back, still to attach to.
        back: Option<String>,
        futex: bool,
        wait: FutexWait,
    }

    impl RfDuplex {
        #[inline]
        fn attach_back(&mut self) -> Res {
            if let Some(ba) = self.back.take() {
                self.rx = Some(rf_attach(&ba)?);
            }
            Ok(())
        }
    }

    impl Duplex for RfDuplex {
        #[inline]
        fn send(&mut self, v: u64) -> Res {
            self.attach_back()?;
            let tx = self.tx.as_mut().ok_or("no producer on this side")?;
            if self.futex {
                // Its blocking push: spin, yield, then 10 us sleeps.
                tx.push(&v);
                return Ok(());
            }
            let mut spin = Spin::new();
            loop {
                match tx.try_push(&v) {
                    Ok(()) => return Ok(()),
                    Err(RingfireError::BackpressureBufferFull) => spin.wait(),
                    Err(e) => return Err(e.to_string().into()),
                }
            }
        }

        #[inline]
        fn recv(&mut self) -> Res<u64> {
            self.attach_back()?;
            let rx = self.rx.as_mut().ok_or("no consumer on this side")?;
            if self.futex {
                return Ok(rx.recv_blocking(&mut self.wait));
            }
            let mut spin = Spin::new();
            loop {
                match rx.try_recv() {
                    Some(v) => return Ok(v),
                    None => spin.wait(),
                }
            }
        }
    }
}

#[cfg(feature = "iceoryx2")]
mod iox {
    use super::*;

    use std::path::PathBuf;

    use iceoryx2::port::publisher::Publisher as IoxPublisher;
    use iceoryx2::port::subscriber::Subscriber as IoxSubscriber;
    use iceoryx2::prelude::*;

    type Svc = ipc_threadsafe::Service;

    /// Where one contender's iceoryx2 objects live: a root directory of its
    /// own under the temp dir and a file prefix of its own for /dev/shm,
    /// both removed by guards, so a run leaves nothing behind even if a
    /// peer process is killed.
    struct IoxPlace {
        root: String,
        prefix: String,
    }

    fn iox_config(p: &IoxPlace) -> Res<Config> {
        let mut c = Config::default();
        c.global.prefix = FileName::new(p.prefix.as_bytes()).map_err(|e| format!("{e:?}"))?;
        c.global
            .set_root_path(&Path::new(p.root.as_bytes()).map_err(|e| format!("{e:?}"))?);
        Ok(c)
    }

    fn iox_node(p: &IoxPlace) -> Res<Node<Svc>> {
        set_log_level(LogLevel::Error);
        NodeBuilder::new()
            .config(&iox_config(p)?)
            // shmq bench handles SIGINT/SIGTERM itself (sys::cleanup_on_signals).
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<Svc>()
            .map_err(|e| format!("iceoryx2 node: {e:?}").into())
    }

    type IoxFactory = iceoryx2::service::port_factory::publish_subscribe::PortFactory<Svc, u64, ()>;

    /// A lossless service: no safe overflow (a full subscriber buffer is
    /// never overwritten), no history, `CAP` samples per subscriber.
    fn iox_service(node: &Node<Svc>, name: &str) -> Res<IoxFactory> {
        let sn: ServiceName = name.try_into().map_err(|e| format!("{e:?}"))?;
        node.service_builder(&sn)
            .publish_subscribe::<u64>()
            .enable_safe_overflow(false)
            .history_size(0)
            .subscriber_max_buffer_size(CAP)
            .max_subscribers(4)
            .max_publishers(1)
            .open_or_create()
            .map_err(|e| format!("iceoryx2 service {name}: {e:?}").into())
    }

    fn iox_publisher(f: &IoxFactory) -> Res<IoxPublisher<Svc, u64, ()>> {
        f.publisher_builder()
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()
            .map_err(|e| format!("iceoryx2 publisher: {e:?}").into())
    }

    fn iox_subscriber(f: &IoxFactory) -> Res<IoxSubscriber<Svc, u64, ()>> {
        f.subscriber_builder()
            .buffer_size(CAP)
            .create()
            .map_err(|e| format!("iceoryx2 subscriber: {e:?}").into())
    }

    pub fn iceoryx2_build(subs: usize, built: &mut Built, spec: &mut PeerSpec) -> Res {
        let tag = unique_name("iox");
        let tag = tag.trim_start_matches('/');
        let root: PathBuf = std::env::temp_dir().join(tag);
        let root = format!("{}/", root.to_str().ok_or("non-UTF-8 temp dir")?);
        // /dev/shm names are "<prefix><hash>..."; FileName allows no '/'.
        let prefix = format!("{}_", tag.replace('-', "_"));
        built
            .guards
            .push(Cleanup::new(Cleanup::ShmPrefix(prefix.clone())));
        built
            .guards
            .push(Cleanup::new(Cleanup::Dir(root.clone().into())));
        let place = IoxPlace { root, prefix };
        let node = iox_node(&place)?;
        let ab = format!("shmq-bench/{tag}/ab");
        let f_ab = iox_service(&node, &ab)?;
        let tx = iox_publisher(&f_ab)?;
        let mut back = None;
        spec.names = vec![place.root.clone(), place.prefix.clone(), ab];
        if subs == 1 {
            let ba = format!("shmq-bench/{tag}/ba");
            let f_ba = iox_service(&node, &ba)?;
            back = Some((iox_subscriber(&f_ba)?, f_ba));
            spec.names.push(ba);
        }
        let (rx, f_ba) = back.map_or((None, None), |(s, f)| (Some(s), Some(f)));
        built.a.push(Box::new(IoxDuplex {
            tx: Some(tx),
            rx,
            _factories: vec![Some(f_ab), f_ba].into_iter().flatten().collect(),
            _node: node,
        }));
        Ok(())
    }

    pub fn iceoryx2_open_b(spec: &PeerSpec, b: &mut Vec<Box<dyn Duplex>>) -> Res {
        let n = |i: usize| -> Res<&str> {
            spec.names
                .get(i)
                .map(String::as_str)
                .ok_or_else(|| "missing --names".into())
        };
        let place = IoxPlace {
            root: n(0)?.into(),
            prefix: n(1)?.into(),
        };
        if spec.subs == 1 {
            let node = iox_node(&place)?;
            let f_ab = iox_service(&node, n(2)?)?;
            let f_ba = iox_service(&node, n(3)?)?;
            b.push(Box::new(IoxDuplex {
                tx: Some(iox_publisher(&f_ba)?),
                rx: Some(iox_subscriber(&f_ab)?),
                _factories: vec![f_ab, f_ba],
                _node: node,
            }));
        } else {
            for _ in 0..spec.subs {
                let node = iox_node(&place)?;
                let f_ab = iox_service(&node, n(2)?)?;
                b.push(Box::new(IoxDuplex {
                    tx: None,
                    rx: Some(iox_subscriber(&f_ab)?),
                    _factories: vec![f_ab],
                    _node: node,
                }));
            }
        }
        Ok(())
    }

    /// iceoryx2 publish-subscribe, `send_copy` and `receive`; the
    /// subscriber polls (publish-subscribe has no blocking receive of its
    /// own: that takes an event service and a WaitSet besides).
    struct IoxDuplex {
        tx: Option<IoxPublisher<Svc, u64, ()>>,
        rx: Option<IoxSubscriber<Svc, u64, ()>>,
        // Drop order: ports, then their services, then the node.
        _factories: Vec<IoxFactory>,
        _node: Node<Svc>,
    }

    impl Duplex for IoxDuplex {
        #[inline]
        fn send(&mut self, v: u64) -> Res {
            let tx = self.tx.as_ref().ok_or("no publisher on this side")?;
            tx.send_copy(v)
                .map(|_| ())
                .map_err(|e| format!("iceoryx2 send: {e:?}").into())
        }

        #[inline]
        fn recv(&mut self) -> Res<u64> {
            let rx = self.rx.as_ref().ok_or("no subscriber on this side")?;
            let mut spin = Spin::new();
            loop {
                match rx.receive() {
                    Ok(Some(s)) => return Ok(*s),
                    Ok(None) => spin.wait(),
                    Err(e) => return Err(format!("iceoryx2 receive: {e:?}").into()),
                }
            }
        }
    }
}
