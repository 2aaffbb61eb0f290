//! Scale-out with a real router: gwlb announces its service prefix by BGP (BIRD 2, run by
//! gwlb) to an FRR router (zebra, bgpd, bfdd) through its own exception path, withdraws it on
//! `gwlb drain`, announces again when the drain stops, and the router drops the node within a
//! second of `kill -9` (measured from the router's own routing table).
//!
//! ```text
//!  ns gwtb-r (FRR, AS 65000)        ns gwtb-g (gwlb + BIRD, AS 65001)       ns gwtb-a
//!  gwtbr0 10.82.0.254 ── veth ── gwtbu0 [DPDK user port 10.82.0.1]   gwtba0 ── veth ── gwtba1
//!                                 + TAP gwtbtap0 10.82.0.1 (BGP, BFD)  [appliance port]
//! ```
//!
//! Needs root, DPDK, FRR and BIRD 2 (`scripts/install-deps.sh`).
#![cfg(feature = "dpdk")]

mod needs_root;
mod netns;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gwlb::cli::client::ApiClient;
use gwlb::config::Listen;
use gwlb::control::DrainAction;
use netns::{sh, sh_quiet, sysctl, Gwlb};

const R: &str = "gwtb-r";
const G: &str = "gwtb-g";
const A: &str = "gwtb-a";
const PREFIX: &str = "10.250.100.0/24";

/// The namespaces and links; removed (with the router's daemons) on drop.
struct Lab {
    dir: PathBuf,
}

impl Lab {
    fn create() -> Lab {
        let dir = std::env::temp_dir().join(format!("gwlb-bgp-test-{}", std::process::id()));
        let lab = Lab { dir };
        lab.destroy();
        std::fs::create_dir_all(&lab.dir).unwrap();
        for ns in [R, G, A] {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            sysctl(
                ns,
                &[
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ],
            );
        }
        sysctl(R, &["net.ipv4.ip_forward=1"]);
        for (a, ns_a, b, ns_b) in [("gwtbr0", R, "gwtbu0", G), ("gwtba0", G, "gwtba1", A)] {
            sh(&[
                "ip", "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns",
                ns_b,
            ]);
            sh(&["ip", "-n", ns_a, "link", "set", a, "up"]);
            sh(&["ip", "-n", ns_b, "link", "set", b, "up"]);
            for (ns, dev) in [(ns_a, a), (ns_b, b)] {
                sh_quiet(&[
                    "ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "rx", "off",
                    "tso", "off", "gso", "off", "gro", "off",
                ]);
            }
        }
        // gwlb's DPDK ports own the node's ends: the kernel must not answer on them.
        for dev in ["gwtbu0", "gwtba0"] {
            sh(&["ip", "-n", G, "link", "set", dev, "arp", "off"]);
        }
        sh(&[
            "ip",
            "-n",
            R,
            "addr",
            "add",
            "10.82.0.254/24",
            "dev",
            "gwtbr0",
        ]);
        sh(&[
            "ip",
            "-n",
            A,
            "addr",
            "add",
            "10.83.0.11/24",
            "dev",
            "gwtba1",
        ]);
        lab
    }

    fn frr_dir(&self) -> PathBuf {
        self.dir.join("frr")
    }

