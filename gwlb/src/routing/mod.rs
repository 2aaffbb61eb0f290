//! Scale-out: announcing the service prefixes by BGP while this node can serve.
//!
//! A node behind an ECMP router is one next hop among several; the router sends it traffic
//! only while it announces the service prefixes. gwlb runs a real BGP speaker (BIRD 2, a
//! child process it configures and supervises: [`speaker`]) and decides what it announces
//! ([`should_announce`], a pure function): the prefixes are announced while every worker turns
//! its loop, the node is not draining or stopping, and every target group can serve (a
//! healthy appliance, or fail-open). An appliance that has not passed its health checks yet
//! (`initial`: at start, or just registered) is not healthy, so a node whose fail-closed group
//! has only initial appliances stays withdrawn until one passes. At start the node also waits
//! until every appliance has a verdict (healthy or unhealthy, bounded in time): a node that
//! joined with some of them still initial would give new flows only to the others while the
//! nodes already serving use them all, and a flow whose two directions cross the two nodes
//! would reach two appliances. The announcement lives and dies with the data path:
//! BIRD is killed with gwlb (`PR_SET_PDEATHSIG`), so a dead gateway's TCP session closes and
//! the router drops it at once; a hung worker withdraws within `bgp.stall_timeout_ms`; a hung
//! node stops answering BFD.
//!
//! See docs/architecture.md, "Scale-out", for the design across nodes.

pub mod bird;
pub mod speaker;

use serde::{Deserialize, Serialize};

/// Why the prefixes are not announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withdrawn {
    /// The workers have not reported yet (start).
    Starting,
    /// `gwlb drain`.
    Draining,
    /// The gateway is stopping.
    Stopping,
    /// Worker `0` has not turned its loop within `stall_timeout`.
    WorkerStalled(usize),
    /// Group (name) has no healthy appliance and fails closed.
    GroupCannotServe(String),
    /// Start: this many appliances have no verdict of their health checks yet (`initial`).
    HealthPending(usize),
}

impl std::fmt::Display for Withdrawn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Withdrawn::Starting => write!(f, "starting"),
            Withdrawn::Draining => write!(f, "draining"),
            Withdrawn::Stopping => write!(f, "stopping"),
            Withdrawn::WorkerStalled(w) => write!(f, "worker {w} stalled"),
            Withdrawn::GroupCannotServe(g) => {
                write!(
                    f,
                    "target group {g:?} has no healthy appliance (fail-closed)"
                )
            }
            Withdrawn::HealthPending(n) => {
                write!(f, "starting: {n} appliances not yet checked (initial)")
            }
        }
    }
}

/// What [`should_announce`] looks at.
#[derive(Debug, Clone, Default)]
pub struct ServeState {
    /// Every worker has reported at least once.
    pub workers_started: bool,
    /// Workers that have not turned their loop within the stall timeout.
    pub stalled_workers: Vec<usize>,
    /// `gwlb drain` is in effect.
    pub draining: bool,
    /// The gateway is stopping.
    pub stopping: bool,
    /// Per target group: name, healthy appliances (weight above 0), fails open.
    pub groups: Vec<(String, usize, bool)>,
    /// Start only: appliances whose health checks have given no verdict yet (`initial`); 0
    /// once every one has (or the start's wait for them is over).
    pub health_pending: usize,
}

/// Whether this node announces its service prefixes: `Ok` to announce, or why not. The first
/// reason in this order wins: stopping, draining, starting, a stalled worker, a group that
/// cannot serve, appliances still initial at start.
pub fn should_announce(s: &ServeState) -> Result<(), Withdrawn> {
    if s.stopping {
        return Err(Withdrawn::Stopping);
    }
    if s.draining {
        return Err(Withdrawn::Draining);
    }
    if !s.workers_started {
        return Err(Withdrawn::Starting);
    }
    if let Some(&w) = s.stalled_workers.first() {
        return Err(Withdrawn::WorkerStalled(w));
    }
    for (name, healthy, fail_open) in &s.groups {
        if *healthy == 0 && !fail_open {
            return Err(Withdrawn::GroupCannotServe(name.clone()));
        }
    }
    if s.health_pending > 0 {
        return Err(Withdrawn::HealthPending(s.health_pending));
    }
    Ok(())
}

