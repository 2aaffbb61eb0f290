//! Health checks of the appliances: TCP connect, HTTP or HTTPS GET and data-path probes, AWS
//! GWLB semantics.
//!
//! # Design
//!
//! One thread (`gwlb-health`) runs every probe of every target. Probes are non-blocking
//! sockets (socket2) multiplexed with `poll(2)`: a connect toward a dead or blackholed
//! appliance only occupies a slot in the poll set until its `timeout`, it never delays the
//! probes of other targets. At most [`MAX_IN_FLIGHT`] probes are open at once (file
//! descriptors are the bounded resource); a probe due while the set is full waits for a free
//! slot, it is delayed, not failed. A `UnixStream` pair wakes the thread for control
//! commands, so [`HealthChecker::update_targets`] and [`HealthChecker::stop`] take effect
//! at once whatever the intervals are.
//!
//! Schedule, per target:
//! - the first probe at a random point of the first interval (gateways restarted together do
//!   not probe in step);
//! - each next probe `interval × (1 ± jitter_percent/100)` after the start of the previous
//!   one (uniform; a xorshift generator seeded from the slot, the address and the clock), and
//!   never while the previous probe of the same target is still open: with `timeout >=
//!   interval` (which the configuration refuses) the period stretches to the probe time.
//!
//! A probe succeeds when
//! - TCP: the handshake completes (the socket is then closed with a FIN);
//! - HTTP: after the handshake, `GET {path} HTTP/1.1` with `Host`, `User-Agent: gwlb-health/1`
//!   and `Connection: close` is sent and the status line read back within `timeout` carries a
//!   code in `success_codes`. A server that answers without reading the request (gwlbtun)
//!   works: a failed send is only reported if no status line comes back either;
//! - HTTPS: the same over TLS (rustls, [`tls`]): the handshake, the request and the status
//!   line within `timeout`; the certificate is not verified unless `tls_verify` is set (as
//!   AWS does not verify), and a failed handshake is a failure naming rustls's reason
//!   (`TLS: invalid peer certificate: UnknownIssuer`);
//! - data path (`data_path = true`, after the TCP or HTTP stage passed, within the same
//!   `timeout`; or alone, `protocol = "geneve"`): a probe packet built by
//!   [`crate::data_path_probe`] with a random nonce is sent in Geneve from the source address,
//!   port 6081, to the appliance's port 6081, and comes back through the appliance with the
//!   same nonce, from the appliance's address, to that socket (the data path hands probe
//!   returns to the host). One UDP socket per source address carries every data-path probe;
//!   a reply that matches no open probe is ignored. Binding it (port 6081 of the source) is
//!   a local error when it fails.
//!
//! # State machine
//!
//! Three states ([`HealthState`]), as AWS has them:
//!
//! ```text
//!              healthy_threshold successes
//!   initial ───────────────────────────────> healthy
//!      │                                     │    ^
//!      │ unhealthy_threshold       unhealthy_│    │healthy_threshold
//!      │ failures                  threshold │    │successes
//!      │                           failures  v    │
//!      └───────────────────────────────────> unhealthy
//! ```
//!
//! A target starts **initial** when it is added ([`HealthChecker::spawn`],
//! [`HealthChecker::update_targets`]: gwlb's start, an API registration, a reload that adds a
//! target or brings back a draining one): it takes no new flows until `healthy_threshold`
//! consecutive probes pass, so a target that is still down at start never gets a flow. Its
//! first `unhealthy_threshold` consecutive failures make it unhealthy. Counts are consecutive:
//! a failure restarts the success count and the other way round.
//!
//! Two exceptions start **healthy**: a target whose check is disabled (it is never probed and
//! stays healthy), and a target of a group with `initial_state = "healthy"` (gwlb's behaviour
//! before issue 18: no waiting after a restart, at the price of flows sent to a target that
//! is still down until `unhealthy_threshold` probes have failed). Enabling the check of a
//! target that is already registered (healthy, its check was off) keeps it healthy until
//! its probes fail: turning checks on never blackholes a working group. Disabling the check
//! of an initial or unhealthy target makes it healthy at once.
//!
//! A [`HealthEvent`] is sent (and logged: `warn!` when a target goes down, `info!` when it
//! comes up) on every transition *out* of a state, never at registration: consumers start a
//! target in [`HealthState::at_registration`] (the registry does) and follow the events.
//! Nothing ever goes back to initial except by being added again.
//!
//! # Flap damping
//!
//! Off unless `flap_damping_half_life_s` is set. A target that keeps falling from healthy
//! and coming back (a crashing appliance restarting in a loop, a link that drops every few
//! seconds) takes flows at every return and loses them at every fall. With damping, each
//! fall from healthy adds [`FLAP_PENALTY`] (1) to a penalty that halves every half-life (the
//! scheme of BGP route flap damping, RFC 2439); the fall that takes it to [`FLAP_SUPPRESS`]
//! (2.5: three falls within about half a half-life) holds the target down: its passing checks are
//! counted and reported (`held down by flap damping ...` in its last reason), but it stays
//! unhealthy until the penalty has decayed below [`FLAP_REUSE`] (1), then turns healthy on
//! its next passing check with enough consecutive successes. The penalty is capped at
//! [`FLAP_MAX`] (8), so a target is never held for more than three half-lives after its
//! last fall. Falls from initial do not count: only a healthy target can flap.
//!
//! A *local* error (no file descriptor, no ephemeral port, the configured source address
//! cannot be bound) says nothing about the appliance: it is recorded in
//! [`TargetHealth::last_reason`] and logged, but counts neither as success nor as failure.
//! A gateway out of file descriptors must not declare its whole fleet dead.
//!
//! Cost, measured (release, loopback, `measure_cost_of_1000_targets` in `tests/health_checks.rs`):
//! 1000 TCP targets every 100 ms, 10 000 probes/s, take 54 µs of CPU per probe for the whole
//! process, kernel handshakes on both sides and the test's accepting server included (about
//! half a core). At AWS-like intervals (seconds) the thread is idle.
//!
//! # Threads and locks
//!
//! The state lives in the checker thread. After each round of results it copies the changed
//! targets into an `Arc<Mutex<..>>` that only [`HealthChecker::snapshot`] (the control plane)
//! reads. The data path never reads anything here: it learns about health through the events,
//! which the control plane turns into a new snapshot of the appliance pools.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{DataPathProbe, HealthCheck, InitialState, Probe};

mod tls;
use crate::data_path_probe::{self, Tunnel};

/// Most probes open at the same time (one socket each).
pub const MAX_IN_FLIGHT: usize = 1024;

/// Bytes read at most while looking for the HTTP status line.
const MAX_STATUS_LINE: usize = 1024;

/// Longest wait in `poll(2)` when nothing is due (a safety net; commands wake the thread).
const MAX_POLL_WAIT: Duration = Duration::from_secs(1);

/// Reason recorded for a target whose check is disabled.
const DISABLED: &str = "health check disabled";

/// Where a target stands with its health check (module documentation, "State machine").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthState {
    /// Just added, not yet `healthy_threshold` consecutive successes: no new flows.
    Initial,
    /// Passing its checks (or checks disabled): takes new flows.
    Healthy,
    /// Failed `unhealthy_threshold` consecutive checks: no new flows.
    Unhealthy,
}

impl HealthState {
    /// The state a target checked by `check` starts in: healthy when the check is disabled
    /// or the group starts targets healthy (`initial_state = "healthy"`), else initial.
    pub fn at_registration(check: &HealthCheck) -> HealthState {
        if !check.enabled || check.initial_state == InitialState::Healthy {
            HealthState::Healthy
        } else {
            HealthState::Initial
        }
    }

