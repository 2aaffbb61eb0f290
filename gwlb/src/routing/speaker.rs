//! The BGP speaker: a BIRD 2 child process, configured and supervised from one thread.
//!
//! [`Speaker::start`] writes BIRD's configuration (withdrawn), starts `bird -f` in gwlb's
//! network namespace and waits until its control socket answers; a missing binary or a BIRD
//! that does not come up is a [`SpeakerError`] naming it. The thread then:
//! - applies the announcement the control loop asks for ([`Speaker::announce`], never
//!   blocking the loop) by rewriting the file and `birdc configure`;
//! - reads the sessions (`birdc show protocols`) every second into the shared
//!   [`RoutingReport`];
//! - restarts BIRD (with backoff, counted) if it exits, logging why;
//! - on drop, withdraws, then stops BIRD.
//!
//! BIRD is started with `PR_SET_PDEATHSIG = SIGKILL`: when gwlb dies (even `kill -9`), BIRD
//! dies with it, its sessions close and the routers withdraw this node at once. Every
//! `birdc` call has a deadline, so a hung BIRD cannot hang the thread for long.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::{bird, RoutingReport};
use crate::config::Bgp;

/// Longest a `birdc` call may take.
const BIRDC_DEADLINE: Duration = Duration::from_secs(2);
/// How long BIRD gets to answer on its control socket after a start.
const START_DEADLINE: Duration = Duration::from_secs(5);
/// How often the sessions are read.
const POLL: Duration = Duration::from_secs(1);

