//! Health checks against real sockets on the loopback interface (nothing leaves 127.0.0.0/8
//! and ::1).
//!
//! Timing bounds are generous: these are functional checks (an event arrives, not before the
//! thresholds allow it), not performance assertions.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use gwlb::config::{DataPathProbe, HealthCheck, InitialState, Probe, StatusCodes};
use gwlb::data_path_probe::Tunnel;
use gwlb::health::{
    HealthChecker, HealthError, HealthEvent, HealthState, ProbeTarget, TargetHealth,
};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const MS: Duration = Duration::from_millis(1);

/// Server behaviour: complete the handshake and close.
const TCP: u16 = 0;
/// Accept, read the request, never answer.
const HOLD: u16 = 1;

fn check(probe: Probe, port: u16, interval_ms: u64, timeout_ms: u64) -> HealthCheck {
    HealthCheck {
        enabled: true,
        probe,
        port,
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        initial_state: InitialState::Initial,
        jitter_percent: 0,
        data_path: None,
        flap_half_life: None,
    }
}

fn http(path: &str) -> Probe {
    Probe::Http {
        path: path.into(),
        success_codes: "200-399".parse::<StatusCodes>().unwrap(),
        tls: None,
    }
}

fn target(slot: u16, group: &str, addr: IpAddr, check: HealthCheck) -> ProbeTarget {
    ProbeTarget {
        slot,
        group: group.into(),
        addr,
        check,
        source: None,
        tunnel: TUNNEL,
    }
}

/// The Geneve fields of the test groups' traffic.
const TUNNEL: Tunnel = Tunnel {
    vni: 4242,
    endpoint_id: 0x0102_0304_0506_0708,
    attachment_id: 7,
};

fn spawn(targets: Vec<ProbeTarget>) -> (HealthChecker, Receiver<HealthEvent>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    (HealthChecker::spawn(targets, tx).unwrap(), rx)
}

fn next_event(rx: &Receiver<HealthEvent>, within: Duration) -> HealthEvent {
    rx.recv_timeout(within)
        .unwrap_or_else(|e| panic!("no health event within {within:?}: {e}"))
}

fn one(checker: &HealthChecker) -> TargetHealth {
    let all = checker.snapshot();
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap()
}

/// Polls the snapshot until `cond` holds for the target in `slot`.
fn wait_until(
    checker: &HealthChecker,
    slot: u16,
    within: Duration,
    cond: impl Fn(&TargetHealth) -> bool,
) -> TargetHealth {
    let start = Instant::now();
    loop {
        let state = checker.snapshot().into_iter().find(|t| t.slot == slot);
        match state {
            Some(t) if cond(&t) => return t,
            _ if start.elapsed() > within => panic!("condition not met in {within:?}: {state:?}"),
            _ => std::thread::sleep(5 * MS),
        }
    }
}

/// A loopback server: TCP accept-and-close, HTTP with a settable status, or HTTP that never
/// answers. Records the time and peer of every connection and every HTTP request.
struct Server {
    addr: SocketAddr,
    accepts: Arc<Mutex<Vec<(Instant, SocketAddr)>>>,
    requests: Arc<Mutex<Vec<String>>>,
    mode: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(mode: u16) -> Server {
        Server::start_on(SocketAddr::new(LOCALHOST, 0), mode).unwrap()
    }

    fn start_on(addr: SocketAddr, mode: u16) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let accepts = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(AtomicU16::new(mode));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepts, requests, mode, stop) = (
                accepts.clone(),
                requests.clone(),
                mode.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = conn else { continue };
                    let peer = stream.peer_addr().unwrap_or(addr);
                    accepts.lock().unwrap().push((Instant::now(), peer));
                    let mode = mode.load(Ordering::SeqCst);
                    if mode == TCP {
                        continue;
                    }
                    requests.lock().unwrap().push(read_request(&mut stream));
                    if mode == HOLD {
                        held.push(stream);
                    } else {
                        let response = format!(
                            "HTTP/1.1 {mode} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                        let _ = stream.write_all(response.as_bytes());
                    }
                }
            })
        };
        Ok(Server {
            addr,
            accepts,
            requests,
            mode,
            stop,
            thread: Some(thread),
        })
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn accepts(&self) -> Vec<(Instant, SocketAddr)> {
        self.accepts.lock().unwrap().clone()
    }

    fn set_mode(&self, mode: u16) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

