//! Mapping redb failures onto [`StoreError`], naming the file.

use crate::port::StoreError;
use std::path::Path;

/// Maps a redb error of operation `op` on the file at `path`: a damaged file is
/// `Corrupt`, anything else (I/O, a closed database) is `Unavailable`.
pub(super) fn failed<'a, E: Into<redb::Error>>(
    path: &'a Path,
    op: &'static str,
) -> impl FnOnce(E) -> StoreError + use<'a, E> {
    move |e| match e.into() {
        redb::Error::Corrupted(reason) => {
            StoreError::Corrupt(format!("embedded store {}: {op}: the file is damaged: {reason}", path.display()))
        }
        e => StoreError::Unavailable(format!("embedded store {}: {op}: {e}", path.display())),
    }
}

/// Maps a failure to open the file at `path`.
pub(super) fn open_failed(path: &Path, e: redb::DatabaseError) -> StoreError {
    let path = path.display();
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch => {
            StoreError::Unavailable(format!(
                "cannot open embedded store {path}: the file is locked, already open in another process \
                 (another `clawhive up`?) or in this one ({e})"
            ))
        }
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(reason)) => StoreError::Corrupt(format!(
            "cannot open embedded store {path}: the file is damaged or is not a Clawhive store: {reason}"
        )),
        // What redb reports for a file that is not a redb database at all.
        redb::DatabaseError::Storage(redb::StorageError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            StoreError::Corrupt(format!("cannot open embedded store {path}: the file is not a Clawhive store: {e}"))
        }
        e => StoreError::Unavailable(format!("cannot open embedded store {path}: {e}")),
    }
}