    /// Lower-case name (`initial`, `healthy`, `unhealthy`).
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Initial => "initial",
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
        }
    }
}

/// Why the health checker could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The thread or its wake-up socket pair could not be created.
    #[error("cannot start the health checker: {0}")]
    Spawn(#[source] io::Error),
    /// The checker thread is gone ([`HealthChecker::stop`] was called, or it panicked).
    #[error("the health checker has stopped")]
    Stopped,
}

/// One target (appliance) of one target group to check.
///
/// Identity is `(group, addr)`: [`HealthChecker::update_targets`] keeps the state of a target
/// whose identity is still listed, whatever else changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// The target's slot, as the control plane numbers them; carried into events and
    /// snapshots.
    pub slot: u16,
    /// Name of the target group.
    pub group: String,
    /// The appliance's own address (probes go to it directly, not Geneve-encapsulated).
    pub addr: IpAddr,
    /// The group's health check.
    pub check: HealthCheck,
    /// Source address to bind probes to (the gateway's own address on the appliance-facing
    /// port); `None` lets the kernel choose.
    pub source: Option<IpAddr>,
    /// The Geneve fields of the group's traffic, which data-path probes carry too.
    pub tunnel: Tunnel,
}

/// A target changed state. Every transition ends in healthy or unhealthy (nothing goes back
/// to [`HealthState::Initial`]), so the new state is a `bool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    /// [`ProbeTarget::slot`].
    pub slot: u16,
    /// [`ProbeTarget::group`].
    pub group: String,
    /// [`ProbeTarget::addr`].
    pub addr: IpAddr,
    /// The new state.
    pub healthy: bool,
    /// Why, e.g. `2 consecutive failures: connection refused`,
    /// `3 consecutive failures: timeout after 200ms: no HTTP status line`,
    /// `2 consecutive failures: HTTP 503 not in 200-399`, `5 consecutive successes: HTTP 200`.
    pub reason: String,
    /// Duration of the probe that caused the transition, when it got an answer.
    pub latency: Option<Duration>,
}

/// The state of one target, for the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    /// [`ProbeTarget::slot`].
    pub slot: u16,
    /// [`ProbeTarget::group`].
    pub group: String,
    /// [`ProbeTarget::addr`].
    pub addr: IpAddr,
    /// Whether the check is enabled (a disabled check is never probed and always healthy).
    pub enabled: bool,
    /// Current state.
    pub state: HealthState,
    /// Consecutive successful probes (0 after a failure).
    pub consecutive_ok: u32,
    /// Consecutive failed probes (0 after a success).
    pub consecutive_fail: u32,
    /// Outcome of the latest probe (`None` before the first one).
    pub last_reason: Option<String>,
    /// Duration of the latest probe that got an answer (handshake, or HTTP status line).
    pub last_latency: Option<Duration>,
}

enum Command {
    Update(Vec<ProbeTarget>, Sender<()>),
    Stop,
}

/// Handle of the health-check thread. Dropping it stops and joins the thread.
#[derive(Debug)]
pub struct HealthChecker {
    commands: Sender<Command>,
    wake: UnixStream,
    shared: Arc<Mutex<HashMap<u64, TargetHealth>>>,
    thread: Option<JoinHandle<()>>,
}

impl HealthChecker {
    /// Starts the thread that checks `targets`, sending every state change to `events`.
    ///
    /// Use an unbounded channel, or one with room for a few events per target: the checker
    /// never blocks on it, an event that does not fit is dropped with a warning
    /// ([`HealthChecker::snapshot`] stays right).
    ///
    /// The targets are registered (in [`HealthState::at_registration`]) before this returns.
    pub fn spawn(
        targets: Vec<ProbeTarget>,
        events: Sender<HealthEvent>,
    ) -> Result<HealthChecker, HealthError> {
        let (wake_tx, wake_rx) = UnixStream::pair().map_err(HealthError::Spawn)?;
        wake_tx.set_nonblocking(true).map_err(HealthError::Spawn)?;
        wake_rx.set_nonblocking(true).map_err(HealthError::Spawn)?;
        let (commands, command_rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Mutex::new(HashMap::new()));
        let mut checker = Checker::new(events, Arc::clone(&shared), wake_rx, command_rx);
        checker.update(targets, Instant::now());
        checker.publish();
        let thread = std::thread::Builder::new()
            .name("gwlb-health".into())
            .spawn(move || checker.run())
            .map_err(HealthError::Spawn)?;
        Ok(HealthChecker {
            commands,
            wake: wake_tx,
            shared,
            thread: Some(thread),
        })
    }

    /// The state of every target, ordered by slot, then group, then address.
    pub fn snapshot(&self) -> Vec<TargetHealth> {
        let map = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<TargetHealth> = map.values().cloned().collect();
        drop(map);
        all.sort_by(|a, b| (a.slot, &a.group, a.addr).cmp(&(b.slot, &b.group, b.addr)));
        all
    }

    /// Replaces the set of targets: new ones start in [`HealthState::at_registration`] (no
    /// event), missing ones are forgotten (no event), listed ones keep their state. A target whose probe, port or source changed
    /// keeps its health but restarts its consecutive counts (its open probe is abandoned);
    /// one whose timing or thresholds changed keeps everything and is rescheduled on the new
    /// interval. Waits until the checker thread has applied the change (one loop turn, the
    /// thread never blocks), so a following [`HealthChecker::snapshot`] shows it.
    pub fn update_targets(&self, targets: Vec<ProbeTarget>) -> Result<(), HealthError> {
        let (ack, applied) = crossbeam_channel::bounded(1);
        self.commands
            .send(Command::Update(targets, ack))
            .map_err(|_| HealthError::Stopped)?;
        self.wake();
        applied.recv().map_err(|_| HealthError::Stopped)
    }