impl Drop for Server {
    /// Closes the listening socket (the port is closed when this returns).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn read_request(stream: &mut TcpStream) -> String {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// A port on 127.0.0.1 with nothing listening (bound once, then released).
fn closed_port() -> u16 {
    TcpListener::bind((LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn tcp_target_starts_initial_turns_healthy_and_stays_healthy() {
    let server = Server::start(TCP);
    let started = Instant::now();
    let (checker, events) = spawn(vec![target(
        3,
        "fw",
        LOCALHOST,
        check(Probe::Tcp, server.port(), 100, 50),
    )]);
    // Registered before spawn returns, initial until healthy_threshold (2) probes pass.
    let t = one(&checker);
    assert!(t.state == HealthState::Initial && t.enabled && t.last_reason.is_none());
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(ev.healthy && ev.slot == 3, "{ev:?}");
    assert_eq!(ev.reason, "2 consecutive successes: TCP connect ok");
    // The second probe is one interval after the first (jitter 0).
    assert!(started.elapsed() >= 100 * MS, "{:?}", started.elapsed());
    std::thread::sleep(500 * MS);
    assert!(events.try_recv().is_err(), "no further transition expected");
    let t = one(&checker);
    assert_eq!((t.slot, t.group.as_str(), t.addr), (3, "fw", LOCALHOST));
    assert_eq!(t.state, HealthState::Healthy);
    assert!(t.consecutive_ok >= 4, "{t:?}");
    assert_eq!(t.consecutive_fail, 0);
    assert_eq!(t.last_reason.as_deref(), Some("TCP connect ok"));
    assert!(t.last_latency.unwrap() < 50 * MS);
    assert!(server.accepts().len() >= 4);
}

#[test]
fn closed_port_turns_unhealthy_and_reopened_port_healthy() {
    let (interval, timeout, threshold) = (100 * MS, 50 * MS, 2u32);
    let server = Server::start(TCP);
    let addr = server.addr;
    let (checker, events) = spawn(vec![target(
        1,
        "fw",
        LOCALHOST,
        check(Probe::Tcp, addr.port(), 100, 50),
    )]);
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(ev.healthy, "initial -> healthy first: {ev:?}");

    let closed = Instant::now();
    drop(server);
    let ev = next_event(&events, Duration::from_secs(3));
    let took = closed.elapsed();
    assert_eq!((ev.slot, ev.group.as_str(), ev.addr), (1, "fw", LOCALHOST));
    assert!(!ev.healthy);
    assert_eq!(ev.reason, "2 consecutive failures: connection refused");
    assert_eq!(ev.latency, None);
    assert!(took >= interval * (threshold - 1), "{took:?}");
    assert!(
        took <= interval * threshold + timeout + 500 * MS,
        "{took:?}"
    );
    let t = one(&checker);
    assert!(t.state == HealthState::Unhealthy && t.consecutive_fail >= 2 && t.consecutive_ok == 0);

    let reopened = Instant::now();
    let _server = Server::start_on(addr, TCP).unwrap();
    let ev = next_event(&events, Duration::from_secs(3));
    let took = reopened.elapsed();
    assert!(ev.healthy);
    assert_eq!(ev.reason, "2 consecutive successes: TCP connect ok");
    assert!(ev.latency.is_some());
    assert!(took >= interval * (threshold - 1), "{took:?}");
    assert!(
        took <= interval * threshold + timeout + 500 * MS,
        "{took:?}"
    );
    assert_eq!(one(&checker).state, HealthState::Healthy);
}

#[test]
fn http_status_codes_drive_transitions() {
    let server = Server::start(200);
    let (checker, events) = spawn(vec![target(
        2,
        "ids",
        LOCALHOST,
        check(http("/healthz"), server.port(), 100, 80),
    )]);
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(ev.healthy);
    assert_eq!(ev.reason, "2 consecutive successes: HTTP 200");
    let t = one(&checker);
    assert_eq!(t.last_reason.as_deref(), Some("HTTP 200"));
    assert!(events.try_recv().is_err());
    let request = server.requests.lock().unwrap()[0].clone();
    assert_eq!(
        request,
        format!(
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: gwlb-health/1\r\nConnection: close\r\n\r\n",
            server.port()
        )
    );

    server.set_mode(503);
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(!ev.healthy);
    assert_eq!(ev.reason, "2 consecutive failures: HTTP 503 not in 200-399");
    assert!(ev.latency.is_some(), "an HTTP answer has a latency");

    server.set_mode(204);
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(ev.healthy);
    assert_eq!(ev.reason, "2 consecutive successes: HTTP 204");
}

#[test]
fn http_server_that_never_answers_times_out() {
    let server = Server::start(HOLD);
    let (checker, events) = spawn(vec![target(
        4,
        "fw",
        LOCALHOST,
        check(http("/"), server.port(), 100, 60),
    )]);
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(!ev.healthy);
    assert_eq!(
        ev.reason,
        "2 consecutive failures: timeout after 60ms: no HTTP status line"
    );
    assert_eq!(ev.latency, None);
    assert!(!server.requests.lock().unwrap().is_empty());
    drop(checker);
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so a connect neither
/// completes nor fails (a blackhole on loopback). `None` if this kernel answers anyway.
fn blackhole() -> Option<(socket2::Socket, Vec<TcpStream>, u16)> {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(&SocketAddr::new(LOCALHOST, 0).into())
        .unwrap();
    listener.listen(0).unwrap();
    let port = listener.local_addr().unwrap().as_socket().unwrap().port();
    let addr = SocketAddr::new(LOCALHOST, port);
    let mut fillers = Vec::new();
    for _ in 0..4 {
        match TcpStream::connect_timeout(&addr, 200 * MS) {
            Ok(s) => fillers.push(s),
            Err(_) => return Some((listener, fillers, port)),
        }
    }
    None
}

#[test]
fn blackholed_targets_do_not_delay_others() {
    let Some((_listener, _fillers, dead_port)) = blackhole() else {
        eprintln!("skipped: this kernel completes connects to a full accept queue");
        return;
    };
    let live = Server::start(TCP);
    // Twenty slow targets, each holding a connect open for 90 ms of every 100 ms.
    let mut targets: Vec<ProbeTarget> = (0..20)
        .map(|i| {
            target(
                100 + i,
                &format!("dead{i}"),
                LOCALHOST,
                check(Probe::Tcp, dead_port, 100, 90),
            )
        })
        .collect();
    targets.push(target(
        1,
        "live",
        LOCALHOST,
        check(Probe::Tcp, live.port(), 100, 50),
    ));
    let (checker, events) = spawn(targets);
    // The twenty dead ones turn unhealthy, the live one healthy (all start initial).
    let mut live_up = 0;
    for _ in 0..21 {
        let ev = next_event(&events, Duration::from_secs(3));
        if ev.slot == 1 {
            assert!(ev.healthy, "{ev:?}");
            live_up += 1;
            continue;
        }
        assert!(ev.slot >= 100, "{ev:?}");
        assert!(!ev.healthy);
        assert_eq!(
            ev.reason,
            "2 consecutive failures: timeout after 90ms: no TCP handshake"
        );
    }
    assert_eq!(live_up, 1);
    // Keep the dead targets probing (and hanging) a while longer.
    std::thread::sleep(500 * MS);
    assert!(events.try_recv().is_err());
    let t = checker
        .snapshot()
        .into_iter()
        .find(|t| t.slot == 1)
        .unwrap();
    assert!(
        t.state == HealthState::Healthy && t.consecutive_fail == 0,
        "{t:?}"
    );
    // The live target kept its period while the others hung (jitter 0).
    let accepts = live.accepts();
    assert!(accepts.len() >= 6, "{accepts:?}");
    for pair in accepts.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap <= 150 * MS, "live probes delayed: gap {gap:?}");
    }
}

#[test]
fn disabled_check_never_probes() {
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut c = check(Probe::Tcp, listener.local_addr().unwrap().port(), 100, 50);
    c.enabled = false;
    let (checker, events) = spawn(vec![target(5, "fw", LOCALHOST, c)]);
    std::thread::sleep(500 * MS);
    // A probe would sit in the accept queue even without accept().
    let err = listener.accept().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
    assert!(events.try_recv().is_err());
    // Disabled: healthy at once, not initial.
    let t = one(&checker);
    assert!(t.state == HealthState::Healthy && !t.enabled);
    assert_eq!((t.consecutive_ok, t.consecutive_fail), (0, 0));
    assert_eq!(t.last_reason.as_deref(), Some("health check disabled"));
}

fn gaps(server: &Server, count: usize, within: Duration) -> Vec<Duration> {
    let start = Instant::now();
    while server.accepts().len() < count + 1 {
        assert!(start.elapsed() < within, "too few probes");
        std::thread::sleep(10 * MS);
    }
    let accepts = server.accepts();
    accepts.windows(2).map(|p| p[1].0 - p[0].0).collect()
}

#[test]
fn jitter_keeps_probe_gaps_in_bounds() {
    let server = Server::start(TCP);
    let mut c = check(Probe::Tcp, server.port(), 100, 50);
    c.jitter_percent = 20;
    let (_checker, _events) = spawn(vec![target(6, "fw", LOCALHOST, c)]);
    let gaps = gaps(&server, 15, Duration::from_secs(5));
    // Probes start no earlier than 80 ms after the previous start (the scheduler can only
    // make them later, so this bound is exact up to the accept timestamp's own noise). Late
    // starts are scheduling noise of a loaded machine, not jitter: the median bounds them.
    for gap in &gaps {
        assert!(*gap >= 75 * MS, "gap {gap:?} below 100 ms - 20%: {gaps:?}");
    }
    let mut sorted = gaps.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    assert!(
        median <= 125 * MS,
        "median gap {median:?} above 100 ms + 20%: {gaps:?}"
    );
    let spread = *gaps.iter().max().unwrap() - *gaps.iter().min().unwrap();
    assert!(spread >= 5 * MS, "no visible jitter: {gaps:?}");
}

#[test]
fn no_jitter_keeps_the_interval() {
    let server = Server::start(TCP);
    let (_checker, _events) = spawn(vec![target(
        7,
        "fw",
        LOCALHOST,
        check(Probe::Tcp, server.port(), 100, 50),
    )]);
    // Without jitter no start comes early; a late one is the loaded machine's scheduling
    // (as in the jitter test above, the median bounds those).
    let gaps = gaps(&server, 8, Duration::from_secs(5));
    for gap in &gaps {
        assert!(*gap >= 95 * MS, "gap {gap:?} below the interval: {gaps:?}");
    }
    let mut sorted = gaps.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    assert!(median <= 145 * MS, "median gap {median:?}: {gaps:?}");
}

#[test]
fn update_targets_keeps_state_of_listed_targets() {
    let dead = target(
        1,
        "fw",
        LOCALHOST,
        check(Probe::Tcp, closed_port(), 100, 50),
    );
    let (mut checker, events) = spawn(vec![dead.clone()]);
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(!ev.healthy && ev.slot == 1);

    // Register a second target; the first keeps its (unhealthy) state.
    let server = Server::start(TCP);
    let live = target(
        2,
        "fw2",
        LOCALHOST,
        check(Probe::Tcp, server.port(), 100, 50),
    );
    checker
        .update_targets(vec![dead.clone(), live.clone()])
        .unwrap();
    let all = checker.snapshot();
    assert_eq!(all.len(), 2);
    assert!(
        all[0].state == HealthState::Unhealthy && all[0].slot == 1 && all[0].consecutive_fail >= 2
    );
    // The new one starts initial, and turns healthy after two successes.
    assert!(all[1].state == HealthState::Initial && all[1].slot == 2);
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(ev.healthy && ev.slot == 2, "{ev:?}");
    wait_until(&checker, 2, Duration::from_secs(2), |t| {
        t.consecutive_ok >= 2
    });
    assert!(events.try_recv().is_err());

    // Deregister the live one; renumber and retime the dead one: state kept.
    let mut retimed = dead.clone();
    retimed.slot = 9;
    retimed.check.interval = 150 * MS;
    retimed.check.unhealthy_threshold = 3;
    checker.update_targets(vec![retimed.clone()]).unwrap();
    let t = one(&checker);
    assert_eq!(t.slot, 9);
    assert!(t.state == HealthState::Unhealthy && t.consecutive_fail >= 2);

    // Point it at the live server: healthy again after two successes, under the new slot.
    let mut repointed = retimed.clone();
    repointed.check.port = server.port();
    checker.update_targets(vec![repointed.clone()]).unwrap();
    let t = one(&checker);
    assert!(
        t.state == HealthState::Unhealthy && t.consecutive_fail == 0,
        "counts restart: {t:?}"
    );
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(ev.healthy && ev.slot == 9, "{ev:?}");

    // Disabling the check of an unhealthy target makes it healthy at once.
    let mut dead_again = repointed.clone();
    dead_again.check.port = closed_port();
    checker.update_targets(vec![dead_again.clone()]).unwrap();
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(!ev.healthy);
    dead_again.check.enabled = false;
    checker.update_targets(vec![dead_again]).unwrap();
    let ev = next_event(&events, Duration::from_secs(1));
    assert!(ev.healthy);
    assert_eq!(ev.reason, "health check disabled");
    assert_eq!(one(&checker).state, HealthState::Healthy);

    checker.update_targets(Vec::new()).unwrap();
    assert!(checker.snapshot().is_empty());
    checker.stop();
    checker.stop();
    assert!(matches!(
        checker.update_targets(vec![live]),
        Err(HealthError::Stopped)
    ));
}

/// Issue 18: a target that is down when it is added is never healthy on the way to
/// unhealthy (it was initial, which takes no flows), and one that is removed and added again
/// starts initial again.
#[test]
fn a_target_down_at_start_goes_from_initial_to_unhealthy() {
    let down = target(
        1,
        "fw",
        LOCALHOST,
        check(Probe::Tcp, closed_port(), 100, 50),
    );
    let (checker, events) = spawn(vec![down.clone()]);
    assert_eq!(one(&checker).state, HealthState::Initial);
    let t = wait_until(&checker, 1, Duration::from_secs(2), |t| {
        t.consecutive_fail == 1
    });
    assert_eq!(
        t.state,
        HealthState::Initial,
        "one failure is below the threshold"
    );
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(!ev.healthy && ev.slot == 1, "{ev:?}");
    assert_eq!(ev.reason, "2 consecutive failures: connection refused");
    assert_eq!(one(&checker).state, HealthState::Unhealthy);
    std::thread::sleep(300 * MS);
    assert!(events.try_recv().is_err(), "nothing after unhealthy");

    // Removed and added again (as a re-registration does): initial again, no event.
    checker.update_targets(Vec::new()).unwrap();
    let server = Server::start(TCP);
    let mut back = down;
    back.check.port = server.port();
    checker.update_targets(vec![back]).unwrap();
    assert_eq!(one(&checker).state, HealthState::Initial);
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(ev.healthy, "{ev:?}");
}

/// Flap damping with the real checker: one TCP listener on 127.0.0.1, stopped and started
/// again and again, probed for two targets, one with `flap_damping_half_life_s` and one
/// without. Both fall at every stop; the undamped one comes back at every start, the damped
/// one is held down once its falls have added up (three falls within about half a
/// half-life): its probes pass and it stays unhealthy while its twin is healthy, until the
/// penalty has decayed, when it comes back "released by flap damping". (The state machine
/// alone, with its own clock, is `health::tests::test_flap_damping_holds_a_flapping_target_down`.)
#[test]
fn flap_damping_holds_a_flapping_listener_down_with_the_real_checker() {
    const DAMPED: u16 = 1;
    const PLAIN: u16 = 2;
    let mut server = Some(Server::start(TCP));
    let addr = server.as_ref().unwrap().addr;
    let fast = check(Probe::Tcp, addr.port(), 20, 50);
    let mut damped = fast.clone();
    // Long enough that falls a few hundred milliseconds apart add up (the hold needs three
    // within about half a half-life), short enough that the release comes within seconds.
    damped.flap_half_life = Some(Duration::from_secs(3));
    let (checker, events) = spawn(vec![
        target(DAMPED, "damped", LOCALHOST, damped),
        target(PLAIN, "plain", LOCALHOST, fast),
    ]);
    // Events of both targets arrive on one channel: kept until asked for.
    let mut pending: Vec<HealthEvent> = Vec::new();
    let next_of = |slot: u16, pending: &mut Vec<HealthEvent>| -> HealthEvent {
        loop {
            if let Some(i) = pending.iter().position(|e| e.slot == slot) {
                return pending.remove(i);
            }
            pending.push(next_event(&events, Duration::from_secs(30)));
        }
    };
    for slot in [DAMPED, PLAIN] {
        let ev = next_of(slot, &mut pending);
        assert!(ev.healthy, "initial -> healthy first: {ev:?}");
    }
    let state = |slot: u16| checker.snapshot().into_iter().find(|t| t.slot == slot);
    let held = |t: &TargetHealth| {
        t.last_reason
            .as_deref()
            .is_some_and(|r| r.contains("held down by flap damping"))
    };
    let mut falls = 0;
    let held_down = loop {
        assert!(falls < 8, "not held down after {falls} falls");
        drop(server.take());
        for slot in [DAMPED, PLAIN] {
            let ev = next_of(slot, &mut pending);
            assert!(!ev.healthy, "the closed port fails both: {ev:?}");
        }
        falls += 1;
        server = Some(Server::start_on(addr, TCP).unwrap());
        let ev = next_of(PLAIN, &mut pending);
        assert!(ev.healthy, "the undamped target is back at once: {ev:?}");
        assert!(!ev.reason.contains("flap"), "{ev:?}");
        // The damped one either comes back too (its penalty is still low), or its passing
        // probes are counted and it is held: whichever happens first.
        let outcome = loop {
            if let Some(i) = pending.iter().position(|e| e.slot == DAMPED) {
                break Err(pending.remove(i));
            }
            if let Some(t) = state(DAMPED).filter(|t| held(t)) {
                break Ok(t);
            }
            match events.recv_timeout(10 * MS) {
                Ok(ev) => pending.push(ev),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(e) => panic!("{e}"),
            }
        };
        match outcome {
            Ok(t) => break t,
            Err(ev) => assert!(ev.healthy, "{ev:?}"),
        }
    };
    assert!(falls >= 3, "held down after {falls} falls: {held_down:?}");
    // Held down: its probes pass, it stays unhealthy; its twin, probed on the same port, is
    // healthy.
    assert_eq!(held_down.state, HealthState::Unhealthy, "{held_down:?}");
    assert!(held_down.consecutive_ok >= 2, "{held_down:?}");
    assert_eq!(state(PLAIN).unwrap().state, HealthState::Healthy);
    let later = wait_until(&checker, DAMPED, Duration::from_secs(30), |t| {
        t.consecutive_ok >= held_down.consecutive_ok + 5 || t.state == HealthState::Healthy
    });
    if later.state == HealthState::Unhealthy {
        assert!(held(&later), "still held, and says so: {later:?}");
    }
    // Released once the penalty has decayed (at most three half-lives after its last fall).
    let ev = next_of(DAMPED, &mut pending);
    assert!(ev.healthy, "{ev:?}");
    assert!(ev.reason.ends_with("(released by flap damping)"), "{ev:?}");
    assert_eq!(state(DAMPED).unwrap().state, HealthState::Healthy);
    assert!(
        pending.iter().all(|e| e.slot != PLAIN),
        "the undamped target never fell while the listener was up: {pending:?}"
    );
}

/// `initial_state = "healthy"`: healthy at once (gwlb before issue 18); a dead target is
/// healthy until `unhealthy_threshold` probes have failed.
#[test]
fn initial_state_healthy_starts_targets_healthy() {
    let server = Server::start(TCP);
    let mut live = check(Probe::Tcp, server.port(), 100, 50);
    live.initial_state = InitialState::Healthy;
    let mut dead = check(Probe::Tcp, closed_port(), 100, 50);
    dead.initial_state = InitialState::Healthy;
    let (checker, events) = spawn(vec![
        target(1, "fw", LOCALHOST, live),
        target(2, "ids", LOCALHOST, dead),
    ]);
    let all = checker.snapshot();
    assert!(
        all.iter().all(|t| t.state == HealthState::Healthy),
        "{all:?}"
    );
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(!ev.healthy && ev.slot == 2, "{ev:?}");
    std::thread::sleep(300 * MS);
    assert!(events.try_recv().is_err(), "the live one never changed");
    wait_until(&checker, 1, Duration::from_secs(2), |t| {
        t.state == HealthState::Healthy && t.consecutive_ok >= 2
    });
}

/// Disabling the check of a target that is still initial makes it healthy at once.
#[test]
fn disabling_the_check_of_an_initial_target_makes_it_healthy() {
    // A 300 s interval: its first probe is due at a random point of the first 300 s.
    let mut t = target(
        1,
        "fw",
        LOCALHOST,
        check(Probe::Tcp, closed_port(), 300_000, 50),
    );
    let (checker, events) = spawn(vec![t.clone()]);
    assert_eq!(one(&checker).state, HealthState::Initial);
    t.check.enabled = false;
    checker.update_targets(vec![t]).unwrap();
    let ev = next_event(&events, Duration::from_secs(1));
    assert!(ev.healthy);
    assert_eq!(ev.reason, "health check disabled");
    assert_eq!(one(&checker).state, HealthState::Healthy);
}

#[test]
fn stop_ends_probing() {
    let server = Server::start(TCP);
    let (mut checker, _events) = spawn(vec![target(
        1,
        "fw",
        LOCALHOST,
        check(Probe::Tcp, server.port(), 100, 50),
    )]);
    std::thread::sleep(300 * MS);
    let started = Instant::now();
    checker.stop();
    assert!(started.elapsed() < 200 * MS, "stop is prompt");
    // Let the server thread accept what the kernel completed before the stop.
    std::thread::sleep(50 * MS);
    let seen = server.accepts().len();
    assert!(seen >= 2);
    std::thread::sleep(300 * MS);
    assert_eq!(server.accepts().len(), seen);
}

#[test]
fn probes_bind_the_source_address() {
    let server = Server::start(TCP);
    let mut t = target(
        1,
        "fw",
        LOCALHOST,
        check(Probe::Tcp, server.port(), 100, 50),
    );
    t.source = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let (checker, events) = spawn(vec![t]);
    wait_until(&checker, 1, Duration::from_secs(2), |t| {
        t.consecutive_ok >= 1
    });
    // The handshake completes in the kernel, maybe before the server thread's accept().
    let start = Instant::now();
    while server.accepts().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(2));
        std::thread::sleep(5 * MS);
    }
    let peer = server.accepts()[0].1;
    assert_eq!(peer.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    // At most the transition out of initial: no failure.
    assert!(events.try_iter().all(|e| e.healthy));
}

#[test]
fn local_errors_do_not_count_against_the_target() {
    let server = Server::start(TCP);
    let mut t = target(
        1,
        "fw",
        LOCALHOST,
        check(Probe::Tcp, server.port(), 100, 50),
    );
    // TEST-NET-1: not an address of this host, so bind() fails before anything is sent.
    t.source = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    let (checker, events) = spawn(vec![t]);
    let t = wait_until(&checker, 1, Duration::from_secs(2), |t| {
        t.last_reason.is_some()
    });
    std::thread::sleep(400 * MS);
    assert!(events.try_recv().is_err(), "no transition on local errors");
    // Neither success nor failure: it stays initial.
    assert!(t.state == HealthState::Initial && t.consecutive_fail == 0);
    assert!(
        t.last_reason
            .as_deref()
            .unwrap()
            .starts_with("binding source 192.0.2.1: "),
        "{t:?}"
    );
    assert!(server.accepts().is_empty());
}

#[test]
fn ipv6_loopback() {
    let Ok(server) = Server::start_on("[::1]:0".parse().unwrap(), 200) else {
        eprintln!("skipped: no IPv6 loopback");
        return;
    };
    let (checker, events) = spawn(vec![target(
        1,
        "fw",
        server.addr.ip(),
        check(http("/"), server.port(), 100, 50),
    )]);
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(ev.healthy && ev.slot == 1, "{ev:?}");
    let t = one(&checker);
    assert_eq!(t.last_reason.as_deref(), Some("HTTP 200"));
    assert!(events.try_recv().is_err());
    let request = server.requests.lock().unwrap()[0].clone();
    assert!(
        request.contains(&format!("\r\nHost: [::1]:{}\r\n", server.port())),
        "{request}"
    );
}

/// Cost of the checker: 1000 TCP targets probed every 100 ms (10 000 probes/s) for 3 s.
/// Prints the CPU time of the whole process (checker and the accepting server together).
/// `cargo test --release -p gwlb --no-default-features --test health_checks -- --ignored --nocapture`
#[test]
#[ignore = "measurement, not a check"]
fn measure_cost_of_1000_targets() {
    fn cpu() -> Duration {
        // SAFETY: `getrusage` only writes the zero-initialised struct it is given.
        let usage = unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut u);
            u
        };
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        tv(usage.ru_utime) + tv(usage.ru_stime)
    }
    let server = Server::start(TCP);
    let targets = (0..1000)
        .map(|i| {
            let mut c = check(Probe::Tcp, server.port(), 100, 50);
            c.jitter_percent = 10;
            target(i, &format!("g{i}"), LOCALHOST, c)
        })
        .collect();
    let (checker, events) = spawn(targets);
    std::thread::sleep(Duration::from_millis(500));
    let (cpu0, wall0, n0) = (cpu(), Instant::now(), server.accepts().len());
    std::thread::sleep(Duration::from_secs(3));
    let (cpu1, wall1, n1) = (cpu(), Instant::now(), server.accepts().len());
    let probes = n1 - n0;
    let cpu_used = cpu1 - cpu0;
    println!(
        "{probes} probes in {:?}: CPU {:?} ({:.1}% of a core, {:.1} µs per probe, server included)",
        wall1 - wall0,
        cpu_used,
        cpu_used.as_secs_f64() / (wall1 - wall0).as_secs_f64() * 100.0,
        cpu_used.as_secs_f64() * 1e6 / probes as f64
    );
    // Each target's one transition, initial -> healthy.
    assert!(events.try_iter().all(|e| e.healthy));
    assert!(checker
        .snapshot()
        .iter()
        .all(|t| t.state == HealthState::Healthy));
}

