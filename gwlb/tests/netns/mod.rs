//! A gateway in network namespaces, for control-plane tests with real DPDK ports and real
//! sockets.
//!
//! ```text
//!  ns GWT-usr                     ns GWT-gw                         ns GWT-app
//!  raw AF_PACKET on U1 ── veth ── U0 [gwlb net_af_packet]  A0 ── veth ── A1 10.77.0.11..
//!  (frames in, frames out)        10.78.0.1  + TAP (kernel) 10.77.0.1      appliances
//! ```
//!
//! - gwlb runs in `GWT-gw` on `net_af_packet` ports over the two veths; the appliance port
//!   has a `kernel_interface` (TAP exception path) with the gateway's address, so health
//!   checks, ARP and ping go through DPDK to the kernel and back.
//! - The appliances are sockets of this test process opened inside `GWT-app`: per appliance
//!   a UDP socket on port 6081 that echoes every Geneve packet back AWS-style (same payload,
//!   addresses swapped by the kernel) and records the inner flow's source port, and a TCP
//!   health-check listener the test can close and reopen. Their MACs are the kernel's, which
//!   gwlb learns by ARP through the exception path.
//! - User traffic is injected as raw Ethernet frames on `GWT-usr`'s veth end and what gwlb
//!   forwards back (decapsulated, or uninspected in fail-open) is captured there.
//!
//! Needs root. Namespaces are named after the test so tests may run in parallel.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use gwlb_tests::configs::{mac_str, target_toml};
use gwlb_tests::frames::{frame, Ips, L4};

/// The gateway's MAC on its user port.
pub const GW_USER_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x01];
/// The gateway's MAC on its appliance port (and its TAP).
pub const GW_APP_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x02];
/// MAC of the frames' sender on the user side (a router in front of the gateway).
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x10];
/// MAC of the next hop toward the servers (static neighbour in gwlb's config).
pub const NEXT_HOP_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x20];
/// Client address (source of injected frames).
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 80, 0, 2);
/// Server address (destination of injected frames, routed via 10.78.0.3).
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 2);
/// The gateway's address on the appliance side.
pub const GW_APP_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// Health-check port of the appliances.
pub const HC_PORT: u16 = 8080;
/// Server port of the injected UDP flows.
pub const SERVER_PORT: u16 = 7000;

/// The address of appliance `i` (0-based).
pub fn appliance_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 11 + i as u8)
}

/// Runs a command; panics with its stderr if it fails.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run command");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sets kernel `settings` (`key=value`) in namespace `ns`.
pub fn sysctl(ns: &str, settings: &[&str]) {
    let mut args = vec!["ip", "netns", "exec", ns, "sysctl", "-qw"];
    args.extend_from_slice(settings);
    sh(&args);
}

/// Runs a command, ignoring whether it worked (cleanup of what may not exist).
pub fn sh_quiet(args: &[&str]) {
    let _ = Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs `f` on a thread that has entered namespace `ns` (sockets it opens live there).
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        // SAFETY: setns on a valid namespace fd affects only this thread, which owns it
        // until it ends.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}");
        f()
    })
    .join()
    .expect("netns thread")
}

/// The three namespaces and their veths. Removed on drop.
pub struct Topology {
    /// Prefix of the namespace and interface names.
    pub name: String,
}

impl Topology {
    /// The namespace of the gateway.
    pub fn gw(&self) -> String {
        format!("{}-gw", self.name)
    }
    /// The namespace of the appliances.
    pub fn app(&self) -> String {
        format!("{}-app", self.name)
    }
    /// The namespace of the user side.
    pub fn usr(&self) -> String {
        format!("{}-usr", self.name)
    }
    /// The veth end gwlb drives on the user side.
    pub fn u0(&self) -> String {
        format!("{}u0", self.name)
    }
    /// The user side's veth end (where frames are injected and captured).
    pub fn u1(&self) -> String {
        format!("{}u1", self.name)
    }
    /// The veth end gwlb drives on the appliance side.
    pub fn a0(&self) -> String {
        format!("{}a0", self.name)
    }
    /// The appliances' veth end.
    pub fn a1(&self) -> String {
        format!("{}a1", self.name)
    }
    /// The TAP interface of the exception path.
    pub fn tap(&self) -> String {
        format!("{}tap", self.name)
    }