/// One BGP session as the speaker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionReport {
    /// The router's address.
    pub neighbor: String,
    /// BIRD's protocol state and info (`up Established`, `start Active`, ...).
    pub state: String,
    /// The session is established.
    pub established: bool,
}

/// The announcement and the speaker, for `gwlb stats`, the API and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingReport {
    /// The service prefixes.
    pub prefixes: Vec<String>,
    /// They are announced now.
    pub announced: bool,
    /// Why not, when not.
    pub withdrawn_because: Option<String>,
    /// The BGP daemon: `running (pid N)`, or what happened to it.
    pub daemon: String,
    /// Times the daemon had to be restarted.
    pub daemon_restarts: u64,
    /// Per router.
    pub sessions: Vec<SessionReport>,
}

/// A `[bgp]` for the tests of this module tree: one-arm port 10.0.1.1/24 and fd00:1::1/64 with
/// a kernel interface, routers 10.0.1.254 and fd00:1::fe, two prefixes; `extra` is added to
/// the `[bgp]` table.
#[cfg(test)]
pub(crate) fn test_bgp(extra: &str) -> crate::config::Bgp {
    let text = format!(
        r#"
[[ports]]
name = "p"
device = "net_null0"
role = "both"
address = ["10.0.1.1/24", "fd00:1::1/64"]
kernel_interface = "gw0"
[[target_groups]]
name = "fw"
[[target_groups.targets]]
address = "10.0.1.11"
mac = "02:00:00:00:00:11"
[bgp]
local_as = 65001
router_id = "10.0.1.1"
prefixes = ["10.250.100.0/24", "fd00:250:100::/64"]
{extra}
[[bgp.neighbors]]
address = "10.0.1.254"
remote_as = 65000
[[bgp.neighbors]]
address = "fd00:1::fe"
remote_as = 65000
"#
    );
    crate::config::Config::from_toml_str(&text)
        .unwrap()
        .bgp
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcement_table() {
        let serving = ServeState {
            workers_started: true,
            groups: vec![("fw".into(), 2, false), ("ids".into(), 0, true)],
            ..Default::default()
        };
        let with = |f: fn(&mut ServeState)| {
            let mut s = serving.clone();
            f(&mut s);
            should_announce(&s)
        };
        #[rustfmt::skip]
        let table: Vec<(&str, Result<(), Withdrawn>)> = vec![
            ("serving: healthy fail-closed group, empty fail-open group", with(|_| {})),
            ("stopping beats everything", with(|s| { s.stopping = true; s.draining = true; })),
            ("draining", with(|s| s.draining = true)),
            ("workers not started", with(|s| s.workers_started = false)),
            ("a stalled worker", with(|s| s.stalled_workers = vec![1])),
            ("a fail-closed group without healthy appliances", with(|s| s.groups[0].1 = 0)),
            ("a fail-open group without healthy appliances still serves", with(|s| s.groups[1].1 = 0)),
            ("start: appliances still initial", with(|s| s.health_pending = 2)),
            ("start: a fail-closed group of initial appliances", with(|s| { s.groups[0].1 = 0; s.health_pending = 2; })),
        ];
        let want = [
            Ok(()),
            Err(Withdrawn::Stopping),
            Err(Withdrawn::Draining),
            Err(Withdrawn::Starting),
            Err(Withdrawn::WorkerStalled(1)),
            Err(Withdrawn::GroupCannotServe("fw".into())),
            Ok(()),
            Err(Withdrawn::HealthPending(2)),
            Err(Withdrawn::GroupCannotServe("fw".into())),
        ];
        for ((what, got), want) in table.into_iter().zip(want) {
            assert_eq!(got, want, "{what}");
        }
    }
}