/// A datagram an appliance received, and from where.
type Datagram = (SocketAddr, Vec<u8>);

/// An appliance's data path on the loopback: a UDP socket on `addr`:6081 that sends every
/// Geneve datagram back to its sender while `forwarding` is on (an AWS-style echo), and
/// records what it received. Turning `forwarding` off is an appliance whose stack still
/// answers TCP but which forwards nothing (IP forwarding off).
struct DataPath {
    forwarding: Arc<AtomicBool>,
    /// Replace the nonce (bytes 8.. of the payload) before echoing: a forged return.
    forge: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<Datagram>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DataPath {
    fn start(addr: Ipv4Addr) -> DataPath {
        let socket = std::net::UdpSocket::bind((addr, 6081)).expect("bind the appliance's 6081");
        socket.set_read_timeout(Some(20 * MS)).unwrap();
        let forwarding = Arc::new(AtomicBool::new(true));
        let forge = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (forwarding, forge, received, stop) = (
                forwarding.clone(),
                forge.clone(),
                received.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    received.lock().unwrap().push((from, buf[..n].to_vec()));
                    if !forwarding.load(Ordering::SeqCst) {
                        continue;
                    }
                    let mut reply = buf[..n].to_vec();
                    if forge.load(Ordering::SeqCst) {
                        let last = reply.len() - 1;
                        reply[last] ^= 0x5a;
                    }
                    let _ = socket.send_to(&reply, from);
                }
            })
        };
        DataPath {
            forwarding,
            forge,
            received,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for DataPath {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Data-path probes on loopback: the checker's probes leave from 127.0.0.1:6081 to the
/// appliance at 127.0.0.2:6081 (one test, so that nothing else binds these ports).
#[test]
fn data_path_probes_catch_an_appliance_that_answers_but_does_not_forward() {
    let appliance = Ipv4Addr::new(127, 0, 0, 2);
    let data_path = DataPath::start(appliance);
    let server = Server::start_on(SocketAddr::new(appliance.into(), 0), TCP).unwrap();
    let dp = DataPathProbe {
        source: Ipv4Addr::new(198, 18, 0, 1),
        destination: Ipv4Addr::new(198, 18, 0, 2),
    };
    let mut combined = check(Probe::Tcp, server.port(), 100, 50);
    combined.data_path = Some(dp);
    let mut t = target(1, "fw", appliance.into(), combined);
    t.source = Some(LOCALHOST);
    let (checker, events) = spawn(vec![t.clone()]);

    // Both stages pass: healthy.
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(ev.healthy, "{ev:?}");
    assert_eq!(
        ev.reason,
        "2 consecutive successes: TCP connect ok, data path ok"
    );
    {
        let got = data_path.received.lock().unwrap();
        let (from, d) = got.first().expect("a probe reached the appliance");
        assert_eq!(*from, SocketAddr::new(LOCALHOST, 6081));
        let h = geneve::parse_aws_header(d).expect("Geneve with the AWS options");
        assert_eq!((h.vni, h.protocol_type), (4242, geneve::PROTO_IPV4));
        let o = h.options.complete().expect("all three options");
        assert_eq!((o.endpoint_id, o.attachment_id), (TUNNEL.endpoint_id, 7));
        let inner = &d[h.header_len..];
        assert_eq!(&inner[12..16], &[198, 18, 0, 1]);
        assert_eq!(&inner[16..20], &[198, 18, 0, 2]);
    }

    // Forwarding off, TCP still answered: unhealthy on the data path, within about
    // unhealthy_threshold intervals.
    data_path.forwarding.store(false, Ordering::SeqCst);
    let off = Instant::now();
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(!ev.healthy, "{ev:?}");
    assert_eq!(
        ev.reason,
        "2 consecutive failures: timeout after 50ms: data-path probe not returned (TCP connect ok)"
    );
    assert!(
        off.elapsed() < Duration::from_secs(1),
        "{:?}",
        off.elapsed()
    );
    assert!(server.accepts().len() >= 4, "the TCP stage kept passing");

    // Forged returns (another nonce) prove nothing.
    data_path.forge.store(true, Ordering::SeqCst);
    data_path.forwarding.store(true, Ordering::SeqCst);
    std::thread::sleep(400 * MS);
    assert!(
        events.try_recv().is_err(),
        "a forged return made it healthy"
    );
    let h = one(&checker);
    assert_eq!(h.state, HealthState::Unhealthy);
    assert!(h.consecutive_fail >= 3, "{h:?}");

    // Forwarding back: healthy again.
    data_path.forge.store(false, Ordering::SeqCst);
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(ev.healthy, "{ev:?}");

    // The data-path probe alone (no TCP stage): the TCP server going away changes nothing.
    let mut alone = t;
    alone.check.probe = Probe::Geneve;
    checker.update_targets(vec![alone.clone()]).unwrap();
    drop(server);
    std::thread::sleep(400 * MS);
    assert!(events.try_recv().is_err(), "no transition expected");
    let h = one(&checker);
    assert_eq!(h.state, HealthState::Healthy);
    assert_eq!(h.last_reason.as_deref(), Some("data path ok"));
    data_path.forwarding.store(false, Ordering::SeqCst);
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(!ev.healthy, "{ev:?}");
    assert_eq!(
        ev.reason,
        "2 consecutive failures: timeout after 50ms: data-path probe not returned"
    );

    // After an HTTP check: the probe is sent once the HTTP stage passes, and both must pass.
    let web = Server::start_on(SocketAddr::new(appliance.into(), 0), 200).unwrap();
    let mut after_http = alone;
    after_http.check = check(http("/health"), web.port(), 100, 50);
    after_http.check.data_path = Some(dp);
    checker.update_targets(vec![after_http]).unwrap();
    std::thread::sleep(400 * MS);
    assert!(
        events.try_recv().is_err(),
        "HTTP answers, the probe still does not return"
    );
    let h = one(&checker);
    assert_eq!(h.state, HealthState::Unhealthy);
    let reason = h.last_reason.unwrap_or_default();
    assert!(reason.contains("data-path probe not returned"), "{reason}");
    assert!(
        !web.requests.lock().unwrap().is_empty(),
        "the HTTP stage ran"
    );
    data_path.forwarding.store(true, Ordering::SeqCst);
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(ev.healthy, "{ev:?}");
    assert!(ev.reason.ends_with("data path ok"), "{ev:?}");
    // The HTTP stage failing fails the check, whatever the data path does.
    web.mode.store(503, Ordering::SeqCst);
    let ev = next_event(&events, Duration::from_secs(3));
    assert!(!ev.healthy, "{ev:?}");
    assert!(!ev.reason.contains("data path"), "{ev:?}");
}

/// A loopback HTTPS server (rustls) with the certificate `cert` and key `key` (DER): reads a
/// request, answers 200 with close_notify; records the requests it read.
struct TlsServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TlsServer {
    fn start(cert: Vec<u8>, key: Vec<u8>) -> TlsServer {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert)],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind(SocketAddr::new(LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(tcp) = conn else { continue };
                    let _ = tcp.set_read_timeout(Some(Duration::from_secs(1)));
                    let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 256];
                    // A client that refuses the certificate aborts the handshake: no request.
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut chunk) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    if buf.is_empty() {
                        continue;
                    }
                    requests
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf).into_owned());
                    let _ = tls.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
            })
        };
        TlsServer {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// HTTPS checks: without verification (the default, as AWS) a self-signed certificate
/// passes; with it, only a chain to `tls_ca_file` that names the target (its address, or
/// `tls_server_name`) passes, and a failure names rustls's reason. A plain-HTTP server fails
/// an HTTPS check.
#[test]
fn https_checks_with_and_without_certificate_verification() {
    use gwlb::config::TlsCheck;
    let ours =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "fw1.test".into()]).unwrap();
    let theirs = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let server = TlsServer::start(ours.cert.der().to_vec(), ours.signing_key.serialize_der());
    let plain = Server::start(200);
    let dir = std::env::temp_dir().join(format!("gwlb-https-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, wrong_ca) = (dir.join("ca.pem"), dir.join("other.pem"));
    std::fs::write(&ca, ours.cert.pem()).unwrap();
    std::fs::write(&wrong_ca, theirs.cert.pem()).unwrap();
    let https = |port: u16, verify: bool, ca: Option<&std::path::Path>, name: Option<&str>| {
        check(
            Probe::Http {
                path: "/health".into(),
                success_codes: "200-399".parse::<StatusCodes>().unwrap(),
                tls: Some(TlsCheck {
                    verify,
                    ca_file: ca.map(|p| p.to_path_buf()),
                    server_name: name.map(str::to_owned),
                }),
            },
            port,
            100,
            90,
        )
    };
    let p = server.addr.port();
    // (slot, check, healthy?, what the reason says)
    let cases: Vec<(u16, HealthCheck, bool, &str)> = vec![
        (1, https(p, false, None, None), true, "HTTP 200"),
        (2, https(p, true, Some(&ca), None), true, "HTTP 200"),
        (
            3,
            https(p, true, Some(&ca), Some("fw1.test")),
            true,
            "HTTP 200",
        ),
        (
            4,
            https(p, true, Some(&wrong_ca), None),
            false,
            "TLS: invalid peer certificate",
        ),
        (
            5,
            https(p, true, Some(&ca), Some("fw2.test")),
            false,
            "TLS: invalid peer certificate: certificate not valid for name",
        ),
        (
            6,
            https(plain.port(), false, None, None),
            false,
            "TLS handshake not complete",
        ),
    ];
    let targets = cases
        .iter()
        .map(|(slot, c, _, _)| target(*slot, &format!("g{slot}"), LOCALHOST, c.clone()))
        .collect();
    let (checker, events) = spawn(targets);
    let mut seen = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.len() < cases.len() && Instant::now() < deadline {
        if let Ok(ev) = events.recv_timeout(Duration::from_millis(100)) {
            seen.entry(ev.slot).or_insert(ev);
        }
    }
    for (slot, _, healthy, reason) in &cases {
        let ev = seen
            .get(slot)
            .unwrap_or_else(|| panic!("slot {slot}: no event; {:?}", checker.snapshot()));
        assert_eq!(ev.healthy, *healthy, "slot {slot}: {ev:?}");
        assert!(
            ev.reason.contains(reason),
            "slot {slot}: {:?} lacks {reason:?}",
            ev.reason
        );
    }
    let requests = server.requests.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .all(|r| r.starts_with("GET /health HTTP/1.1\r\n")),
        "{requests:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