    /// Creates the namespaces and veths for `appliances` appliance addresses. `name` must be
    /// at most 8 characters (interface names).
    pub fn create(name: &str, appliances: usize) -> Topology {
        assert!(name.len() <= 8);
        let t = Topology { name: name.into() };
        t.destroy();
        for ns in [t.gw(), t.app(), t.usr()] {
            sh(&["ip", "netns", "add", &ns]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            sysctl(
                &ns,
                &[
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ],
            );
        }
        let (gw, app, usr) = (t.gw(), t.app(), t.usr());
        for (a, b, ns_b, mac_a) in [
            (t.u0(), t.u1(), usr.clone(), GW_USER_MAC),
            (t.a0(), t.a1(), app.clone(), GW_APP_MAC),
        ] {
            sh(&[
                "ip", "link", "add", &a, "netns", &gw, "type", "veth", "peer", "name", &b, "netns",
                &ns_b,
            ]);
            sh(&[
                "ip",
                "-n",
                &gw,
                "link",
                "set",
                &a,
                "address",
                &mac_str(mac_a),
                "arp",
                "off",
                "up",
            ]);
            sh(&["ip", "-n", &ns_b, "link", "set", &b, "up"]);
            for (ns, dev) in [(&gw, &a), (&ns_b, &b)] {
                sh_quiet(&[
                    "ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "rx", "off",
                    "tso", "off", "gso", "off", "gro", "off",
                ]);
            }
        }
        for i in 0..appliances {
            sh(&[
                "ip",
                "-n",
                &app,
                "addr",
                "add",
                &format!("{}/24", appliance_ip(i)),
                "dev",
                &t.a1(),
            ]);
        }
        t
    }

    fn destroy(&self) {
        for ns in [self.gw(), self.app(), self.usr()] {
            sh_quiet(&["ip", "netns", "del", &ns]);
        }
    }

    /// gwlb's configuration for this topology: `extra_group` is appended to the target
    /// group's table (policies), targets are listed with their weights.
    pub fn config(&self, extra_group: &str, weights: &[u16]) -> String {
        let mut s = format!(
            r#"
[dataplane]
worker_cpus = [1]
main_cpu = 0
hugepages = "off"
memory_mb = 256
flow_table_capacity = 4096
stats_interval_s = 0

[[ports]]
name = "user"
device = "net_af_packet0,iface={u0}"
role = "user"
address = "10.78.0.1/24"
mac = "{umac}"

[[ports]]
name = "appliances"
device = "net_af_packet1,iface={a0}"
role = "appliance"
address = "10.77.0.1/24"
mac = "{amac}"
kernel_interface = "{tap}"

[[routes]]
prefix = "0.0.0.0/0"
via = "10.78.0.3"
port = "user"

[[neighbors]]
address = "10.78.0.3"
mac = "{nh}"
port = "user"

[[target_groups]]
name = "tg"
user_ports = ["user"]
{extra_group}

[target_groups.health_check]
protocol = "tcp"
port = {HC_PORT}
interval_ms = 100
timeout_ms = 80
healthy_threshold = 2
unhealthy_threshold = 2
"#,
            u0 = self.u0(),
            a0 = self.a0(),
            tap = self.tap(),
            umac = mac_str(GW_USER_MAC),
            amac = mac_str(GW_APP_MAC),
            nh = mac_str(NEXT_HOP_MAC),
        );
        for (i, w) in weights.iter().enumerate() {
            s.push_str(&target_toml(appliance_ip(i), None, Some(*w)));
        }
        s
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// One simulated appliance: Geneve echo + health-check listener.
pub struct Appliance {
    /// Its address.
    pub ip: IpAddr,
    /// Inner UDP source ports seen, in order.
    pub seen: Arc<Mutex<Vec<u16>>>,
    hc: Arc<Mutex<Option<TcpListener>>>,
    hc_open: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    ns: String,
}

impl Appliance {
    /// Starts appliance `i` in namespace `ns`.
    pub fn start(ns: &str, i: usize) -> Appliance {
        Self::start_at(ns, IpAddr::V4(appliance_ip(i)))
    }

    /// Starts an appliance with address `ip` (already configured in `ns`).
    pub fn start_at(ns: &str, ip: IpAddr) -> Appliance {
        let a = Appliance {
            ip,
            seen: Arc::default(),
            hc: Arc::default(),
            hc_open: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
            ns: ns.into(),
        };
        let sock = in_netns(ns, move || {
            let s = UdpSocket::bind(SocketAddr::new(ip, geneve::UDP_PORT)).expect("bind 6081");
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            s
        });
        let (seen, stop) = (a.seen.clone(), a.stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 9000];
            while !stop.load(Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let pkt = &buf[..n];
                if let Ok(h) = geneve::parse_aws_header(pkt) {
                    let inner = &pkt[h.header_len..];
                    // IPv4 inner: source port after the IHL-sized header.
                    if inner.len() >= 28 && inner[0] >> 4 == 4 {
                        let ihl = usize::from(inner[0] & 0x0f) * 4;
                        let sport = u16::from_be_bytes([inner[ihl], inner[ihl + 1]]);
                        seen.lock().unwrap().push(sport);
                    }
                }
                // AWS style: the same Geneve packet back to the gateway's Geneve port.
                let _ = sock.send_to(pkt, (from.ip(), geneve::UDP_PORT));
            }
        });
        a.open_hc();
        a
    }

    /// Opens (or reopens) the health-check listener.
    pub fn open_hc(&self) {
        let ip = self.ip;
        let l = in_netns(&self.ns, move || {
            let addr = SocketAddr::new(ip, HC_PORT);
            let s = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                None,
            )
            .unwrap();
            s.set_reuse_address(true).unwrap();
            s.bind(&addr.into()).expect("bind hc");
            s.listen(128).unwrap();
            TcpListener::from(s)
        });
        l.set_nonblocking(true).unwrap();
        let acceptor = l.try_clone().unwrap();
        *self.hc.lock().unwrap() = Some(l);
        self.hc_open.store(true, Relaxed);
        let open = self.hc_open.clone();
        std::thread::spawn(move || {
            while open.load(Relaxed) {
                // Accept and drop: the probe only needs the handshake.
                match acceptor.accept() {
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
    }

    /// Closes the health-check listener: probes get refused.
    pub fn close_hc(&self) {
        self.hc_open.store(false, Relaxed);
        *self.hc.lock().unwrap() = None;
        std::thread::sleep(Duration::from_millis(20));
    }

    /// Number of inner packets seen so far.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Source ports seen after the first `from` packets.
    pub fn ports_since(&self, from: usize) -> Vec<u16> {
        self.seen.lock().unwrap()[from..].to_vec()
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        self.close_hc();
    }
}

/// A raw AF_PACKET socket on the user side's veth end.
pub struct UserPort {
    fd: OwnedFd,
}

impl UserPort {
    /// Opens it in namespace `ns` on interface `ifname`.
    pub fn open(ns: &str, ifname: &str) -> UserPort {
        let ifname = ifname.to_owned();
        let fd = in_netns(ns, move || {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket(2) call; the result is checked.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
            assert!(fd >= 0, "AF_PACKET socket");
            // SAFETY: fd is a fresh, owned descriptor.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let cname = std::ffi::CString::new(ifname).unwrap();
            // SAFETY: cname is a valid NUL-terminated string.
            let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
            assert!(index > 0, "interface index");
            // SAFETY: sockaddr_ll is plain old data; zero is a valid start.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = index as i32;
            // SAFETY: sll is a properly initialised sockaddr_ll of the given size.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(rc, 0, "bind AF_PACKET");
            // Bursts of a few hundred frames must not overflow the default receive buffer
            // (about 200 KiB: ~270 small frames' worth of skb memory). Root may force it.
            let rcvbuf: libc::c_int = 32 << 20;
            // SAFETY: rcvbuf is a valid c_int for SO_RCVBUFFORCE.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    (&rcvbuf as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as u32,
                )
            };
            assert_eq!(rc, 0, "SO_RCVBUFFORCE");
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 20_000,
            };
            // SAFETY: tv is a valid timeval for SO_RCVTIMEO.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as u32,
                )
            };
            fd
        });
        UserPort { fd }
    }

    /// Sends one frame.
    pub fn send(&self, frame: &[u8]) {
        // SAFETY: frame is a valid buffer of frame.len() bytes; the socket is bound.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(n, frame.len() as isize, "send frame");
    }

    /// Frames received (any direction on the wire toward this end) until `quiet` passes
    /// without one.
    pub fn drain(&self, quiet: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut last = Instant::now();
        let mut buf = vec![0u8; 9216];
        while last.elapsed() < quiet {
            // SAFETY: buf is a valid writable buffer of buf.len() bytes.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 {
                out.push(buf[..n as usize].to_vec());
                last = Instant::now();
            }
        }
        out
    }
}

