//! The control API and metrics listeners under abuse, against a running gwlb on real DPDK
//! ports with real traffic (see `netns/mod.rs`): 10,000 idle connections, slow-loris heads
//! and bodies, 256 MB header lines, bytes that are not HTTP/1.1, and file-descriptor
//! exhaustion. Throughout, every flow sent is inspected by an appliance and forwarded back;
//! gwlb's memory stays bounded; the listeners answer again as soon as the abuse stops.

// The `gwlb` binary these tests run needs the DPDK data path.
#![cfg(feature = "dpdk")]

mod needs_root;
mod netns;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use netns::{ports, Rig};

/// Resident memory of `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Threads of `pid`.
fn threads(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Threads")
}

/// File descriptors `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .count()
}

/// The (soft, hard) limit of open files of `pid` (0 = this process).
fn nofile(pid: u32) -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a null new-limit pointer only reads the limit into `lim`, a valid rlimit.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut lim,
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    (lim.rlim_cur, lim.rlim_max)
}

/// Sets the soft limit of open files of `pid` (0 = this process), keeping the hard limit.
fn set_nofile(pid: u32, soft: u64) {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: nofile(pid).1,
    };
    // SAFETY: `lim` is a valid rlimit; a null old-limit pointer is allowed.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &lim,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// One `GET path` on a new connection: the status code, or `None` if the connection failed
/// or was closed without a status line.
fn get_status(sock: &Path, path: &str) -> Option<u16> {
    let mut s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    // A refused connection may be closed (with its 503 written) before the request is sent:
    // read the reply anyway.
    let _ = s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: gwlb\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    status_of(&mut s)
}

