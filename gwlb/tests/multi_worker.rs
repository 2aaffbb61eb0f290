//! Two workers, two RX queues, and the two directions of every flow arriving on different
//! queues (what RSS does to a flow's directions and to appliance returns): each flow must
//! still have exactly one flow-table entry, on its owning worker, and both directions must
//! reach the same appliance. Runs the real `gwlb` binary on a two-queue net_pcap port.
#![cfg(feature = "dpdk")]

mod needs_root;

use std::collections::HashMap;
use std::fs;
use std::process::Command;

use gwlb_tests::configs::{CLIENT_MAC, PORT_MAC};
use gwlb_tests::frames::{frame, Ips, L4};
use gwlb_tests::pcap::{read_pcap, write_pcap};

fn config(dir: &std::path::Path) -> String {
    let p = |n: &str| dir.join(n).display().to_string();
    format!(
        r#"[dataplane]
worker_cpus = [0, 1]
main_cpu = 0
hugepages = "off"
memory_mb = 256
eal_args = ["--no-pci", "--file-prefix=gwlb-mw-{pid}"]
flow_table_capacity = 4096

[[ports]]
name = "pcap"
device = "net_pcap0,rx_pcap={a},rx_pcap={b},tx_pcap={oa},tx_pcap={ob}"
role = "both"
address = "10.0.0.1/24"
mac = "02:00:00:00:00:01"
promiscuous = false

[[target_groups]]
name = "fw"
[target_groups.health_check]
enabled = false
[[target_groups.targets]]
address = "10.0.0.11"
mac = "02:00:00:00:00:0b"
[[target_groups.targets]]
address = "10.0.0.12"
mac = "02:00:00:00:00:0c"
[[target_groups.targets]]
address = "10.0.0.13"
mac = "02:00:00:00:00:0d"

[control]
api_listen = "off"
metrics_listen = "off"
"#,
        pid = std::process::id(),
        a = p("a.pcap"),
        b = p("b.pcap"),
        oa = p("oa.pcap"),
        ob = p("ob.pcap"),
    )
}

/// Sums `key N` over every `worker i:` line of gwlb's final report.
fn sum(stdout: &str, key: &str) -> u64 {
    stdout
        .lines()
        .filter(|l| l.starts_with("worker "))
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            let i = t.iter().position(|x| *x == key)?;
            t.get(i + 1)?.parse::<u64>().ok()
        })
        .sum()
}

#[test]
#[ignore = "needs root (DPDK, namespaces): scripts/test.sh runs it as root"]
fn flow_directions_on_different_queues_meet_one_owner() {
    needs_root::require();
    let dir = std::env::temp_dir().join(format!("gwlb-multi-worker-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    const FLOWS: u16 = 64;
    let fwd: Vec<Vec<u8>> = (0..FLOWS)
        .map(|i| {
            let ips = Ips::V4([10, 1, 0, 2], [10, 2, (i >> 8) as u8, i as u8]);
            frame(
                CLIENT_MAC,
                PORT_MAC,
                ips,
                L4::Udp {
                    src_port: 20000 + i,
                    dst_port: 53,
                },
                b"q",
            )
        })
        .collect();
    let rev: Vec<Vec<u8>> = (0..FLOWS)
        .map(|i| {
            let ips = Ips::V4([10, 2, (i >> 8) as u8, i as u8], [10, 1, 0, 2]);
            frame(
                CLIENT_MAC,
                PORT_MAC,
                ips,
                L4::Udp {
                    src_port: 53,
                    dst_port: 20000 + i,
                },
                b"r",
            )
        })
        .collect();
    write_pcap(&dir.join("a.pcap"), &fwd).unwrap();
    write_pcap(&dir.join("b.pcap"), &rev).unwrap();
    fs::write(dir.join("gwlb.toml"), config(&dir)).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_gwlb"))
        .args(["run", "--config"])
        .arg(dir.join("gwlb.toml"))
        .args(["--exit-when-idle-ms", "500"])
        .env("GWLB_LOG", "warn")
        .output()
        .expect("run gwlb");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "gwlb failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("worker ")).count(),
        2,
        "{stdout}"
    );

    // One flow-table entry per flow: the directions met on the owning worker.
    assert_eq!(sum(&stdout, "new_flows"), u64::from(FLOWS), "{stdout}");
    assert_eq!(
        sum(&stdout, "encapsulated"),
        2 * u64::from(FLOWS),
        "{stdout}"
    );
    assert!(
        sum(&stdout, "handed_off") > 0,
        "some packets must cross workers:\n{stdout}"
    );

    // Both directions of each flow went to the same appliance.
    let mut frames = read_pcap(&dir.join("oa.pcap")).unwrap();
    frames.extend(read_pcap(&dir.join("ob.pcap")).unwrap());
    assert_eq!(frames.len(), 2 * usize::from(FLOWS));
    let mut by_flow: HashMap<[u8; 4], Vec<u8>> = HashMap::new();
    for f in &frames {
        // Outer destination IPv4 at 30..34; inner IPv4 header at 82; the far end's address is
        // the one in 10.2/16 (inner source or destination).
        let inner = &f[82..];
        let far: [u8; 4] = if inner[12] == 10 && inner[13] == 2 {
            inner[12..16].try_into().unwrap()
        } else {
            inner[16..20].try_into().unwrap()
        };
        by_flow.entry(far).or_default().push(f[33]);
    }
    assert_eq!(by_flow.len(), usize::from(FLOWS));
    let mut spread = std::collections::HashSet::new();
    for (flow, apps) in &by_flow {
        assert_eq!(apps.len(), 2);
        assert_eq!(
            apps[0], apps[1],
            "flow {flow:?}: directions went to different appliances"
        );
        spread.insert(apps[0]);
    }
    assert_eq!(spread.len(), 3, "flows spread over all appliances");
    let _ = fs::remove_dir_all(&dir);
}
