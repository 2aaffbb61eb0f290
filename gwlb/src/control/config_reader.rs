//! Reads and validates the configuration file for reloads, off the control loop.
//!
//! Reading and validating a file takes time the control loop must not lose: it answers the
//! API, turns health results into snapshots and expires drains. A [`ConfigReader`] is one
//! thread, started once with the gateway, that does [`Config::load`] on request and hands the
//! result back on a channel the control loop selects on; the loop then applies it (or keeps
//! the running configuration) as it would any change. A file that is slow to read, or large
//! (up to [`crate::config::MAX_CONFIG_BYTES`]), delays only the reload that asked for it.
//!
//! [`Reloads`] keeps the requests in order: a request made while a read is in progress is
//! served by a new read that starts after it (never by the older one, which may predate the
//! edit the operator is reloading for), and every request waiting on the same read shares its
//! result.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::config::{Config, ConfigError};

/// One read of the configuration file: the file and what came of it.
pub type ReadResult = Result<Config, ConfigError>;

/// The reader thread. Dropping it stops the thread (after the read in progress, if any).
#[derive(Debug)]
pub struct ConfigReader {
    path: PathBuf,
    requests: Option<Sender<()>>,
    results: Receiver<ReadResult>,
    thread: Option<JoinHandle<()>>,
}

impl ConfigReader {
    /// Starts the reader thread for `path`.
    pub fn start(path: PathBuf) -> std::io::Result<ConfigReader> {
        // One request may wait while another is read; [`Reloads`] never queues more.
        let (requests, request_rx) = crossbeam_channel::bounded::<()>(1);
        let (result_tx, results) = crossbeam_channel::bounded(1);
        let file = path.clone();
        let thread = std::thread::Builder::new()
            .name("gwlb-config-read".into())
            .spawn(move || {
                for () in request_rx.iter() {
                    if result_tx.send(Config::load(&file)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(ConfigReader {
            path,
            requests: Some(requests),
            results,
            thread: Some(thread),
        })
    }

    /// The file this reader reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where results arrive, one per request.
    pub fn results(&self) -> &Receiver<ReadResult> {
        &self.results
    }

    /// Asks for one read. `false` if the reader cannot take it (a read already waits, or the
    /// thread is gone); [`Reloads`] never asks twice while one is outstanding.
    fn request(&self) -> bool {
        match self.requests.as_ref().map(|r| r.try_send(())) {
            Some(Ok(())) => true,
            Some(Err(TrySendError::Full(()) | TrySendError::Disconnected(()))) | None => false,
        }
    }
}

impl Drop for ConfigReader {
    fn drop(&mut self) {
        // Closing the request channel ends the thread's loop.
        self.requests = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The reloads asked for and not yet answered, each identified by what the caller needs to
/// answer it (`W`: a reply channel, or nothing for a SIGHUP).
#[derive(Debug)]
pub struct Reloads<W> {
    reader: ConfigReader,
    /// Waiting on the read in progress.
    reading: Option<Vec<W>>,
    /// Asked for after that read started: served by the next one.
    next: Vec<W>,
}

/// Why a reload could not even be asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the configuration reader thread is gone")]
pub struct ReaderGone;

impl<W> Reloads<W> {
    /// No reload in progress.
    pub fn new(reader: ConfigReader) -> Self {
        Reloads {
            reader,
            reading: None,
            next: Vec::new(),
        }
    }

    /// The reader (its path and result channel).
    pub fn reader(&self) -> &ConfigReader {
        &self.reader
    }

    /// Asks for a reload on behalf of `waiter`: a read starts now, or after the one in
    /// progress. On error `waiter` is handed back.
    pub fn request(&mut self, waiter: W) -> Result<(), (W, ReaderGone)> {
        if self.reading.is_some() {
            self.next.push(waiter);
            return Ok(());
        }
        if !self.reader.request() {
            return Err((waiter, ReaderGone));
        }
        self.reading = Some(vec![waiter]);
        Ok(())
    }

    /// The result of the read in progress has arrived: returns the waiters it answers and
    /// starts the read for the requests made since (if any). If that read cannot be asked
    /// for, its waiters are returned as the second value, to be answered with [`ReaderGone`].
    pub fn finished(&mut self) -> (Vec<W>, Vec<W>) {
        let done = self.reading.take().unwrap_or_default();
        if self.next.is_empty() {
            return (done, Vec::new());
        }
        let next = std::mem::take(&mut self.next);
        if self.reader.request() {
            self.reading = Some(next);
            (done, Vec::new())
        } else {
            (done, next)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const GOOD: &str = include_str!("../../examples/pcap-offline.toml");

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "gwlb-config-reader-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn read_one(r: &Reloads<u32>) -> ReadResult {
        r.reader()
            .results()
            .recv_timeout(Duration::from_secs(10))
            .expect("a result")
    }

    #[test]
    fn reads_validate_like_a_file_and_name_the_field() {
        let d = dir();
        let path = d.join("gwlb.toml");
        std::fs::write(&path, GOOD).unwrap();
        let mut r = Reloads::new(ConfigReader::start(path.clone()).unwrap());
        r.request(1).unwrap();
        assert!(read_one(&r).is_ok());
        assert_eq!(r.finished(), (vec![1], vec![]));

        std::fs::write(&path, "[dataplane]\nburst_size = \"big\"\n").unwrap();
        r.request(2).unwrap();
        let e = read_one(&r).expect_err("broken file");
        assert!(e.to_string().contains("burst_size"), "{e}");
        assert_eq!(r.finished().0, vec![2]);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let d = dir();
        let path = d.join("fifo.toml");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let mut r = Reloads::new(ConfigReader::start(path).unwrap());
        r.request(1).unwrap();
        let e = read_one(&r).expect_err("a FIFO is no configuration file");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn requests_during_a_read_get_a_later_read_and_share_it() {
        let d = dir();
        let path = d.join("gwlb.toml");
        std::fs::write(&path, GOOD).unwrap();
        let mut r = Reloads::new(ConfigReader::start(path).unwrap());
        r.request(1).unwrap();
        r.request(2).unwrap();
        r.request(3).unwrap();
        read_one(&r).unwrap();
        // The first read answers the first request; the two asked during it share the next.
        assert_eq!(r.finished(), (vec![1], vec![]));
        read_one(&r).unwrap();
        assert_eq!(r.finished(), (vec![2, 3], vec![]));
        assert!(r
            .reader()
            .results()
            .recv_timeout(Duration::from_millis(200))
            .is_err());
        std::fs::remove_dir_all(d).unwrap();
    }
}
