//! The shipped alerting rules (gwlb/monitoring/gwlb-alerts.yml) on Debian's real Prometheus
//! server, scraping a real gwlb (DPDK on net_af_packet, real health-check sockets, in
//! network namespaces; see `netns/mod.rs`): with both appliances healthy nothing fires; when
//! one appliance's health-check listener closes, `GwlbApplianceUnhealthy` fires for it (and
//! only it); when the other closes too, `GwlbTargetGroupWithoutHealthyTargets` fires.

// The `gwlb` binary this test runs needs the DPDK data path.
#![cfg(feature = "dpdk")]

mod needs_root;
mod netns;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netns::Rig;

/// gwlb's metrics listener and Prometheus's web port, both on the gateway namespace's
/// loopback.
const METRICS: &str = "127.0.0.1:19091";
const PROMETHEUS: &str = "127.0.0.1:19090";

/// Firing alerts: (alert name, the `address` label, or else `target_group`), sorted.
type Firing = Vec<(String, String)>;

/// A Prometheus server in namespace `ns`, killed on drop.
struct Prometheus {
    child: Child,
    ns: String,
    dir: std::path::PathBuf,
}

impl Prometheus {
    fn start(ns: &str) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("gwlb-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring/gwlb-alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: gwlb\n    static_configs:\n      - targets: ['{METRICS}']\n",
            rules.display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "prometheus"])
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("prometheus.log"))
                    .map(Stdio::from)
                    .unwrap(),
            )
            .spawn()
            .expect("prometheus (Debian's `prometheus`; scripts/install-deps.sh installs it)");
        Prometheus {
            child,
            ns: ns.into(),
            dir,
        }
    }

    /// GET `path` of Prometheus's HTTP API, as JSON (`None` while it does not answer).
    fn get(&self, path: &str) -> Option<serde_json::Value> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "curl", "-sf", "--max-time", "2"])
            .arg(format!("http://{PROMETHEUS}{path}"))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// The firing alerts.
    fn firing(&self) -> Firing {
        let Some(v) = self.get("/api/v1/alerts") else {
            return Vec::new();
        };
        let mut out: Firing = v["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["state"] == "firing")
            .map(|a| {
                let l = &a["labels"];
                let what = l["address"].as_str().or(l["target_group"].as_str());
                (
                    l["alertname"].as_str().unwrap_or("").to_owned(),
                    what.unwrap_or("").to_owned(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Waits up to `within` for `pred` on the firing alerts; returns the last ones seen.
    fn wait(
        &self,
        within: Duration,
        pred: impl Fn(&[(String, String)]) -> bool,
    ) -> Result<Firing, Firing> {
        let deadline = Instant::now() + within;
        loop {
            let firing = self.firing();
            if pred(&firing) {
                return Ok(firing);
            }
            if Instant::now() >= deadline {
                return Err(firing);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
#[ignore = "needs root (DPDK, namespaces) and Prometheus: scripts/test.sh runs it as root"]
fn prometheus_fires_the_shipped_alerts_when_appliances_die() {
    needs_root::require();
    let control = format!("\n[control]\nmetrics_listen = \"{METRICS}\"\n");
    let rig = Rig::start_with("gwtprom", "", &[100, 100], 2, &control);
    let prom = Prometheus::start(&rig.topo.gw());

    // Prometheus scrapes gwlb and has evaluated the rules over its samples.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = prom
            .get("/api/v1/query?query=gwlb_HealthyHostCount")
            .and_then(|v| {
                v["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(str::to_owned)
            });
        if up.as_deref() == Some("2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped 2 healthy appliances (last: {up:?})\n{}",
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(3));
    let firing = prom.firing();
    assert!(
        firing.is_empty(),
        "alerts with every appliance healthy: {firing:?}"
    );

    let (dead, alive) = (rig.apps[1].ip.to_string(), rig.apps[0].ip.to_string());
    rig.apps[1].close_hc();
    let firing = prom
        .wait(Duration::from_secs(30), |f| {
            f.iter()
                .any(|(n, a)| n == "GwlbApplianceUnhealthy" && *a == dead)
        })
        .unwrap_or_else(|f| panic!("GwlbApplianceUnhealthy never fired for {dead}: {f:?}"));
    assert_eq!(
        firing,
        [("GwlbApplianceUnhealthy".to_owned(), dead.clone())],
        "only the dead appliance alerts while {alive} is healthy"
    );

    rig.apps[0].close_hc();
    prom.wait(Duration::from_secs(30), |f| {
        f.iter()
            .any(|(n, g)| n == "GwlbTargetGroupWithoutHealthyTargets" && g == "tg")
            && f.iter()
                .any(|(n, a)| n == "GwlbApplianceUnhealthy" && *a == alive)
    })
    .unwrap_or_else(|f| panic!("no alert for a group without healthy appliances: {f:?}"));
}