/// A UDP frame from the client (source port `sport`) to the server, as the router in front
/// of the gateway would send it.
pub fn client_frame(sport: u16) -> Vec<u8> {
    frame(
        CLIENT_MAC,
        GW_USER_MAC,
        Ips::V4(CLIENT.octets(), SERVER.octets()),
        L4::Udp {
            src_port: sport,
            dst_port: SERVER_PORT,
        },
        format!("flow {sport}").as_bytes(),
    )
}

/// A TCP SYN from the client (source port `sport`) to the server.
pub fn client_syn(sport: u16) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(CLIENT_MAC, GW_USER_MAC)
        .ipv4(CLIENT.octets(), SERVER.octets(), 64)
        .tcp(sport, 443, 5000, 64240)
        .syn();
    let mut f = Vec::with_capacity(b.size(0));
    b.write(&mut f, &[]).unwrap();
    f
}

/// `(destination port, seq, ack)` of the TCP resets among `frames` that the gateway sent
/// back to the client, from the server's address.
pub fn resets_to_client(frames: &[Vec<u8>]) -> Vec<(u16, u32, u32)> {
    frames
        .iter()
        .filter(|f| f.len() >= 54 && f[0..6] == CLIENT_MAC && f[6..12] == GW_USER_MAC)
        .filter_map(|f| {
            let p = etherparse::SlicedPacket::from_ethernet(f).ok()?;
            let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
                return None;
            };
            if ip.header().source_addr() != SERVER || ip.header().destination_addr() != CLIENT {
                return None;
            }
            match p.transport {
                Some(etherparse::TransportSlice::Tcp(t)) if t.rst() => Some((
                    t.destination_port(),
                    t.sequence_number(),
                    t.acknowledgment_number(),
                )),
                _ => None,
            }
        })
        .collect()
}

