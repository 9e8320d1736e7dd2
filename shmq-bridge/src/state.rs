//! The in-bridge's record of what reached its local ring, so a restarted
//! bridge asks for exactly what is missing.
//!
//! A 32-byte file: magic, stream id, `committed` (every item of the stream
//! before it is in the ring) and `pending` (the end of the frame being
//! pushed). Each update is one `pwrite` of the whole record, which a killed
//! process either made or did not: the kernel keeps it in the page cache
//! whatever happens to the process (not across a power cut; nor does the
//! shared-memory ring itself survive one).
//!
//! Before a frame is pushed `pending` is set to its end, and after it both
//! are. A bridge that finds `pending > committed` at start knows the items
//! in between may be in the ring once already (the previous bridge died
//! while pushing them): it reports that range, then asks for everything
//! from `committed`. Those are the only duplicates a crash can make.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::BridgeError;

const MAGIC: [u8; 8] = *b"SQBSTAT1";
const LEN: usize = 32;

/// The state file, open.
pub struct State {
    file: File,
    path: PathBuf,
    /// The stream the record is about (0: none yet).
    pub stream: u64,
    /// Items of `stream` before this sequence number are all in the ring.
    pub committed: u64,
    /// The end of the frame being pushed (`committed` when none is).
    pub pending: u64,
}

impl State {
    /// Open or create the state file at `path`.
    pub fn open(path: &Path) -> Result<State, BridgeError> {
        let err = |error| BridgeError::State {
            path: path.to_path_buf(),
            error,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(err)?;
        let mut b = [0u8; LEN];
        let n = file.read_at(&mut b, 0).map_err(err)?;
        let mut s = State {
            file,
            path: path.to_path_buf(),
            stream: 0,
            committed: 0,
            pending: 0,
        };
        if n == 0 {
            return Ok(s);
        }
        if n != LEN || b[..8] != MAGIC {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not a shmq-bridge state file (remove it to start afresh, which forgets \
                 what reached the ring)",
            )));
        }
        let at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        s.stream = at(8);
        s.committed = at(16);
        s.pending = at(24).max(s.committed);
        Ok(s)
    }

    fn write(&mut self) -> Result<(), BridgeError> {
        let mut b = [0u8; LEN];
        b[..8].copy_from_slice(&MAGIC);
        b[8..16].copy_from_slice(&self.stream.to_le_bytes());
        b[16..24].copy_from_slice(&self.committed.to_le_bytes());
        b[24..32].copy_from_slice(&self.pending.to_le_bytes());
        self.file
            .write_all_at(&b, 0)
            .map_err(|error| BridgeError::State {
                path: self.path.clone(),
                error,
            })
    }

    /// Start recording `stream` from `first`.
    pub fn begin(&mut self, stream: u64, first: u64) -> Result<(), BridgeError> {
        self.stream = stream;
        self.committed = first;
        self.pending = first;
        self.write()
    }

    /// Items up to `end` are about to be pushed.
    pub fn pending(&mut self, end: u64) -> Result<(), BridgeError> {
        self.pending = end;
        self.write()
    }

    /// Items up to `end` are in the ring.
    pub fn commit(&mut self, end: u64) -> Result<(), BridgeError> {
        self.committed = end;
        self.pending = end;
        self.write()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_refuses_foreign_files() {
        let dir = std::env::temp_dir().join(format!("shmq-bridge-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s");
        {
            let mut s = State::open(&p).unwrap();
            assert_eq!((s.stream, s.committed, s.pending), (0, 0, 0));
            s.begin(42, 0).unwrap();
            s.commit(10).unwrap();
            s.pending(25).unwrap();
        }
        let s = State::open(&p).unwrap();
        assert_eq!((s.stream, s.committed, s.pending), (42, 10, 25));
        std::fs::write(&p, b"something else entirely, 32 byte").unwrap();
        assert!(matches!(State::open(&p), Err(BridgeError::State { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
