//! Running the bridges inside a service, as the library docs show.
//!
//! Host A: `cargo run -p shmq-bridge --example embed -- out /orders orders/eu`
//! (listens on tcp/0.0.0.0:7447); host B: `... -- in orders/eu /orders
//! tcp/HOST_A:7447` (connects, creates the ring like A's if missing).

use shmq_bridge::{BridgeError, Create, In, Out};

fn main() -> Result<(), BridgeError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["out", ring, key] => {
            let session = shmq_bridge::open_session(&["tcp/0.0.0.0:7447".into()], &[], None)?;
            let report = Out::new(ring, key).run(&session)?;
            println!("{} items sent", report.items);
        }
        ["in", key, ring, connect] => {
            let session = shmq_bridge::open_session(&[], &[connect.to_string()], None)?;
            let mut bridge = In::new(key, ring, std::env::temp_dir().join("embed.state"));
            bridge.create = Some(Create::default()); // make the ring like the source's
            let report = bridge.run(&session)?;
            println!(
                "{} items in, {} duplicates dropped",
                report.items, report.duplicates
            );
        }
        _ => {
            return Err(BridgeError::Usage(
                "usage: embed out RING KEY | embed in KEY RING ENDPOINT".into(),
            ))
        }
    }
    Ok(())
}