/// Source ports of the client frames among `frames` that gwlb forwarded toward the next
/// hop (destination MAC of the next hop, source MAC of the gateway).
pub fn forwarded_ports(frames: &[Vec<u8>]) -> Vec<u16> {
    frames
        .iter()
        .filter(|f| f.len() >= 42 && f[0..6] == NEXT_HOP_MAC && f[6..12] == GW_USER_MAC)
        .filter_map(|f| {
            let p = etherparse::SlicedPacket::from_ethernet(f).ok()?;
            match p.transport {
                Some(etherparse::TransportSlice::Udp(u)) => Some(u.source_port()),
                _ => None,
            }
        })
        .collect()
}

/// A running `gwlb run` in the gateway namespace, with its log collected.
pub struct Gwlb {
    child: Child,
    log: Arc<Mutex<Vec<(Instant, String)>>>,
    /// The configuration file.
    pub config: std::path::PathBuf,
}

impl Gwlb {
    /// Writes `config` to a file and starts gwlb on it in namespace `ns`.
    pub fn start(ns: &str, config: &str) -> Gwlb {
        let dir = std::env::temp_dir().join(format!("{ns}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gwlb.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                env!("CARGO_BIN_EXE_gwlb"),
                "run",
                "--config",
            ])
            .arg(&path)
            .env("GWLB_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gwlb");
        let log: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let stderr = child.stderr.take().unwrap();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                l.lock().unwrap().push((Instant::now(), line));
            }
        });
        Gwlb {
            child,
            log,
            config: path,
        }
    }

    /// The process id of gwlb (`ip netns exec` execs it in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first log line at or after `since` containing every one of `needles`, waiting up
    /// to `within`.
    pub fn wait_log(
        &self,
        since: Instant,
        needles: &[&str],
        within: Duration,
    ) -> Option<(Instant, String)> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(hit) = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|(t, l)| *t >= since && needles.iter().all(|n| l.contains(n)))
            {
                return Some(hit.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Panics with the log if gwlb has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("gwlb exited ({st}):\n{}", self.log_text());
        }
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Sends a signal to gwlb (through `ip netns exec`'s exec, the child is gwlb itself).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Stops gwlb with SIGINT and returns its final report's counters: worker lines summed
    /// (`rx`, `encapsulated`, ..., `drop <reason>`) and `appliance <ip>` packet counts.
    pub fn stop(mut self) -> BTreeMap<String, u64> {
        self.signal(libc::SIGINT);
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "gwlb exit {status}\n{}", self.log_text());
        let mut m = BTreeMap::new();
        for line in out.lines() {
            if let Some(rest) = line.strip_prefix("worker ") {
                let fields: Vec<&str> = rest.split_whitespace().skip(1).collect();
                for kv in fields.chunks(2) {
                    if let [k, v] = kv {
                        *m.entry(k.to_string()).or_default() += v.parse::<u64>().unwrap_or(0);
                    }
                }
            } else if let Some(rest) = line.trim().strip_prefix("drop ") {
                let (k, v) = rest.split_once(": ").unwrap();
                *m.entry(format!("drop {k}")).or_default() += v.parse::<u64>().unwrap();
            } else if let Some(rest) = line.strip_prefix("appliance ") {
                let (addr, fields) = rest.split_once(": ").unwrap();
                let packets = fields.split_whitespace().nth(1).unwrap().parse().unwrap();
                m.insert(format!("appliance {addr}"), packets);
            }
        }
        m
    }
}