    /// Stops the thread and waits for it; open probes are closed. Idempotent.
    pub fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        // The thread may already be gone (panic); then there is nobody to tell.
        let _ = self.commands.send(Command::Stop);
        self.wake();
        if thread.join().is_err() {
            tracing::error!("the health-check thread panicked");
        }
    }

    fn wake(&self) {
        // WouldBlock: the pipe is full of earlier wake-ups, which is just as good.
        let _ = (&self.wake).write(&[1]);
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// Pure parts: random numbers, jitter, the state machine, HTTP
// ---------------------------------------------------------------------------------------------

/// xorshift64 (Marsaglia); plenty for spreading probe times.
#[derive(Debug, Clone)]
struct XorShift64(u64);

impl XorShift64 {
    /// Seeds through splitmix64, so that close seeds give unrelated sequences.
    fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        XorShift64(if z == 0 { 0x9e37_79b9_7f4a_7c15 } else { z })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is below 2^-40 for the ranges used here.
    fn below(&mut self, n: u128) -> u128 {
        u128::from(self.next_u64()) % n
    }
}

fn seed_for(slot: u16, addr: IpAddr, salt: u64) -> u64 {
    let clock = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let addr_bits = match addr {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => {
            let v = u128::from(a);
            (v as u64) ^ ((v >> 64) as u64)
        }
    };
    clock ^ addr_bits.rotate_left(17) ^ (u64::from(slot) << 48) ^ salt.rotate_left(29)
}

/// `interval × (1 + u × percent/100)`, `u` uniform in [-1, 1] (nanosecond resolution).
fn jittered(interval: Duration, percent: u8, rng: &mut XorShift64) -> Duration {
    let base = interval.as_nanos();
    let spread = base * u128::from(percent.min(100)) / 100;
    if spread == 0 {
        return interval;
    }
    let nanos = base - spread + rng.below(2 * spread + 1);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Uniform in `[0, interval)`: the first probe of a new target.
fn initial_offset(interval: Duration, rng: &mut XorShift64) -> Duration {
    let base = interval.as_nanos();
    if base == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(u64::try_from(rng.below(base)).unwrap_or(u64::MAX))
}

/// What one probe says about a target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Success,
    Failure,
    /// Our own problem (no socket, no port, cannot bind the source): not counted.
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    verdict: Verdict,
    reason: String,
    latency: Option<Duration>,
}

impl Outcome {
    fn success(reason: impl Into<String>, latency: Duration) -> Self {
        Outcome {
            verdict: Verdict::Success,
            reason: reason.into(),
            latency: Some(latency),
        }
    }

    fn failure(reason: impl Into<String>, latency: Option<Duration>) -> Self {
        Outcome {
            verdict: Verdict::Failure,
            reason: reason.into(),
            latency,
        }
    }

    fn local(reason: impl Into<String>) -> Self {
        Outcome {
            verdict: Verdict::Local,
            reason: reason.into(),
            latency: None,
        }
    }
}

/// Flap damping (module documentation, "Flap damping"): what one fall from healthy adds to
/// the penalty.
const FLAP_PENALTY: f64 = 1.0;
/// A fall that takes the penalty to this holds the target down (three falls within about
/// half a half-life).
const FLAP_SUPPRESS: f64 = 2.5;
/// A held-down target is released once the penalty has decayed below this.
const FLAP_REUSE: f64 = 1.0;
/// The penalty never exceeds this, so no target is held down for more than
/// `log2(FLAP_MAX / FLAP_REUSE)` = 3 half-lives after its last fall.
const FLAP_MAX: f64 = 8.0;

/// Health of one target (module documentation, "State machine").
#[derive(Debug, Clone, PartialEq)]
struct State {
    state: HealthState,
    consecutive_ok: u32,
    consecutive_fail: u32,
    last_reason: Option<String>,
    last_latency: Option<Duration>,
    /// Flap-damping penalty as of `penalty_at`.
    penalty: f64,
    penalty_at: Option<Instant>,
    /// Held down by flap damping: stays unhealthy while its checks pass.
    held_down: bool,
}

impl State {
    fn new(check: &HealthCheck) -> Self {
        State {
            state: HealthState::at_registration(check),
            consecutive_ok: 0,
            consecutive_fail: 0,
            last_reason: None,
            last_latency: None,
            penalty: 0.0,
            penalty_at: None,
            held_down: false,
        }
    }

    /// The flap-damping penalty at `now` (exponential decay with `half_life`).
    fn penalty_at(&self, now: Instant, half_life: Duration) -> f64 {
        let Some(at) = self.penalty_at else {
            return 0.0;
        };
        let halves = now.saturating_duration_since(at).as_secs_f64() / half_life.as_secs_f64();
        self.penalty * 0.5f64.powf(halves)
    }

    /// Counts a probe's outcome at `now`; returns the transition reason when the state flips.
    fn record(&mut self, outcome: &Outcome, check: &HealthCheck, now: Instant) -> Option<String> {
        self.last_reason = Some(outcome.reason.clone());
        if outcome.latency.is_some() {
            self.last_latency = outcome.latency;
        }
        match outcome.verdict {
            Verdict::Local => None,
            Verdict::Success => {
                self.consecutive_ok = self.consecutive_ok.saturating_add(1);
                self.consecutive_fail = 0;
                let threshold = u32::from(check.healthy_threshold.max(1));
                if self.state == HealthState::Healthy || self.consecutive_ok < threshold {
                    return None;
                }
                let mut reason = transition_reason(self.consecutive_ok, true, &outcome.reason);
                if self.held_down {
                    let half_life = check.flap_half_life.unwrap_or(Duration::ZERO);
                    let penalty = self.penalty_at(now, half_life);
                    if check.flap_half_life.is_some() && penalty >= FLAP_REUSE {
                        let left = half_life.as_secs_f64() * (penalty / FLAP_REUSE).log2();
                        self.last_reason = Some(format!(
                            "{}; held down by flap damping (penalty {penalty:.2}, released below {FLAP_REUSE:.2} in about {left:.0}s)",
                            outcome.reason
                        ));
                        return None;
                    }
                    self.held_down = false;
                    reason.push_str(" (released by flap damping)");
                }
                self.state = HealthState::Healthy;
                Some(reason)
            }
            Verdict::Failure => {
                self.consecutive_fail = self.consecutive_fail.saturating_add(1);
                self.consecutive_ok = 0;
                let threshold = u32::from(check.unhealthy_threshold.max(1));
                if self.state == HealthState::Unhealthy || self.consecutive_fail < threshold {
                    return None;
                }
                let mut reason = transition_reason(self.consecutive_fail, false, &outcome.reason);
                if let (HealthState::Healthy, Some(half_life)) = (self.state, check.flap_half_life)
                {
                    self.penalty = (self.penalty_at(now, half_life) + FLAP_PENALTY).min(FLAP_MAX);
                    self.penalty_at = Some(now);
                    if self.penalty >= FLAP_SUPPRESS {
                        self.held_down = true;
                        reason.push_str(&format!(
                            "; flapping (penalty {:.2}): held down until it decays below {FLAP_REUSE:.2}",
                            self.penalty
                        ));
                    }
                }
                self.state = HealthState::Unhealthy;
                Some(reason)
            }
        }
    }
}

fn transition_reason(count: u32, success: bool, last: &str) -> String {
    let what = match (success, count) {
        (true, 1) => "success",
        (true, _) => "successes",
        (false, 1) => "failure",
        (false, _) => "failures",
    };
    format!("{count} consecutive {what}: {last}")
}

/// The HTTP request of a probe.
fn http_request(path: &str, dst: SocketAddr) -> Vec<u8> {
    let host = match (dst.ip(), dst.port()) {
        (IpAddr::V4(a), 80) => a.to_string(),
        (IpAddr::V6(a), 80) => format!("[{a}]"),
        _ => dst.to_string(),
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: gwlb-health/1\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// The status code of an HTTP/1.x status line (`HTTP/1.1 200 OK`, with or without the line
/// end), or `None` if it is not one.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.splitn(3, |&b| b == b' ');
    let version = parts.next()?;
    if !version.starts_with(b"HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// Outcome of the bytes read so far, once they hold a line (or the peer closed).
fn http_outcome(received: &[u8], probe: &Probe, latency: Duration) -> Outcome {
    let line = match received.iter().position(|&b| b == b'\n') {
        Some(end) => &received[..=end],
        None => received,
    };
    let Some(code) = parse_status_line(line) else {
        let shown: String = String::from_utf8_lossy(line)
            .trim_end()
            .chars()
            .take(64)
            .collect();
        return Outcome::failure(format!("invalid HTTP status line {shown:?}"), Some(latency));
    };
    match probe {
        Probe::Http { success_codes, .. } if !success_codes.contains(code) => {
            Outcome::failure(format!("HTTP {code} not in {success_codes}"), Some(latency))
        }
        _ => Outcome::success(format!("HTTP {code}"), latency),
    }
}

/// Whether a socket error is ours rather than the target's.
fn is_local_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
}

fn connect_reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "connection refused".into(),
        Some(libc::EHOSTUNREACH) => "host unreachable".into(),
        Some(libc::ENETUNREACH) => "network unreachable".into(),
        Some(libc::ETIMEDOUT) => "connect timed out".into(),
        Some(libc::ECONNRESET) => "connection reset".into(),
        _ => format!("connect: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The checker thread
// ---------------------------------------------------------------------------------------------

type Key = (String, IpAddr);

#[derive(Debug)]
struct Entry {
    target: ProbeTarget,
    state: State,
    rng: XorShift64,
    /// Start of the next probe (set when the current one starts).
    next_due: Instant,
    /// Bumped when the probe settings change: results of older probes are discarded.
    generation: u64,
    /// Bumped on every reschedule: older entries of the schedule heap are stale.
    schedule: u64,
    /// A probe of this target is open.
    busy: bool,
    /// A local error was logged and no probe has completed since (log once per streak).
    local_error_logged: bool,
}

impl Entry {
    fn health(&self) -> TargetHealth {
        TargetHealth {
            slot: self.target.slot,
            group: self.target.group.clone(),
            addr: self.target.addr,
            enabled: self.target.check.enabled,
            state: self.state.state,
            consecutive_ok: self.state.consecutive_ok,
            consecutive_fail: self.state.consecutive_fail,
            last_reason: self.state.last_reason.clone(),
            last_latency: self.state.last_latency,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    Sending,
    Reading,
    /// HTTPS: the TLS handshake, the request and the response, over the connection.
    Tls,
    /// The data-path probe is out; waiting for it to come back through the appliance.
    Echo,
}

#[derive(Debug)]
struct InFlight {
    id: u64,
    generation: u64,
    /// The TCP connection (none once the data-path stage has begun, or for a data-path probe
    /// alone).
    socket: Option<Socket>,
    stage: Stage,
    started: Instant,
    deadline: Instant,
    timeout: Duration,
    probe: Probe,
    /// HTTP request (empty for TCP) and how much of it is sent.
    request: Vec<u8>,
    sent: usize,
    /// A send error, reported only if no status line comes back.
    send_error: Option<io::Error>,
    received: Vec<u8>,
    /// The data-path probe to send once the TCP/HTTP stage passed (or at once with
    /// [`Probe::Geneve`]).
    data_path: Option<DataPathProbe>,
    /// The nonce of the data-path probe sent (valid in [`Stage::Echo`]).
    nonce: u64,
    /// What the TCP/HTTP stage reported, kept for the final reason.
    passed: Option<String>,
    /// HTTPS: the TLS connection (the request is written into it at the start).
    tls: Option<rustls::ClientConnection>,
}

impl InFlight {
    fn poll_events(&self) -> libc::c_short {
        match self.stage {
            Stage::Connecting | Stage::Sending => libc::POLLOUT,
            Stage::Reading => libc::POLLIN,
            Stage::Tls if self.tls.as_ref().is_some_and(|c| c.wants_write()) => libc::POLLOUT,
            Stage::Tls => libc::POLLIN,
            Stage::Echo => 0,
        }
    }

    /// The descriptor to poll: -1 (ignored by `poll(2)`) while waiting for the echo.
    fn poll_fd(&self) -> libc::c_int {
        match (&self.socket, self.stage) {
            (Some(s), Stage::Connecting | Stage::Sending | Stage::Reading | Stage::Tls) => {
                s.as_raw_fd()
            }
            _ => -1,
        }
    }

    /// Moves the probe on after `poll(2)` reported it ready; `Some` when it is finished.
    fn advance(&mut self, now: Instant) -> Option<Outcome> {
        let socket = self.socket.as_ref()?;
        if self.stage == Stage::Connecting {
            match socket.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return Some(Outcome::failure(connect_reason(&e), None)),
            }
            if self.tls.is_some() {
                self.stage = Stage::Tls;
            } else if self.request.is_empty() {
                return Some(Outcome::success(
                    "TCP connect ok",
                    now.duration_since(self.started),
                ));
            } else {
                self.stage = Stage::Sending;
            }
        }
        if self.stage == Stage::Tls {
            return self.exchange_tls(now);
        }
        if self.stage == Stage::Sending {
            self.send();
        }
        if self.stage == Stage::Reading {
            return self.read(now);
        }
        None
    }

    fn send(&mut self) {
        while self.sent < self.request.len() {
            // MSG_NOSIGNAL: a peer that closed early must not raise SIGPIPE in a library.
            let Some(socket) = &self.socket else { return };
            match socket.send_with_flags(&self.request[self.sent..], libc::MSG_NOSIGNAL) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Read anyway: the server may have answered without reading.
                    self.send_error = Some(e);
                    break;
                }
            }
        }
        self.stage = Stage::Reading;
    }

    fn read(&mut self, now: Instant) -> Option<Outcome> {
        let latency = now.duration_since(self.started);
        let mut chunk = [0u8; 512];
        loop {
            let room = MAX_STATUS_LINE
                .saturating_sub(self.received.len())
                .min(chunk.len());
            let mut socket = self.socket.as_ref()?;
            match socket.read(&mut chunk[..room]) {
                Ok(0) => {
                    return Some(if !self.received.is_empty() {
                        http_outcome(&self.received, &self.probe, latency)
                    } else if let Some(e) = &self.send_error {
                        Outcome::failure(format!("sending the HTTP request: {e}"), None)
                    } else {
                        Outcome::failure("connection closed before the HTTP status line", None)
                    });
                }
                Ok(n) => {
                    self.received.extend_from_slice(&chunk[..n]);
                    if self.received.contains(&b'\n') || self.received.len() >= MAX_STATUS_LINE {
                        return Some(http_outcome(&self.received, &self.probe, latency));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Some(if self.received.is_empty() {
                        Outcome::failure(format!("reading the HTTP response: {e}"), None)
                    } else {
                        http_outcome(&self.received, &self.probe, latency)
                    });
                }
            }
        }
    }

    /// HTTPS: moves the TLS exchange on; `Some` when it is over.
    fn exchange_tls(&mut self, now: Instant) -> Option<Outcome> {
        let latency = now.duration_since(self.started);
        let (conn, socket) = (self.tls.as_mut()?, self.socket.as_ref()?);
        Some(
            match tls::drive(conn, socket, &mut self.received, MAX_STATUS_LINE) {
                tls::Progress::Pending => return None,
                tls::Progress::Line => http_outcome(&self.received, &self.probe, latency),
                tls::Progress::Closed if !self.received.is_empty() => {
                    http_outcome(&self.received, &self.probe, latency)
                }
                tls::Progress::Closed => {
                    Outcome::failure("connection closed before the HTTP status line", None)
                }
                tls::Progress::Failed(why) => Outcome::failure(why, None),
            },
        )
    }

    fn timed_out(&self) -> Outcome {
        let what = match (self.stage, &self.passed) {
            (Stage::Connecting, _) => "no TCP handshake".to_owned(),
            (Stage::Sending, _) => "HTTP request not sent".to_owned(),
            (Stage::Reading, _) => "no HTTP status line".to_owned(),
            (Stage::Tls, _) if self.tls.as_ref().is_some_and(|c| c.is_handshaking()) => {
                "TLS handshake not complete".to_owned()
            }
            (Stage::Tls, _) => "no HTTP status line".to_owned(),
            (Stage::Echo, None) => "data-path probe not returned".to_owned(),
            (Stage::Echo, Some(first)) => format!("data-path probe not returned ({first})"),
        };
        Outcome::failure(format!("timeout after {:?}: {what}", self.timeout), None)
    }

    /// The outcome once the data-path probe came back at `now`.
    fn echoed(&self, now: Instant) -> Outcome {
        let reason = match &self.passed {
            Some(first) => format!("{first}, data path ok"),
            None => "data path ok".to_owned(),
        };
        Outcome::success(reason, now.duration_since(self.started))
    }
}

/// The UDP sockets data-path probes leave from and come back to: one per source address,
/// bound to its port 6081 (where appliances send Geneve), opened on first use.
#[derive(Debug, Default)]
struct EchoSockets {
    sockets: Vec<(IpAddr, std::net::UdpSocket)>,
}

impl EchoSockets {
    /// The socket for probes from `source` (or the unspecified address of `dst`'s family).
    fn get(
        &mut self,
        source: Option<IpAddr>,
        dst: IpAddr,
    ) -> Result<&std::net::UdpSocket, Outcome> {
        let src = source.unwrap_or(match dst {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        });
        if let Some(i) = self.sockets.iter().position(|(a, _)| *a == src) {
            return Ok(&self.sockets[i].1);
        }
        let local = SocketAddr::new(src, geneve::UDP_PORT);
        let open = || -> io::Result<std::net::UdpSocket> {
            let s = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
            s.set_reuse_address(true)?;
            s.set_nonblocking(true)?;
            s.bind(&local.into())?;
            Ok(s.into())
        };
        let socket = open()
            .map_err(|e| Outcome::local(format!("binding {local} for data-path probes: {e}")))?;
        self.sockets.push((src, socket));
        Ok(&self.sockets[self.sockets.len() - 1].1)
    }

    /// Sends the data-path probe of `probe` to `target` and moves it to [`Stage::Echo`].
    fn send(
        &mut self,
        probe: &mut InFlight,
        target: &ProbeTarget,
        rng: &mut XorShift64,
    ) -> Result<(), Outcome> {
        let Some(addrs) = probe.data_path else {
            return Err(Outcome::local("no data-path probe configured"));
        };
        let socket = self.get(target.source, target.addr)?;
        probe.nonce = rng.next_u64();
        let datagram = data_path_probe::build(&target.tunnel, &addrs, probe.nonce);
        let dst = SocketAddr::new(target.addr, geneve::UDP_PORT);
        match socket.send_to(&datagram, dst) {
            Ok(_) => {
                probe.stage = Stage::Echo;
                probe.socket = None;
                Ok(())
            }
            Err(e) if is_local_error(&e) || e.kind() == io::ErrorKind::WouldBlock => {
                Err(Outcome::local(format!("sending the data-path probe: {e}")))
            }
            Err(e) => Err(Outcome::failure(
                format!("sending the data-path probe: {}", connect_reason(&e)),
                None,
            )),
        }
    }
}

/// Opens the probe's socket and starts the connect; `Err` when it is over already.
fn start_probe(
    id: u64,
    target: &ProbeTarget,
    generation: u64,
    now: Instant,
    tls_configs: &mut tls::Configs,
) -> Result<InFlight, Outcome> {
    let dst = SocketAddr::new(target.addr, target.check.port);
    let local = |what: &str, e: io::Error| Outcome::local(format!("{what}: {e}"));
    let mut probe = InFlight {
        id,
        generation,
        socket: None,
        stage: Stage::Echo,
        started: now,
        deadline: now + target.check.timeout,
        timeout: target.check.timeout,
        probe: target.check.probe.clone(),
        request: Vec::new(),
        sent: 0,
        send_error: None,
        received: Vec::new(),
        data_path: target.check.data_path,
        nonce: 0,
        passed: None,
        tls: None,
    };
    if target.check.probe == Probe::Geneve {
        // The data-path probe alone: the checker sends it.
        return Ok(probe);
    }
    let socket = Socket::new(Domain::for_address(dst), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| local("socket", e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| local("socket", e))?;
    if let Some(src) = target.source {
        socket
            .bind(&SocketAddr::new(src, 0).into())
            .map_err(|e| local(&format!("binding source {src}"), e))?;
    }
    probe.request = match &target.check.probe {
        Probe::Tcp | Probe::Geneve => Vec::new(),
        Probe::Http { path, .. } => http_request(path, dst),
    };
    if let Probe::Http { tls: Some(t), .. } = &target.check.probe {
        probe.tls = Some(
            tls_configs
                .connect(t, target.addr, &probe.request)
                .map_err(Outcome::local)?,
        );
    }
    probe.stage = Stage::Connecting;
    let connected = socket.connect(&dst.into());
    probe.socket = Some(socket);
    match connected {
        Ok(()) => match probe.advance(Instant::now()) {
            Some(outcome) => Err(outcome),
            None => Ok(probe),
        },
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(probe),
        Err(e) if is_local_error(&e) => Err(local("connect", e)),
        Err(e) => Err(Outcome::failure(connect_reason(&e), None)),
    }
}

struct Checker {
    events: Sender<HealthEvent>,
    events_closed: bool,
    shared: Arc<Mutex<HashMap<u64, TargetHealth>>>,
    wake: UnixStream,
    commands: Receiver<Command>,
    ids: HashMap<Key, u64>,
    entries: HashMap<u64, Entry>,
    next_id: u64,
    /// Min-heap of `(due, id, schedule)`.
    heap: BinaryHeap<Reverse<(Instant, u64, u64)>>,
    in_flight: Vec<InFlight>,
    /// The sockets of data-path probes (polled after the wake-up socket).
    echo: EchoSockets,
    /// The TLS client configurations of HTTPS checks.
    tls: tls::Configs,
    pollfds: Vec<libc::pollfd>,
    /// Targets whose [`TargetHealth`] changed since the last publish.
    dirty: Vec<u64>,
    removed: Vec<u64>,
    /// Transitions to send once the shared map shows them.
    pending: Vec<HealthEvent>,
}

impl Checker {
    fn new(
        events: Sender<HealthEvent>,
        shared: Arc<Mutex<HashMap<u64, TargetHealth>>>,
        wake: UnixStream,
        commands: Receiver<Command>,
    ) -> Self {
        Checker {
            events,
            events_closed: false,
            shared,
            wake,
            commands,
            ids: HashMap::new(),
            entries: HashMap::new(),
            next_id: 0,
            heap: BinaryHeap::new(),
            in_flight: Vec::new(),
            echo: EchoSockets::default(),
            tls: tls::Configs::default(),
            pollfds: Vec::new(),
            dirty: Vec::new(),
            removed: Vec::new(),
            pending: Vec::new(),
        }
    }

    fn run(mut self) {
        loop {
            loop {
                match self.commands.try_recv() {
                    Ok(Command::Update(targets, ack)) => {
                        self.update(targets, Instant::now());
                        self.publish();
                        let _ = ack.send(());
                    }
                    Ok(Command::Stop) | Err(TryRecvError::Disconnected) => return,
                    Err(TryRecvError::Empty) => break,
                }
            }
            let now = Instant::now();
            self.start_due(now);
            self.publish();
            let wait = self.poll_wait(Instant::now());
            self.poll(wait);
            self.expire(Instant::now());
            self.publish();
        }
    }

    fn update(&mut self, targets: Vec<ProbeTarget>, now: Instant) {
        let mut listed = HashSet::with_capacity(targets.len());
        for target in targets {
            let key: Key = (target.group.clone(), target.addr);
            if !listed.insert(key.clone()) {
                tracing::warn!(
                    group = %target.group,
                    addr = %target.addr,
                    slot = target.slot,
                    "target listed twice for health checks; the first entry is used"
                );
                continue;
            }
            match self.ids.get(&key) {
                Some(&id) => self.change(id, target, now),
                None => self.add(key, target, now),
            }
        }
        let gone: Vec<(Key, u64)> = self
            .ids
            .iter()
            .filter(|(key, _)| !listed.contains(*key))
            .map(|(key, &id)| (key.clone(), id))
            .collect();
        for (key, id) in gone {
            self.ids.remove(&key);
            self.entries.remove(&id);
            self.in_flight.retain(|p| p.id != id);
            self.removed.push(id);
        }
    }

    fn add(&mut self, key: Key, target: ProbeTarget, now: Instant) {
        let id = self.next_id;
        self.next_id += 1;
        let mut entry = Entry {
            rng: XorShift64::new(seed_for(target.slot, target.addr, id)),
            state: State::new(&target.check),
            next_due: now,
            generation: 0,
            schedule: 0,
            busy: false,
            local_error_logged: false,
            target,
        };
        if entry.target.check.enabled {
            let first = now + initial_offset(entry.target.check.interval, &mut entry.rng);
            entry.next_due = first;
            self.heap.push(Reverse((first, id, entry.schedule)));
        } else {
            entry.state.last_reason = Some(DISABLED.into());
        }
        self.ids.insert(key, id);
        self.entries.insert(id, entry);
        self.dirty.push(id);
    }

    fn change(&mut self, id: u64, target: ProbeTarget, now: Instant) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if entry.target == target {
            return;
        }
        self.dirty.push(id);
        let old = std::mem::replace(&mut entry.target, target);
        let new = &entry.target.check;
        let reset = old.check.probe != new.probe
            || old.check.port != new.port
            || old.check.data_path != new.data_path
            || old.tunnel != entry.target.tunnel
            || old.source != entry.target.source
            || old.check.enabled != new.enabled;
        if reset {
            entry.generation += 1;
            entry.busy = false;
            entry.state.consecutive_ok = 0;
            entry.state.consecutive_fail = 0;
            self.in_flight.retain(|p| p.id != id);
        }
        entry.schedule += 1;
        if !new.enabled {
            entry.state.last_reason = Some(DISABLED.into());
            let from = entry.state.state;
            if from != HealthState::Healthy {
                entry.state.state = HealthState::Healthy;
                let target = entry.target.clone();
                self.emit(&target, from, true, DISABLED.into(), None);
            }
            return;
        }
        let due = if old.check.enabled {
            // Never later than the new interval from now.
            entry
                .next_due
                .min(now + jittered(new.interval, new.jitter_percent, &mut entry.rng))
        } else {
            now + initial_offset(new.interval, &mut entry.rng)
        };
        entry.next_due = due;
        if !entry.busy {
            self.heap.push(Reverse((due, id, entry.schedule)));
        }
    }

    /// Starts every probe that is due, as long as there is room in the poll set.
    fn start_due(&mut self, now: Instant) {
        let mut finished = Vec::new();
        while self.in_flight.len() < MAX_IN_FLIGHT {
            let Some(&Reverse((due, id, schedule))) = self.heap.peek() else {
                break;
            };
            if due > now {
                break;
            }
            self.heap.pop();
            let Some(entry) = self.entries.get_mut(&id) else {
                continue;
            };
            if entry.schedule != schedule || entry.busy || !entry.target.check.enabled {
                continue;
            }
            let check = &entry.target.check;
            entry.busy = true;
            entry.next_due = now + jittered(check.interval, check.jitter_percent, &mut entry.rng);
            match start_probe(id, &entry.target, entry.generation, now, &mut self.tls) {
                Ok(mut probe) if probe.stage == Stage::Echo => {
                    match self.echo.send(&mut probe, &entry.target, &mut entry.rng) {
                        Ok(()) => self.in_flight.push(probe),
                        Err(outcome) => finished.push((id, entry.generation, outcome)),
                    }
                }
                Ok(probe) => self.in_flight.push(probe),
                Err(outcome) => finished.push((id, entry.generation, outcome)),
            }
        }
        for (id, generation, outcome) in finished {
            self.finish(id, generation, outcome, now);
        }
    }

    /// How long `poll(2)` may sleep: until the next due probe or probe deadline.
    fn poll_wait(&self, now: Instant) -> Duration {
        let mut until = now + MAX_POLL_WAIT;
        if self.in_flight.len() < MAX_IN_FLIGHT {
            if let Some(Reverse((due, _, _))) = self.heap.peek() {
                until = until.min(*due);
            }
        }
        for probe in &self.in_flight {
            until = until.min(probe.deadline);
        }
        until.saturating_duration_since(now)
    }

    fn poll(&mut self, wait: Duration) {
        self.pollfds.clear();
        self.pollfds.push(libc::pollfd {
            fd: self.wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for (_, socket) in &self.echo.sockets {
            self.pollfds.push(libc::pollfd {
                fd: socket.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let first_probe = 1 + self.echo.sockets.len();
        for probe in &self.in_flight {
            self.pollfds.push(libc::pollfd {
                fd: probe.poll_fd(),
                events: probe.poll_events(),
                revents: 0,
            });
        }
        // Round up: waking a little early would only spin.
        let millis = i32::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
        // SAFETY: `pollfds` is an initialised, exclusively borrowed array of exactly `len`
        // `pollfd`s that outlives the call; the descriptors belong to `self.wake`, to the
        // sockets of `self.echo` and to those in `self.in_flight`, which stay open during the
        // call (poll only reads the fd numbers, ignores negative ones, and writes `revents`).
        let ready = unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                millis,
            )
        };
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!(error = %e, "health checks: poll failed");
                // Do not spin on a persistent error.
                std::thread::sleep(Duration::from_millis(10));
            }
            return;
        }
        if ready == 0 {
            return;
        }
        if self.pollfds[0].revents != 0 {
            let mut sink = [0u8; 64];
            while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
        }
        let now = Instant::now();
        let mut finished = Vec::new();
        // In reverse, so that `swap_remove` only moves probes already looked at.
        for i in (0..self.in_flight.len()).rev() {
            if self.pollfds[first_probe + i].revents == 0 {
                continue;
            }
            let Some(outcome) = self.in_flight[i].advance(now) else {
                continue;
            };
            let probe = &mut self.in_flight[i];
            if outcome.verdict == Verdict::Success && probe.data_path.is_some() {
                // The TCP/HTTP stage passed: now through the appliance.
                probe.passed = Some(outcome.reason);
                let sent = match self.entries.get_mut(&probe.id) {
                    Some(e) => self.echo.send(probe, &e.target, &mut e.rng),
                    None => Err(Outcome::local("target removed")),
                };
                match sent {
                    Ok(()) => continue,
                    Err(o) => finished.push((probe.id, probe.generation, o)),
                }
            } else {
                finished.push((probe.id, probe.generation, outcome));
            }
            self.in_flight.swap_remove(i);
        }
        for k in 0..self.echo.sockets.len() {
            if self.pollfds[1 + k].revents != 0 {
                self.read_echoes(k, now, &mut finished);
            }
        }
        for (id, generation, outcome) in finished {
            self.finish(id, generation, outcome, now);
        }
    }

    /// Reads every datagram waiting on echo socket `k`; a data-path probe that came back
    /// from its target finishes (anything else, a forged or late probe included, is ignored).
    fn read_echoes(&mut self, k: usize, now: Instant, finished: &mut Vec<(u64, u64, Outcome)>) {
        let mut buf = [0u8; 2048];
        // Bounded: a flood of datagrams must not keep the checker from its other work.
        for _ in 0..256 {
            let (n, from) = match self.echo.sockets[k].1.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let Some(nonce) = data_path_probe::echoed_nonce(&buf[..n]) else {
                continue;
            };
            let found = self.in_flight.iter().position(|p| {
                p.stage == Stage::Echo
                    && p.nonce == nonce
                    && self
                        .entries
                        .get(&p.id)
                        .is_some_and(|e| e.target.addr == from.ip())
            });
            if let Some(i) = found {
                let probe = self.in_flight.swap_remove(i);
                finished.push((probe.id, probe.generation, probe.echoed(now)));
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let mut finished = Vec::new();
        for i in (0..self.in_flight.len()).rev() {
            if self.in_flight[i].deadline <= now {
                let probe = self.in_flight.swap_remove(i);
                finished.push((probe.id, probe.generation, probe.timed_out()));
            }
        }
        for (id, generation, outcome) in finished {
            self.finish(id, generation, outcome, now);
        }
    }

    /// Records a finished probe and schedules the next one.
    fn finish(&mut self, id: u64, generation: u64, outcome: Outcome, now: Instant) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if entry.generation != generation {
            return;
        }
        entry.busy = false;
        self.heap
            .push(Reverse((entry.next_due.max(now), id, entry.schedule)));
        self.dirty.push(id);
        if outcome.verdict == Verdict::Local {
            if !entry.local_error_logged {
                entry.local_error_logged = true;
                tracing::warn!(
                    group = %entry.target.group,
                    slot = entry.target.slot,
                    addr = %entry.target.addr,
                    reason = %outcome.reason,
                    "health check could not be sent; not counted against the target"
                );
            }
        } else {
            entry.local_error_logged = false;
        }
        let from = entry.state.state;
        if let Some(reason) = entry.state.record(&outcome, &entry.target.check, now) {
            let healthy = entry.state.state == HealthState::Healthy;
            let target = entry.target.clone();
            self.emit(&target, from, healthy, reason, outcome.latency);
        }
    }

    /// Logs a transition and queues its event for [`Checker::publish`].
    fn emit(
        &mut self,
        target: &ProbeTarget,
        from: HealthState,
        healthy: bool,
        reason: String,
        latency: Option<Duration>,
    ) {
        let latency_ms = latency.map(|l| l.as_secs_f64() * 1e3);
        let from = from.as_str();
        if healthy {
            tracing::info!(
                group = %target.group,
                slot = target.slot,
                addr = %target.addr,
                from,
                %reason,
                latency_ms,
                "appliance healthy"
            );
        } else {
            tracing::warn!(
                group = %target.group,
                slot = target.slot,
                addr = %target.addr,
                from,
                %reason,
                latency_ms,
                "appliance unhealthy"
            );
        }
        self.pending.push(HealthEvent {
            slot: target.slot,
            group: target.group.clone(),
            addr: target.addr,
            healthy,
            reason,
            latency,
        });
    }

    /// Copies the changed targets into the shared map read by [`HealthChecker::snapshot`],
    /// then sends the transitions: a consumer that reads the snapshot on an event sees at
    /// least the state the event announces.
    fn publish(&mut self) {
        if !self.dirty.is_empty() || !self.removed.is_empty() {
            let mut map = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
            for id in self.removed.drain(..) {
                map.remove(&id);
            }
            for id in self.dirty.drain(..) {
                if let Some(entry) = self.entries.get(&id) {
                    map.insert(id, entry.health());
                }
            }
        }
        let pending = std::mem::take(&mut self.pending);
        for event in pending {
            self.send(event);
        }
    }

    fn send(&mut self, event: HealthEvent) {
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(event)) => tracing::warn!(
                group = %event.group,
                slot = event.slot,
                addr = %event.addr,
                healthy = event.healthy,
                "health event channel full; event dropped (the snapshot has the state)"
            ),
            Err(TrySendError::Disconnected(_)) => {
                if !self.events_closed {
                    self.events_closed = true;
                    tracing::warn!("health event receiver gone; events are no longer sent");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StatusCodes;

    fn check(probe: Probe) -> HealthCheck {
        HealthCheck {
            enabled: true,
            probe,
            port: 80,
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(50),
            healthy_threshold: 3,
            unhealthy_threshold: 2,
            initial_state: InitialState::Initial,
            jitter_percent: 10,
            data_path: None,
            flap_half_life: None,
        }
    }

    fn http() -> Probe {
        Probe::Http {
            path: "/health".into(),
            success_codes: StatusCodes(vec![200..=399]),
            tls: None,
        }
    }

    #[test]
    fn test_jitter_bounds_and_spread() {
        let mut rng = XorShift64::new(7);
        let interval = Duration::from_millis(100);
        let (lo, hi) = (Duration::from_millis(80), Duration::from_millis(120));
        let mut min = Duration::MAX;
        let mut max = Duration::ZERO;
        let mut sum = Duration::ZERO;
        for _ in 0..10_000 {
            let d = jittered(interval, 20, &mut rng);
            assert!(d >= lo && d <= hi, "{d:?}");
            min = min.min(d);
            max = max.max(d);
            sum += d;
        }
        assert!(min < Duration::from_millis(81) && max > Duration::from_millis(119));
        let mean = sum / 10_000;
        assert!(mean > Duration::from_millis(99) && mean < Duration::from_millis(101));
        assert_eq!(jittered(interval, 0, &mut rng), interval);
        for _ in 0..1000 {
            assert!(initial_offset(interval, &mut rng) < interval);
        }
    }

    #[test]
    fn test_rng_seeds_differ() {
        let a = XorShift64::new(seed_for(1, IpAddr::from([10, 0, 0, 1]), 0)).next_u64();
        let b = XorShift64::new(seed_for(2, IpAddr::from([10, 0, 0, 1]), 1)).next_u64();
        assert_ne!(a, b);
        assert_ne!(XorShift64::new(0).0, 0);
    }

    fn ok() -> Outcome {
        Outcome::success("TCP connect ok", Duration::from_micros(50))
    }

    fn bad() -> Outcome {
        Outcome::failure("connection refused", None)
    }

    #[test]
    fn test_initial_turns_healthy_after_healthy_threshold_successes() {
        let c = check(Probe::Tcp);
        let mut s = State::new(&c);
        assert_eq!(s.state, HealthState::Initial);
        assert_eq!(s.record(&ok(), &c, Instant::now()), None);
        assert_eq!(s.record(&ok(), &c, Instant::now()), None);
        assert_eq!(s.state, HealthState::Initial);
        // A failure restarts the count: still initial (one failure is below the threshold).
        assert_eq!(s.record(&bad(), &c, Instant::now()), None);
        assert_eq!((s.state, s.consecutive_ok), (HealthState::Initial, 0));
        // Local errors count for nothing.
        assert_eq!(
            s.record(&Outcome::local("socket: EMFILE"), &c, Instant::now()),
            None
        );
        assert_eq!(s.record(&ok(), &c, Instant::now()), None);
        assert_eq!(s.record(&ok(), &c, Instant::now()), None);
        assert_eq!(s.state, HealthState::Initial);
        assert_eq!(
            s.record(&ok(), &c, Instant::now()).as_deref(),
            Some("3 consecutive successes: TCP connect ok")
        );
        assert_eq!(s.state, HealthState::Healthy);
        // Healthy from there on: the usual machine.
        assert_eq!(s.record(&bad(), &c, Instant::now()), None);
        assert_eq!(
            s.record(&bad(), &c, Instant::now()).as_deref(),
            Some("2 consecutive failures: connection refused")
        );
        assert_eq!(s.state, HealthState::Unhealthy);
    }

    #[test]
    fn test_initial_turns_unhealthy_after_unhealthy_threshold_failures() {
        let mut c = check(Probe::Tcp);
        c.unhealthy_threshold = 3;
        let mut s = State::new(&c);
        assert_eq!(s.record(&bad(), &c, Instant::now()), None);
        assert_eq!(s.record(&bad(), &c, Instant::now()), None);
        assert_eq!(s.state, HealthState::Initial);
        assert_eq!(
            s.record(&bad(), &c, Instant::now()).as_deref(),
            Some("3 consecutive failures: connection refused")
        );
        assert_eq!(s.state, HealthState::Unhealthy);
        // Never back to initial: healthy_threshold successes make it healthy.
        for _ in 0..2 {
            assert_eq!(s.record(&ok(), &c, Instant::now()), None);
            assert_eq!(s.state, HealthState::Unhealthy);
        }
        assert!(s.record(&ok(), &c, Instant::now()).is_some());
        assert_eq!(s.state, HealthState::Healthy);
    }

    #[test]
    fn test_start_states() {
        let c = check(Probe::Tcp);
        assert_eq!(HealthState::at_registration(&c), HealthState::Initial);
        let disabled = HealthCheck {
            enabled: false,
            ..c.clone()
        };
        assert_eq!(
            HealthState::at_registration(&disabled),
            HealthState::Healthy
        );
        assert_eq!(State::new(&disabled).state, HealthState::Healthy);
        let disabled_initial = HealthCheck {
            enabled: false,
            initial_state: InitialState::Initial,
            ..c.clone()
        };
        assert_eq!(
            HealthState::at_registration(&disabled_initial),
            HealthState::Healthy
        );
        let start_healthy = HealthCheck {
            initial_state: InitialState::Healthy,
            ..c
        };
        assert_eq!(
            HealthState::at_registration(&start_healthy),
            HealthState::Healthy
        );
    }

    /// `initial_state = "healthy"`: the machine gwlb had before issue 18.
    #[test]
    fn test_state_machine_starting_healthy() {
        let c = HealthCheck {
            initial_state: InitialState::Healthy,
            ..check(Probe::Tcp)
        };
        let ok = ok();
        let bad = bad();
        let mut s = State::new(&c);
        assert_eq!(s.state, HealthState::Healthy);
        assert_eq!(s.record(&ok, &c, Instant::now()), None);
        assert_eq!(s.record(&bad, &c, Instant::now()), None);
        assert_eq!(
            s.record(&bad, &c, Instant::now()).as_deref(),
            Some("2 consecutive failures: connection refused")
        );
        assert_eq!(s.state, HealthState::Unhealthy);
        assert_eq!(s.record(&bad, &c, Instant::now()), None);
        assert_eq!(s.record(&ok, &c, Instant::now()), None);
        assert_eq!(s.record(&ok, &c, Instant::now()), None);
        // A failure restarts the success count.
        assert_eq!(s.record(&bad, &c, Instant::now()), None);
        assert_eq!(s.consecutive_ok, 0);
        assert_eq!(s.record(&ok, &c, Instant::now()), None);
        assert_eq!(s.record(&ok, &c, Instant::now()), None);
        assert_eq!(
            s.record(&ok, &c, Instant::now()).as_deref(),
            Some("3 consecutive successes: TCP connect ok")
        );
        assert_eq!(s.state, HealthState::Healthy);
        assert_eq!(s.last_latency, Some(Duration::from_micros(50)));
        // Local errors count for nothing.
        let local = Outcome::local("socket: Too many open files");
        for _ in 0..5 {
            assert_eq!(s.record(&local, &c, Instant::now()), None);
        }
        assert_eq!(s.state, HealthState::Healthy);
        assert_eq!(s.consecutive_ok, 3);
        assert_eq!(
            s.last_reason.as_deref(),
            Some("socket: Too many open files")
        );
    }

    /// Flap damping: every fall from healthy adds 1 to a penalty that halves every
    /// half-life; the fall that takes it to 3 holds the target down, and it comes back only
    /// once the penalty is below 1 and its checks pass. Off, nothing is held.
    #[test]
    fn test_flap_damping_holds_a_flapping_target_down() {
        let half_life = Duration::from_secs(60);
        let mut c = check(Probe::Tcp);
        c.flap_half_life = Some(half_life);
        c.initial_state = InitialState::Healthy;
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut s = State::new(&c);
        // Down and up twice, a second apart.
        let mut now = 0;
        let flap = |s: &mut State, now: &mut u64| -> (Option<String>, Option<String>) {
            let mut down = None;
            for _ in 0..c.unhealthy_threshold {
                *now += 1;
                down = down.or(s.record(&bad(), &c, at(*now)));
            }
            let mut up = None;
            for _ in 0..c.healthy_threshold {
                *now += 1;
                up = up.or(s.record(&ok(), &c, at(*now)));
            }
            (down, up)
        };
        for _ in 0..2 {
            let (down, up) = flap(&mut s, &mut now);
            assert!(down.unwrap().ends_with("failures: connection refused"));
            assert!(up.is_some());
            assert_eq!(s.state, HealthState::Healthy);
        }
        // The third fall within seconds: held down, and passing checks do not bring it back.
        let (down, up) = flap(&mut s, &mut now);
        let down = down.unwrap();
        assert!(down.contains("flapping (penalty 2.8"), "{down}");
        assert_eq!(up, None);
        assert_eq!(s.state, HealthState::Unhealthy);
        let why = s.last_reason.clone().unwrap();
        assert!(why.contains("held down by flap damping"), "{why}");
        // Held for log2(2.84) = 1.5 half-lives (90 s): still at 85 s, not at 100 s.
        assert_eq!(s.record(&ok(), &c, at(now + 85)), None);
        let up = s.record(&ok(), &c, at(now + 100)).unwrap();
        assert!(up.ends_with("(released by flap damping)"), "{up}");
        assert_eq!(s.state, HealthState::Healthy);
        // Falls spread out (each two half-lives apart) never reach the threshold.
        let mut spread = State::new(&c);
        for k in 0..6 {
            let base = k * 120;
            for i in 0..2 {
                spread.record(&bad(), &c, at(base + i));
            }
            for i in 2..5 {
                spread.record(&ok(), &c, at(base + i));
            }
            assert_eq!(spread.state, HealthState::Healthy, "fall {k}");
        }
        // Off: never held.
        c.flap_half_life = None;
        let mut off = State::new(&c);
        for k in 0..5 {
            for i in 0..2 {
                off.record(&bad(), &c, at(k * 10 + i));
            }
            for i in 2..5 {
                off.record(&ok(), &c, at(k * 10 + i));
            }
            assert_eq!(off.state, HealthState::Healthy);
        }
    }

    #[test]
    fn test_status_line() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable"),
            Some(503)
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 204\r\n"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/2 200\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 20 OK\r\n"), None);
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line(b""), None);
    }

    #[test]
    fn test_http_outcome() {
        let ms = Duration::from_millis(3);
        let o = http_outcome(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", &http(), ms);
        assert_eq!(o, Outcome::success("HTTP 200", ms));
        let o = http_outcome(b"HTTP/1.1 503 Busy\r\n", &http(), ms);
        assert_eq!(o.verdict, Verdict::Failure);
        assert_eq!(o.reason, "HTTP 503 not in 200-399");
        let o = http_outcome(b"220 smtp ready\r\n", &http(), ms);
        assert_eq!(o.reason, "invalid HTTP status line \"220 smtp ready\"");
    }

    #[test]
    fn test_http_request() {
        let req = http_request("/health", "10.0.0.10:8080".parse().unwrap());
        assert_eq!(
            req,
            b"GET /health HTTP/1.1\r\nHost: 10.0.0.10:8080\r\nUser-Agent: gwlb-health/1\r\nConnection: close\r\n\r\n"
        );
        let req = http_request("/", "[fd00::1]:80".parse().unwrap());
        assert!(req.starts_with(b"GET / HTTP/1.1\r\nHost: [fd00::1]\r\n"));
    }

    #[test]
    fn test_connect_reasons() {
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(connect_reason(&e), "connection refused");
        assert!(is_local_error(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(!is_local_error(&e));
    }
}
