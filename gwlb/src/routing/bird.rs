//! BIRD 2: the configuration gwlb writes for it and the `birdc` output gwlb reads.
//!
//! One static protocol per address family holds the service prefixes as blackhole routes
//! (they live only inside BIRD; no kernel protocol) while the node announces them, and is
//! empty while it does not; one BGP session per router exports that family's static routes
//! and imports nothing. Changing the announcement is rewriting the file and `birdc configure`
//! (0.07 s until the router has withdrawn, measured in the routing lab). BFD is BIRD's.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::SessionReport;
use crate::config::Bgp;

/// The name of the BGP protocol of router `i` (`birdc` reports it under this name).
pub fn session_name(i: usize) -> String {
    format!("gwlb_r{i}")
}

/// BIRD's configuration for `bgp`, with the prefixes announced or not.
pub fn config(bgp: &Bgp, announce: bool) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# Written by gwlb; rewritten on every change. Do not edit."
    );
    let _ = writeln!(c, "router id {};", bgp.router_id);
    let _ = writeln!(c, "protocol device {{ scan time 10; }}");
    for (name, v4) in [("gwlb_v4", true), ("gwlb_v6", false)] {
        let _ = writeln!(c, "protocol static {name} {{");
        let _ = writeln!(c, "    {};", if v4 { "ipv4" } else { "ipv6" });
        if announce {
            for p in bgp.announced().iter().filter(|p| p.is_ipv4() == v4) {
                let _ = writeln!(c, "    route {p} blackhole;");
            }
        }
        let _ = writeln!(c, "}}");
    }
    if bgp.bfd {
        let ms = bgp.bfd_interval.as_millis();
        let _ = writeln!(
            c,
            "protocol bfd gwlb_bfd {{ interface \"*\" {{ min rx interval {ms} ms; min tx interval {ms} ms; multiplier {}; }}; }}",
            bgp.bfd_multiplier
        );
    }
    let hold = bgp.hold_time.as_secs();
    let _ = writeln!(c, "template bgp gwlb_uplink {{");
    let _ = writeln!(c, "    local as {};", bgp.local_as);
    let _ = writeln!(
        c,
        "    hold time {hold}; keepalive time {};",
        (hold / 3).max(1)
    );
    // Quick retries: a session that failed comes back in seconds, not minutes.
    let _ = writeln!(
        c,
        "    connect delay time 1; connect retry time 2; error wait time 1, 5;"
    );
    // A dead node's routes must go at once, not linger for a restart time.
    let _ = writeln!(c, "    graceful restart off;");
    if bgp.bfd {
        let _ = writeln!(c, "    bfd on;");
    }
    let _ = writeln!(c, "}}");
    for (i, n) in bgp.neighbors.iter().enumerate() {
        let (family, table) = match n.address {
            IpAddr::V4(_) => ("ipv4", "gwlb_v4"),
            IpAddr::V6(_) => ("ipv6", "gwlb_v6"),
        };
        let _ = writeln!(
            c,
            "protocol bgp {} from gwlb_uplink {{ neighbor {} as {}; {family} {{ import none; export where proto = \"{table}\"; }}; }}",
            session_name(i),
            n.address,
            n.remote_as
        );
    }
    c
}

/// The sessions in `birdc show protocols` output, in `bgp.neighbors` order (a session BIRD
/// does not list is reported as `unknown`).
pub fn sessions(bgp: &Bgp, show_protocols: &str) -> Vec<SessionReport> {
    bgp.neighbors
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let name = session_name(i);
            // `Name Proto Table State Since Info...`: the Since column is a time or a date
            // and a time, so the info is what follows the state and the since fields.
            let line = show_protocols
                .lines()
                .find(|l| l.split_whitespace().next() == Some(name.as_str()));
            let state = line.map_or_else(
                || "unknown".to_owned(),
                |l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    let state = cols.get(3).copied().unwrap_or("?");
                    let info = cols
                        .iter()
                        .skip(4)
                        .find(|c| c.chars().next().is_some_and(char::is_alphabetic))
                        .copied()
                        .unwrap_or("");
                    format!("{state} {info}").trim().to_owned()
                },
            );
            SessionReport {
                neighbor: n.address.to_string(),
                established: state.ends_with("Established"),
                state,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bgp() -> Bgp {
        super::super::test_bgp("")
    }

    #[test]
    fn config_announces_or_not() {
        let b = bgp();
        let on = config(&b, true);
        assert!(on.contains("route 10.250.100.0/24 blackhole;"), "{on}");
        assert!(on.contains("route fd00:250:100::/64 blackhole;"), "{on}");
        assert!(on.contains("protocol bgp gwlb_r0 from gwlb_uplink { neighbor 10.0.1.254 as 65000; ipv4 { import none; export where proto = \"gwlb_v4\"; }; }"), "{on}");
        assert!(on.contains("neighbor fd00:1::fe as 65000; ipv6"), "{on}");
        assert!(
            on.contains("min rx interval 100 ms; min tx interval 100 ms; multiplier 3;"),
            "{on}"
        );
        assert!(on.contains("hold time 9; keepalive time 3;"), "{on}");
        let off = config(&b, false);
        assert!(!off.contains("route "), "{off}");
        assert!(
            off.contains("protocol bgp gwlb_r1"),
            "sessions stay up while withdrawn"
        );
        // The cluster addresses are announced with the prefixes, as host routes.
        let c =
            super::super::test_bgp("cluster_addresses = [\"10.250.200.1\", \"fd00:250:200::1\"]");
        let on = config(&c, true);
        assert!(on.contains("route 10.250.200.1/32 blackhole;"), "{on}");
        assert!(on.contains("route fd00:250:200::1/128 blackhole;"), "{on}");
        assert!(!config(&c, false).contains("route "));
    }

    #[test]
    fn sessions_from_show_protocols() {
        let out = "BIRD 2.0.12 ready.\n\
Name       Proto      Table      State  Since         Info\n\
device1    Device     ---        up     10:11:12.345  \n\
gwlb_v4    Static     master4    up     10:11:12.345  \n\
gwlb_r0    BGP        ---        up     10:11:13.010  Established   \n\
gwlb_r1    BGP        ---        start  2026-12-02 10:11:12  Active        Socket: Connection refused\n";
        let s = sessions(&bgp(), out);
        assert_eq!(s[0].state, "up Established");
        assert!(s[0].established);
        assert_eq!(s[1].state, "start Active");
        assert!(!s[1].established);
        assert_eq!(sessions(&bgp(), "")[0].state, "unknown");
    }

    /// BIRD itself accepts both configurations (`bird -p` parses and exits).
    #[test]
    #[ignore = "needs BIRD 2 (scripts/install-deps.sh installs it; scripts/test.sh runs this)"]
    fn bird_parses_the_configuration() {
        let dir = std::env::temp_dir().join(format!("gwlb-bird-parse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cluster =
            super::super::test_bgp("cluster_addresses = [\"10.250.200.1\", \"fd00:250:200::1\"]");
        for (announce, b) in [(true, bgp()), (false, bgp()), (true, cluster)] {
            let f = dir.join(format!(
                "bird-{announce}-{}.conf",
                b.cluster_addresses.len()
            ));
            std::fs::write(&f, config(&b, announce)).unwrap();
            let out = std::process::Command::new("/usr/sbin/bird")
                .arg("-p")
                .arg("-c")
                .arg(&f)
                .output()
                .expect("run /usr/sbin/bird");
            assert!(
                out.status.success(),
                "bird rejects {}: {}",
                f.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