impl Drop for Gwlb {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Settle time after sending: the round trip through the appliances takes well under this.
pub const QUIET: Duration = Duration::from_millis(300);

/// Health check: interval 100 ms, unhealthy threshold 2, jitter 10 %, timeout 80 ms.
/// Detection takes about 2 intervals; this bound adds the jitter, one probe timeout and a
/// generous scheduling margin for a loaded 2-core CI machine.
pub const DETECTION_BOUND: Duration = Duration::from_millis(2 * 110 + 80 + 1000);

/// One scenario at a time: each runs a busy-polling gwlb worker, and detection times are
/// only meaningful when the scenarios do not compete for the CPUs.
pub static SERIAL: Mutex<()> = Mutex::new(());

/// A running scenario: topology, appliances, user port and gwlb.
pub struct Rig {
    _serial: MutexGuard<'static, ()>,
    /// Namespaces.
    pub topo: Topology,
    /// The appliances (one per address of the topology).
    pub apps: Vec<Appliance>,
    /// The user side.
    pub user: UserPort,
    gwlb: Option<Gwlb>,
}

impl Rig {
    /// Starts a scenario with one appliance per weight, all registered.
    pub fn start(name: &str, extra_group: &str, weights: &[u16]) -> Rig {
        Self::start_with(name, extra_group, weights, weights.len(), "")
    }

    /// Starts a scenario with `appliances` appliances of which the first `weights.len()` are
    /// registered, and `extra` appended to the configuration.
    pub fn start_with(
        name: &str,
        extra_group: &str,
        weights: &[u16],
        appliances: usize,
        extra: &str,
    ) -> Rig {
        let serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let topo = Topology::create(name, appliances);
        let apps = (0..appliances)
            .map(|i| Appliance::start(&topo.app(), i))
            .collect();
        let user = UserPort::open(&topo.usr(), &topo.u1());
        let config = format!("{}{extra}", topo.config(extra_group, weights));
        let started = Instant::now();
        let gwlb = Gwlb::start(&topo.gw(), &config);
        let mut rig = Rig {
            _serial: serial,
            topo,
            apps,
            user,
            gwlb: Some(gwlb),
        };
        std::thread::sleep(Duration::from_millis(500));
        rig.gwlb.as_mut().expect("started").assert_running();
        // Targets start initial (no new flows) until their checks pass: every scenario
        // starts from a pool of healthy appliances.
        rig.wait_healthy(started, 0..weights.len());
        rig.wait_ready(weights.iter().filter(|w| **w > 0).count());
        rig
    }