/// Why the speaker could not start.
#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    /// The state directory could not be created or written.
    #[error("bgp.state_dir {dir}: {source}")]
    StateDir {
        /// The directory.
        dir: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The BIRD binary could not be run.
    #[error("bgp.bird {bird}: cannot run the BGP daemon: {source}")]
    Spawn {
        /// The binary.
        bird: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// BIRD exited or did not answer on its control socket.
    #[error("bgp.bird {bird}: the BGP daemon did not come up: {why}")]
    NotUp {
        /// The binary.
        bird: PathBuf,
        /// What was seen (its exit status and the end of its log).
        why: String,
    },
    /// The speaker thread could not start.
    #[error("cannot start the BGP speaker thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Paths of one BIRD instance under `bgp.state_dir`.
#[derive(Debug, Clone)]
struct Files {
    conf: PathBuf,
    ctl: PathBuf,
    log: PathBuf,
}

impl Files {
    fn new(dir: &Path) -> Files {
        Files {
            conf: dir.join("bird.conf"),
            ctl: dir.join("bird.ctl"),
            log: dir.join("bird.log"),
        }
    }
}

/// What the control loop asks of the speaker thread.
enum Ask {
    /// Announce (`true`) or withdraw, with the reason shown while withdrawn.
    Announce(bool, Option<String>),
}

/// The running speaker. Dropping it withdraws and stops BIRD.
#[derive(Debug)]
pub struct Speaker {
    asks: Option<Sender<Ask>>,
    report: Arc<Mutex<RoutingReport>>,
    thread: Option<JoinHandle<()>>,
}

/// Runs `birdc -s ctl args`, killing it after [`BIRDC_DEADLINE`]; its stdout, or `None`.
fn birdc(ctl: &Path, args: &[&str]) -> Option<String> {
    let mut child = Command::new("birdc")
        .arg("-s")
        .arg(ctl)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + BIRDC_DEADLINE;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                if let Some(mut o) = child.stdout.take() {
                    use std::io::Read;
                    let _ = o.read_to_string(&mut out);
                }
                return status.success().then_some(out);
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// Starts BIRD on `files` and waits until it answers.
fn start_bird(bgp: &Bgp, files: &Files) -> Result<Child, SpeakerError> {
    let log = std::fs::File::create(&files.log).map_err(|source| SpeakerError::StateDir {
        dir: bgp.state_dir.clone(),
        source,
    })?;
    let log2 = log.try_clone().map_err(|source| SpeakerError::StateDir {
        dir: bgp.state_dir.clone(),
        source,
    })?;
    let mut cmd = Command::new(&bgp.bird);
    cmd.arg("-f")
        .arg("-c")
        .arg(&files.conf)
        .arg("-s")
        .arg(&files.ctl)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
        // which is async-signal-safe; it allocates nothing and touches no lock.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().map_err(|source| SpeakerError::Spawn {
        bird: bgp.bird.clone(),
        source,
    })?;
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(SpeakerError::NotUp {
                bird: bgp.bird.clone(),
                why: format!("exited with {status}: {}", log_tail(&files.log)),
            });
        }
        if birdc(&files.ctl, &["show", "status"]).is_some() {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SpeakerError::NotUp {
                bird: bgp.bird.clone(),
                why: format!(
                    "no answer on {} within {START_DEADLINE:?}: {}",
                    files.ctl.display(),
                    log_tail(&files.log)
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_config(bgp: &Bgp, files: &Files, announce: bool) -> std::io::Result<()> {
    let tmp = files.conf.with_extension("conf.new");
    std::fs::write(&tmp, bird::config(bgp, announce))?;
    std::fs::rename(&tmp, &files.conf)
}

impl Speaker {
    /// Starts BIRD for `bgp`, withdrawn, and the thread that runs it.
    pub fn start(bgp: Bgp) -> Result<Speaker, SpeakerError> {
        let state_err = |source| SpeakerError::StateDir {
            dir: bgp.state_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&bgp.state_dir).map_err(state_err)?;
        let files = Files::new(&bgp.state_dir);
        let _ = std::fs::remove_file(&files.ctl);
        write_config(&bgp, &files, false).map_err(|source| SpeakerError::StateDir {
            dir: bgp.state_dir.clone(),
            source,
        })?;
        let child = start_bird(&bgp, &files)?;
        let report = Arc::new(Mutex::new(RoutingReport {
            prefixes: bgp.announced().iter().map(ToString::to_string).collect(),
            announced: false,
            withdrawn_because: Some("starting".into()),
            daemon: format!("running (pid {})", child.id()),
            daemon_restarts: 0,
            sessions: bird::sessions(&bgp, ""),
        }));
        let (asks, rx) = crossbeam_channel::unbounded();
        let shared = Arc::clone(&report);
        let thread = std::thread::Builder::new()
            .name("gwlb-bgp".into())
            .spawn(move || run(bgp, files, child, rx, shared))
            .map_err(SpeakerError::Thread)?;
        Ok(Speaker {
            asks: Some(asks),
            report,
            thread: Some(thread),
        })
    }

    /// Asks for the prefixes to be announced or withdrawn (`why`: the reason shown while
    /// withdrawn). Returns at once; the thread applies it.
    pub fn announce(&self, on: bool, why: Option<String>) {
        if let Some(a) = &self.asks {
            let _ = a.send(Ask::Announce(on, why));
        }
    }

    /// The announcement and the sessions as last seen.
    pub fn report(&self) -> RoutingReport {
        self.report
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        self.asks = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn stop_bird(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid, which has not been reaped yet (try_wait/wait
    // below reap it), so the pid cannot have been reused.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The speaker thread (see the module docs).
fn run(
    bgp: Bgp,
    files: Files,
    mut child: Child,
    asks: Receiver<Ask>,
    report: Arc<Mutex<RoutingReport>>,
) {
    let update = |f: &mut dyn FnMut(&mut RoutingReport)| {
        f(&mut report.lock().unwrap_or_else(PoisonError::into_inner));
    };
    let mut announced = false;
    let mut want = false;
    let mut why: Option<String> = Some("starting".into());
    let mut backoff = Duration::from_secs(1);
    let mut restart_at: Option<Instant> = None;
    let mut alive = true;
    let mut last_poll = Instant::now() - POLL;
    loop {
        match asks.recv_timeout(Duration::from_millis(100)) {
            Ok(Ask::Announce(on, reason)) => {
                want = on;
                why = reason;
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        // Keep BIRD running.
        if alive {
            if let Ok(Some(status)) = child.try_wait() {
                alive = false;
                announced = false;
                tracing::error!(
                    "BGP daemon exited ({status}): {}; the prefixes are not announced until it is back",
                    log_tail(&files.log)
                );
                update(&mut |r| {
                    r.daemon = format!("exited ({status}), restarting");
                    r.announced = false;
                    r.sessions = bird::sessions(&bgp, "");
                });
                restart_at = Some(Instant::now() + backoff);
            }
        }
        if !alive && restart_at.is_some_and(|t| Instant::now() >= t) {
            let _ = write_config(&bgp, &files, false);
            match start_bird(&bgp, &files) {
                Ok(c) => {
                    tracing::info!(pid = c.id(), "BGP daemon restarted");
                    update(&mut |r| {
                        r.daemon = format!("running (pid {})", c.id());
                        r.daemon_restarts += 1;
                    });
                    child = c;
                    alive = true;
                    backoff = Duration::from_secs(1);
                }
                Err(e) => {
                    tracing::error!("BGP daemon restart failed: {e}");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    restart_at = Some(Instant::now() + backoff);
                }
            }
        }
        // The announcement.
        if alive && want != announced {
            let applied = write_config(&bgp, &files, want).is_ok()
                && birdc(&files.ctl, &["configure"]).is_some();
            if applied {
                announced = want;
                if want {
                    tracing::info!(prefixes = ?bgp.announced(), "announcing the service prefixes");
                } else {
                    tracing::warn!(
                        prefixes = ?bgp.announced(),
                        "withdrawing the service prefixes: {}",
                        why.as_deref().unwrap_or("")
                    );
                }
            } else {
                tracing::error!("BGP daemon did not take its new configuration (will retry)");
            }
        }
        update(&mut |r| {
            r.announced = announced;
            r.withdrawn_because = if announced { None } else { why.clone() };
        });
        // The sessions.
        if alive && last_poll.elapsed() >= POLL {
            last_poll = Instant::now();
            let out = birdc(&files.ctl, &["show", "protocols"]).unwrap_or_default();
            let sessions = bird::sessions(&bgp, &out);
            update(&mut |r| {
                for (new, old) in sessions.iter().zip(&r.sessions) {
                    if new.established != old.established {
                        if new.established {
                            tracing::info!(neighbor = %new.neighbor, "BGP session established");
                        } else {
                            tracing::warn!(neighbor = %new.neighbor, state = %new.state, "BGP session down");
                        }
                    }
                }
                r.sessions = sessions.clone();
            });
        }
    }
    // Stopping: withdraw first (routers move traffic away gracefully), then stop BIRD.
    if alive {
        if announced && write_config(&bgp, &files, false).is_ok() {
            let _ = birdc(&files.ctl, &["configure"]);
        }
        stop_bird(&mut child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bgp(bird: &str, dir: &Path) -> Bgp {
        super::super::test_bgp(&format!(
            "bird = \"{bird}\"\nstate_dir = \"{}\"",
            dir.display()
        ))
    }

    /// A missing BGP daemon, or one that exits at once, is an error naming `bgp.bird`.
    #[test]
    fn a_daemon_that_cannot_run_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("gwlb-speaker-test-{}", std::process::id()));
        let e = Speaker::start(bgp("/nonexistent/bird", &dir)).unwrap_err();
        assert!(matches!(e, SpeakerError::Spawn { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("bgp.bird /nonexistent/bird: cannot run"),
            "{e}"
        );
        // /bin/false runs and exits 1 at once.
        let e = Speaker::start(bgp("/bin/false", &dir)).unwrap_err();
        assert!(matches!(e, SpeakerError::NotUp { .. }), "{e}");
        assert!(
            e.to_string().contains("did not come up: exited with"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