/// The status code of the reply read from `s`.
fn status_of(s: &mut UnixStream) -> Option<u16> {
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let head = std::str::from_utf8(&buf[..got]).ok()?;
    head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Waits until `GET path` answers 200; returns how long that took.
fn answers_again(sock: &Path, path: &str, within: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        if get_status(sock, path) == Some(200) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < within,
            "{path} did not answer again within {within:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the peer closed `s` within `within` (read returns 0 or an error).
fn closed_within(s: &mut UnixStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Data-path probe: `n` new flows from `first`; every one is inspected and forwarded back.
struct Traffic {
    next: u16,
    sent: u64,
}

impl Traffic {
    fn check(&mut self, rig: &Rig, what: &str) {
        let ps = ports(self.next..self.next + 40);
        self.next += 40;
        let (at, back) = rig.send_flows(&ps);
        assert_eq!(
            at.len(),
            ps.len(),
            "{what}: flows not inspected: {} of {}",
            at.len(),
            ps.len()
        );
        assert_eq!(
            back.len(),
            ps.len(),
            "{what}: flows not forwarded back: {} of {}",
            back.len(),
            ps.len()
        );
        self.sent += ps.len() as u64;
    }
}

fn sockets(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir();
    (
        dir.join(format!("{name}-api.sock")),
        dir.join(format!("{name}-metrics.sock")),
    )
}

#[test]
#[ignore = "needs root (DPDK, namespaces): scripts/test.sh runs it as root"]
fn api_abuse_never_touches_the_data_path() {
    needs_root::require();
    let (api, metrics) = sockets("gwtabuse");
    let control = format!(
        "\n[control]\napi_listen = \"unix:{}\"\nmetrics_listen = \"unix:{}\"\n",
        api.display(),
        metrics.display()
    );
    let rig = Rig::start_with("gwtabuse", "", &[100, 100], 2, &control);
    let pid = rig.gwlb().pid();
    let mut traffic = Traffic {
        next: 20_000,
        sent: 0,
    };
    traffic.check(&rig, "before");
    assert_eq!(get_status(&metrics, "/metrics"), Some(200));
    let rss0 = rss_kib(pid);
    let threads0 = threads(pid);
    eprintln!(
        "gwlb RSS at start: {rss0} KiB, {} fds, {threads0} threads",
        open_fds(pid)
    );

    // (1) 10,000 idle connections to the metrics port (no token there).
    let hard = nofile(0).1;
    assert!(
        hard >= 10_100,
        "need 10,100 open files, the hard limit is {hard}"
    );
    set_nofile(0, hard);
    let mut idle = Vec::new();
    for _ in 0..10_000 {
        if let Ok(s) = UnixStream::connect(&metrics) {
            idle.push(s);
        }
    }
    eprintln!(
        "(1) {} idle connections open; gwlb RSS {} KiB, {} fds",
        idle.len(),
        rss_kib(pid),
        open_fds(pid)
    );
    assert!(
        idle.len() >= 9_000,
        "could open only {} connections",
        idle.len()
    );
    // No thread per connection: a thread limit cannot be reached from the network.
    assert_eq!(
        threads(pid),
        threads0,
        "gwlb started threads for connections"
    );
    traffic.check(&rig, "10,000 idle connections");
    // The API is another listener: it answers throughout.
    assert_eq!(
        get_status(&api, "/v1/stats"),
        Some(200),
        "API during the metrics flood"
    );
    // The metrics listener refuses what is over its limit with 503, and is alive.
    assert!(matches!(get_status(&metrics, "/metrics"), Some(503 | 200)));
    assert_eq!(rig.gwlb().log_text().matches("panicked").count(), 0);
    drop(idle);
    eprintln!(
        "(1) metrics answered again {:?} after the idle connections closed",
        answers_again(&metrics, "/metrics", Duration::from_secs(3))
    );

    // (2) Slow loris: 200 connections sending a header a byte at a time, and 8 sending a
    // declared body that never comes (together under the 256-connection limit: more get 503,
    // as in (1)). Heads are cut off by the 5 s header timeout, bodies answered 408 after the
    // 10 s body timeout; other requests are answered meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let loris: Vec<_> = (0..200)
        .filter_map(|_| UnixStream::connect(&api).ok())
        .collect();
    let dribbler = {
        let stop = Arc::clone(&stop);
        let mut conns: Vec<UnixStream> = loris.iter().map(|s| s.try_clone().unwrap()).collect();
        thread::spawn(move || {
            let _ = conns
                .iter_mut()
                .try_for_each(|s| s.write_all(b"GET /v1/stats HTTP/1.1\r\nX-Slow: "));
            while !stop.load(Ordering::Relaxed) {
                for s in &mut conns {
                    let _ = s.write_all(b"a");
                }
                thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let mut bodies: Vec<UnixStream> = (0..8)
        .map(|_| {
            let mut s = UnixStream::connect(&api).unwrap();
            s.write_all(
                b"POST /v1/reload HTTP/1.1\r\nHost: gwlb\r\nContent-Length: 1000\r\n\r\n{\"x\":",
            )
            .unwrap();
            s
        })
        .collect();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            get_status(&api, "/v1/stats"),
            Some(200),
            "API during slow loris"
        );
        traffic.check(&rig, "slow loris");
    }
    let mut cut = 0;
    for s in loris {
        let mut s = s;
        if closed_within(&mut s, Duration::from_secs(8)) {
            cut += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    dribbler.join().unwrap();
    eprintln!("(2) slow-loris heads cut off by the header timeout: {cut} of 200");
    assert_eq!(cut, 200, "slow-loris connections left open");
    for s in &mut bodies {
        s.set_read_timeout(Some(Duration::from_secs(12))).unwrap();
        assert_eq!(status_of(s), Some(408), "a body that never comes");
    }
    traffic.check(&rig, "after slow loris");

    // (3) 256 MB header lines on 4 connections: answered 431 and closed once the head is over
    // its 16 KiB limit; gwlb's memory does not grow with them.
    let big: Vec<_> = (0..4)
        .map(|_| {
            let api = api.clone();
            thread::spawn(move || {
                let mut s = UnixStream::connect(&api).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
                let _ = s.write_all(b"GET /v1/stats HTTP/1.1\r\nX-Big: ");
                let chunk = vec![b'a'; 1 << 20];
                let mut sent = 0usize;
                while sent < 256 << 20 {
                    if s.write_all(&chunk).is_err() {
                        break;
                    }
                    sent += chunk.len();
                }
                (sent, status_of(&mut s))
            })
        })
        .collect();
    traffic.check(&rig, "256 MB headers");
    let mut peak = 0;
    for b in big {
        let (sent, status) = b.join().unwrap();
        eprintln!(
            "(3) header line: {} MiB written before the server closed, reply {status:?}",
            sent >> 20
        );
        assert!(sent < 256 << 20, "the server read a 256 MB header");
        assert!(matches!(status, Some(431) | None));
        peak = peak.max(rss_kib(pid));
    }
    eprintln!(
        "(3) gwlb RSS after the big headers: {} KiB (start {rss0} KiB)",
        rss_kib(pid)
    );
    assert!(
        peak < rss0 + 64 * 1024,
        "RSS grew from {rss0} to {peak} KiB"
    );

    // (4) Not HTTP/1.1: a non-ASCII header byte gets 400; an HTTP/2 preface gets an answer or
    // a closed connection at once, never a connection held open.
    let mut s = UnixStream::connect(&api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"GET /v1/stats HTTP/1.1\r\nHost: gwlb\r\nX-Bad: \xff\xfe\x01\r\n\r\n")
        .unwrap();
    let bad = status_of(&mut s);
    eprintln!("(4) non-ASCII header byte: {bad:?}");
    assert_eq!(bad, Some(400));
    let mut s = UnixStream::connect(&api).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(2)),
        "HTTP/2 preface held open"
    );
    traffic.check(&rig, "bad bytes");

    // (5) File descriptors exhausted: gwlb may open only a few more; accept() fails with
    // EMFILE while they are used up. The listeners survive it and answer again once
    // descriptors are free; the data path forwards throughout.
    let fds = open_fds(pid) as u64;
    let (soft, _) = nofile(pid);
    set_nofile(pid, fds + 8);
    let hogs: Vec<_> = (0..64)
        .filter_map(|_| UnixStream::connect(&metrics).ok())
        .collect();
    thread::sleep(Duration::from_millis(300));
    traffic.check(&rig, "fd exhaustion");
    let refused = get_status(&api, "/v1/stats");
    eprintln!(
        "(5) {} connections made while gwlb had {fds}+8 fds; API while exhausted: {refused:?}",
        hogs.len()
    );
    drop(hogs);
    set_nofile(pid, soft);
    eprintln!(
        "(5) API answered again {:?} after the limit was lifted",
        answers_again(&api, "/v1/stats", Duration::from_secs(3))
    );
    eprintln!(
        "(5) metrics answered again {:?}",
        answers_again(&metrics, "/metrics", Duration::from_secs(3))
    );
    let log = rig.gwlb().log_text();
    assert!(
        log.contains("accepting a connection"),
        "no accept error logged:\n{log}"
    );
    traffic.check(&rig, "after fd exhaustion");

    let rss1 = rss_kib(pid);
    eprintln!(
        "gwlb RSS at the end: {rss1} KiB (start {rss0} KiB); {} flows inspected",
        traffic.sent
    );
    let report = rig.stop();
    assert!(
        report.get("encapsulated").copied().unwrap_or(0) >= traffic.sent,
        "{report:?}"
    );
}