    /// Waits until gwlb has logged appliances `which` healthy since `since` (they start
    /// `initial` and take no new flows before), then lets the snapshot reach the worker.
    pub fn wait_healthy(&self, since: Instant, which: impl IntoIterator<Item = usize>) {
        for i in which {
            let ip = self.apps[i].ip.to_string();
            self.gwlb()
                .wait_log(since, &["appliance healthy", &ip], Duration::from_secs(20))
                .unwrap_or_else(|| {
                    panic!(
                        "{ip} never passed its health checks\n{}",
                        self.gwlb().log_text()
                    )
                });
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    pub fn gwlb(&self) -> &Gwlb {
        self.gwlb.as_ref().expect("gwlb running")
    }

    /// Waits until every appliance is resolved (ARP through the exception path) by
    /// sending probe flows until each weighted appliance has answered one.
    pub fn wait_ready(&self, weighted: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut port = 60_000u16;
        loop {
            for _ in 0..16 {
                self.user.send(&client_frame(port));
                port += 1;
            }
            self.user.drain(QUIET);
            let answering = self.apps.iter().filter(|a| a.count() > 0).count();
            if answering >= weighted {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "appliances not resolved after 20 s ({answering}/{weighted} answering)\n{}",
                self.gwlb().log_text()
            );
        }
    }

    /// Sends one packet per source port and returns, per source port, the appliance index
    /// that saw it (absent: no appliance saw it) and which ports came back forwarded.
    pub fn send_flows(&self, ports: &[u16]) -> (BTreeMap<u16, usize>, Vec<u16>) {
        let before: Vec<usize> = self.apps.iter().map(Appliance::count).collect();
        for &p in ports {
            self.user.send(&client_frame(p));
        }
        let frames = self.user.drain(QUIET);
        let mut at = BTreeMap::new();
        for (i, a) in self.apps.iter().enumerate() {
            for p in a.ports_since(before[i]) {
                if ports.contains(&p) {
                    assert!(
                        at.insert(p, i).is_none_or(|j| j == i),
                        "flow {p} seen by two appliances"
                    );
                }
            }
        }
        (at, forwarded_ports(&frames))
    }

    pub fn kill_hc(&self, i: usize) -> Duration {
        let t0 = Instant::now();
        self.apps[i].close_hc();
        let ip = self.apps[i].ip.to_string();
        let (t, _) = self
            .gwlb()
            .wait_log(t0, &["appliance unhealthy", &ip], Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{ip} never marked unhealthy\n{}", self.gwlb().log_text()));
        let took = t - t0;
        eprintln!("{ip}: unhealthy after {took:?}");
        assert!(
            took <= DETECTION_BOUND,
            "detection took {took:?} > {DETECTION_BOUND:?}"
        );
        // Let the new snapshot reach the worker.
        std::thread::sleep(Duration::from_millis(100));
        took
    }

    pub fn revive_hc(&self, i: usize) {
        let t0 = Instant::now();
        self.apps[i].open_hc();
        let ip = self.apps[i].ip.to_string();
        self.gwlb()
            .wait_log(t0, &["appliance healthy", &ip], Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{ip} never healthy again\n{}", self.gwlb().log_text()));
        std::thread::sleep(Duration::from_millis(100));
    }

    pub fn reload(&self, config: &str) -> Instant {
        std::fs::write(&self.gwlb().config, config).unwrap();
        let t0 = Instant::now();
        self.gwlb().signal(libc::SIGHUP);
        t0
    }

    pub fn stop(mut self) -> BTreeMap<String, u64> {
        self.gwlb.take().expect("running").stop()
    }
}

/// The ports of a range.
pub fn ports(range: std::ops::Range<u16>) -> Vec<u16> {
    range.collect()
}

/// Flows per appliance.
pub fn spread(at: &BTreeMap<u16, usize>, n: usize) -> Vec<usize> {
    let mut v = vec![0; n];
    for &i in at.values() {
        v[i] += 1;
    }
    v
}