    /// Starts zebra, bgpd and bfdd in the router's namespace and loads their configuration.
    fn start_router(&self) {
        let d = self.frr_dir();
        std::fs::create_dir_all(&d).unwrap();
        sh(&["chown", "frr:frr", d.to_str().unwrap()]);
        std::fs::write(
            d.join("frr.conf"),
            "frr defaults traditional\n\
             no zebra nexthop kernel enable\n\
             bfd\n profile fast\n  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n exit\nexit\n\
             router bgp 65000\n bgp router-id 10.82.0.254\n no bgp default ipv4-unicast\n no bgp ebgp-requires-policy\n\
             bgp log-neighbor-changes\n bgp bestpath as-path multipath-relax\n\
             neighbor 10.82.0.1 remote-as 65001\n neighbor 10.82.0.1 timers connect 1\n neighbor 10.82.0.1 bfd profile fast\n\
             address-family ipv4 unicast\n  neighbor 10.82.0.1 activate\n  maximum-paths 8\n exit-address-family\nexit\n",
        )
        .unwrap();
        let ds = d.to_str().unwrap().to_owned();
        let common = |pid: &str, log: &str| -> Vec<String> {
            vec![
                "-d".into(),
                "-A".into(),
                "127.0.0.1".into(),
                "-z".into(),
                format!("{ds}/zserv.api"),
                "--vty_socket".into(),
                ds.clone(),
                "-f".into(),
                "/dev/null".into(),
                "-i".into(),
                format!("{ds}/{pid}"),
                "--log".into(),
                format!("file:{ds}/{log}"),
            ]
        };
        for (daemon, extra) in [
            ("zebra", vec!["-s".to_owned(), "90000000".to_owned()]),
            ("bgpd", vec![]),
            (
                "bfdd",
                vec!["--bfdctl".to_owned(), format!("{ds}/bfdd.sock")],
            ),
        ] {
            let mut args: Vec<String> = vec![
                "netns".into(),
                "exec".into(),
                R.into(),
                format!("/usr/lib/frr/{daemon}"),
            ];
            args.extend(common(&format!("{daemon}.pid"), &format!("{daemon}.log")));
            args.extend(extra);
            let st = Command::new("ip").args(&args).status().expect("start FRR");
            assert!(st.success(), "{daemon} did not start");
            let vty = d.join(format!("{daemon}.vty"));
            let t0 = Instant::now();
            while !vty.exists() {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "{daemon}: no vty socket"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let st = Command::new("timeout")
            .args([
                "10",
                "vtysh",
                "--vty_socket",
                &ds,
                "--config_dir",
                &ds,
                "-b",
            ])
            .output()
            .expect("vtysh");
        assert!(
            st.status.success(),
            "vtysh -b: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    }

    fn router_log(&self) -> String {
        let mut s = String::new();
        for f in ["bgpd.log", "bfdd.log"] {
            s.push_str(&std::fs::read_to_string(self.frr_dir().join(f)).unwrap_or_default());
        }
        s
    }

    fn destroy(&self) {
        for pid in ["zebra.pid", "bgpd.pid", "bfdd.pid"] {
            if let Ok(p) = std::fs::read_to_string(self.frr_dir().join(pid)) {
                sh_quiet(&["kill", "-9", p.trim()]);
            }
        }
        for ns in [R, G, A] {
            sh_quiet(&["ip", "netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// Whether the router's kernel table has a route to the service prefix (its own view).
fn router_has_route() -> bool {
    let out = Command::new("ip")
        .args(["-n", R, "route", "show", PREFIX])
        .output()
        .expect("ip route");
    String::from_utf8_lossy(&out.stdout).contains("via 10.82.0.1")
}

/// Polls the router's table every 5 ms until the route's presence is `want`; the time it
/// took, or `None` after `within`.
fn until_route(want: bool, within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if router_has_route() == want {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Polls `f` every 20 ms until it holds; whether it did within `within`.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn config(dir: &Path) -> String {
    format!(
        r#"
[dataplane]
worker_cpus = [1]
main_cpu = 0
hugepages = "off"
memory_mb = 256
flow_table_capacity = 4096
eal_args = ["--file-prefix=gwtb"]

[[ports]]
name = "user"
device = "net_af_packet0,iface=gwtbu0"
role = "user"
address = "10.82.0.1/24"
mac = "02:82:00:00:00:01"
kernel_interface = "gwtbtap0"

[[ports]]
name = "appliances"
device = "net_af_packet1,iface=gwtba0"
role = "appliance"
address = "10.83.0.1/24"
mac = "02:83:00:00:00:01"

[[routes]]
prefix = "0.0.0.0/0"
via = "10.82.0.254"
port = "user"

[[target_groups]]
name = "fw"
deregistration_delay_s = 5
[target_groups.health_check]
enabled = false
[[target_groups.targets]]
address = "10.83.0.11"
mac = "02:83:00:00:00:11"

[control]
api_listen = "unix:{api}"
metrics_listen = "off"

[bgp]
local_as = 65001
router_id = "10.82.0.1"
prefixes = ["{PREFIX}"]
state_dir = "{state}"
bfd_interval_ms = 100
bfd_multiplier = 3
[[bgp.neighbors]]
address = "10.82.0.254"
remote_as = 65000
"#,
        api = dir.join("api.sock").display(),
        state = dir.join("bird").display(),
    )
}

fn bird_pids() -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-f", "gwlb-bgp-test.*bird.conf"])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "needs root (DPDK, namespaces): scripts/test.sh runs it as root"]
fn announce_drain_and_node_death_seen_by_a_real_router() {
    needs_root::require();
    for tool in ["/usr/lib/frr/bgpd", "/usr/sbin/bird", "/usr/sbin/birdc"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} missing: run scripts/install-deps.sh"
        );
    }
    let lab = Lab::create();
    lab.start_router();
    let gw = Gwlb::start(G, &config(&lab.dir));
    let api = ApiClient::new(Listen::Unix(lab.dir.join("api.sock")), None);
    let stats = || api.stats().ok().and_then(|s| s.routing);

    // 1. The router learns the prefix through gwlb's exception path.
    let up = until_route(true, Duration::from_secs(30));
    assert!(
        up.is_some(),
        "the router never got {PREFIX}\ngwlb: {}\nrouter: {}\nstats: {:?}",
        gw.log_text(),
        lab.router_log(),
        stats()
    );
    // The speaker reads the sessions once a second.
    let shown = eventually(Duration::from_secs(5), || {
        stats().is_some_and(|r| r.announced && r.sessions[0].established)
    });
    assert!(shown, "stats: {:?}", stats());
    println!(
        "announced: the router had the route {:?} after start",
        up.unwrap()
    );

    // 2. Drain: withdrawn (the router drops the route), forwarding goes on; resume.
    let d = api.drain(DrainAction::Start).expect("drain");
    assert!(d.draining);
    let gone = until_route(false, Duration::from_secs(5)).expect("drain did not withdraw");
    let shown = eventually(Duration::from_secs(5), || {
        stats().is_some_and(|r| {
            !r.announced
                && r.withdrawn_because.as_deref() == Some("draining")
                && r.sessions[0].established
        })
    });
    assert!(shown, "withdrawn for draining, session kept: {:?}", stats());
    let d = api.drain(DrainAction::Status).unwrap();
    assert!(d.drained, "no flows: drained at once: {d:?}");
    api.drain(DrainAction::Stop).expect("resume");
    let back = until_route(true, Duration::from_secs(5)).expect("resume did not announce");
    println!("drain: withdrawn in {gone:?}, announced again in {back:?}");

    // 3. kill -9: BIRD dies with gwlb, the router drops the node within a second.
    // Wait for BFD to be up for a while (it starts after the session: routing-lab pitfall 3).
    let t0 = Instant::now();
    while !lab.router_log().contains("state-change") && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(!bird_pids().is_empty(), "BIRD is not running");
    gw.signal(libc::SIGKILL);
    let dropped = until_route(false, Duration::from_secs(10));
    let dropped = dropped.unwrap_or_else(|| {
        panic!(
            "the router kept the dead node's route for 10 s\nrouter: {}",
            lab.router_log()
        )
    });
    println!("kill -9: the router dropped the node after {dropped:?}");
    assert!(
        dropped < Duration::from_secs(1),
        "the router took {dropped:?} to drop a killed node"
    );
    let t0 = Instant::now();
    while !bird_pids().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "BIRD outlived gwlb: {:?}",
            bird_pids()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(gw);
}
