//! `file://` sources: a path inside the initramfs (percent-decoded), copied through the same
//! sink as a download. Only a regular file is read, and only as many bytes as it had when
//! opened: a FIFO would block forever and a device (`/dev/zero`) never ends. Opened
//! non-blocking so even the `open` of a FIFO without a writer returns at once; the copy checks
//! the deadline per buffer.

use super::attempt::{AttemptError, Failure, Sink};
use super::response::State;
use crate::support::deadline::Deadline;
use reqwest::Url;
use std::io::{self, Read};
use std::path::Path;

/// Bytes read at a time (the size of the HTTP reader's buffers).
const BUF: usize = 256 << 10;

/// Copies the file `url` names into `sink`, from the start (a copy has nothing to resume).
pub fn copy<S: Sink + ?Sized>(
    url: &Url,
    state: &mut State,
    sink: &mut S,
    deadline: Deadline,
) -> Result<(), Failure<S::Error>> {
    let path = url.to_file_path().unwrap_or_else(|()| url.path().into());
    let shown = path.display().to_string();
    let ferr = |source| AttemptError::File {
        path: shown.clone(),
        source,
    };
    let f = open_regular(&path).map_err(ferr)?;
    let len = f.metadata().map_err(ferr)?.len();
    state.have = 0;
    state.total = Some(len);
    sink.begin(0, Some(len)).map_err(Failure::Sink)?;
    let mut r = io::Read::take(f, len);
    let mut buf = vec![0; BUF];
    loop {
        if deadline.passed() {
            return Err(AttemptError::Deadline.into());
        }
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ferr(e).into()),
        };
        sink.write(buf.get(..n).unwrap_or(&buf))
            .map_err(Failure::Sink)?;
        state.have = state.have.saturating_add(n as u64);
    }
    if state.have < len {
        return Err(AttemptError::Incomplete {
            got: state.have,
            expected: len,
        }
        .into());
    }
    Ok(())
}

fn open_regular(path: &Path) -> io::Result<std::fs::File> {
    let fd = crate::sys::fs::open_nonblocking(path)?;
    let f = std::fs::File::from(fd);
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(f)
}
