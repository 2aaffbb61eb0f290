//! Steering decisions that are policy, not mechanics: pure functions of the flow's state and
//! the group's settings, kept apart from the packet path so that each policy is one readable
//! table (see docs/architecture.md, "Flow semantics on a snapshot change").
//!
//! **Adding a policy** (a new per-group setting, steering rules, chains): add its decision
//! here as a function of plain values, with a table test, and call it from
//! [`crate::pipeline`]; the pipeline only carries out what these functions decide.

use crate::snapshot::ApplianceState;

/// What happens to a packet of an existing flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExistingFlow {
    /// It stays with its appliance.
    Keep,
    /// It moves to the appliance the group's Maglev table picks now (counted as
    /// `rebalanced_flows`); see [`when_no_appliance_left`] if there is none.
    Move,
    /// The flow ends: the packet is dropped as `appliance_gone` (with a TCP RST under
    /// `tcp_rst_on_drop`).
    End,
}

/// The existing-flow policy: a packet of a flow whose appliance is in `state` (as of the
/// snapshot, with `now` in the workers' coarse seconds), in a group with `rebalance` set
/// (`on_unhealthy = "rebalance"`) or not (`"no_rebalance"`).
///
/// `no_rebalance` never re-steers a flow mid-connection: it stays while its appliance is
/// unhealthy or draining, and ends with it once drained. `rebalance` moves flows off an
/// unhealthy or drained appliance. A draining appliance keeps its flows either way until its
/// deregistration delay is over. An initial appliance (registered, checks not passed yet)
/// keeps its flows either way: it can only have flows when it came back from draining, they
/// were being served, and it has failed nothing (it moves them, under `rebalance`, once it
/// turns unhealthy).
#[inline]
pub fn existing_flow(state: ApplianceState, rebalance: bool, now: u32) -> ExistingFlow {
    match state {
        ApplianceState::Healthy | ApplianceState::Initial => ExistingFlow::Keep,
        ApplianceState::Unhealthy if rebalance => ExistingFlow::Move,
        ApplianceState::Unhealthy => ExistingFlow::Keep,
        ApplianceState::Draining { until } if now < until => ExistingFlow::Keep,
        // The delay is over (the control loop will mark it gone): as gone.
        ApplianceState::Draining { .. } | ApplianceState::Gone if rebalance => ExistingFlow::Move,
        ApplianceState::Draining { .. } | ApplianceState::Gone => ExistingFlow::End,
    }
}

/// A flow that should [`ExistingFlow::Move`] finds no healthy appliance in its group: it
/// stays where it was while that slot still holds the flow's target (`same_target`), and ends
/// otherwise (the slot now serves another target, which must never see this flow).
#[inline]
pub fn when_no_appliance_left(same_target: bool) -> ExistingFlow {
    if same_target {
        ExistingFlow::Keep
    } else {
        ExistingFlow::End
    }
}

/// Whether a TCP packet with `tcp_flags` of a flow the table holds starts a new connection
/// on the flow's 5-tuple, which the gateway then treats as a new flow (a fresh appliance
/// pick and the next flow cookie, as AWS issues a new cookie): a SYN without ACK when the
/// flow has seen a FIN or RST (`closed`), or had been idle for at least `reuse_idle` ticks
/// (`u32::MAX`: idle time alone never does). Anything else continues the flow.
#[inline]
pub fn starts_new_connection(tcp_flags: u8, closed: bool, idle: u32, reuse_idle: u32) -> bool {
    use crate::wire::tcp::TcpFlags;
    tcp_flags & (TcpFlags::SYN | TcpFlags::ACK) == TcpFlags::SYN
        && (closed || (reuse_idle != u32::MAX && idle >= reuse_idle))
}

/// A target group's health, as [`who_serves`] weighs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupHealth {
    /// Healthy targets with weight > 0 (those in its own Maglev table).
    pub healthy: usize,
    /// Registered targets with weight > 0, in any health state (not draining).
    pub registered: usize,
    /// `min_healthy_targets`.
    pub min_targets: u16,
    /// `min_healthy_percent`.
    pub min_percent: u8,
    /// `failover_group` (an index of the same list).
    pub failover: Option<usize>,
    /// `on_below_minimum = "fail_open"`.
    pub fail_open: bool,
}

impl GroupHealth {
    /// Whether the group is at or above its minimums (and has a healthy target at all).
    pub fn meets_minimum(&self) -> bool {
        self.healthy > 0
            && self.healthy >= usize::from(self.min_targets)
            && self.healthy * 100 >= usize::from(self.min_percent) * self.registered
    }
}

/// Whose appliances take a group's new flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serving {
    /// Its own healthy ones (none at all: `on_all_unhealthy`).
    Own,
    /// Those of the group at this index (its failover group).
    Failover(usize),
    /// All its registered targets, healthy or not (`on_below_minimum = "fail_open"`).
    FailOpen,
}

/// The group health threshold policy (`on_below_minimum`). A group below its minimum fails
/// over to its failover group while that group meets its own minimum (GCP's failover
/// policy); a fail-open one sends its new flows to all its registered targets, healthy or
/// not (AWS's and GCP's fail-open), as long as it has any; otherwise (no failover group, or
/// one below its minimum too) its own remaining healthy targets serve, and with none left
/// `on_all_unhealthy` decides. A threshold never drops a flow that some appliance could
/// inspect, and failover is one level deep (a failover group's own failover group is not
/// followed).
pub fn who_serves(groups: &[GroupHealth]) -> Vec<Serving> {
    groups
        .iter()
        .map(|g| match g.failover {
            _ if g.meets_minimum() => Serving::Own,
            Some(b) if groups.get(b).is_some_and(|b| b.meets_minimum()) => Serving::Failover(b),
            None if g.fail_open && g.registered > 0 => Serving::FailOpen,
            _ => Serving::Own,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table in docs/architecture.md ("Flow semantics on a snapshot change"), read from
    /// the document itself: every row must be what [`existing_flow`] decides.
    #[test]
    fn existing_flow_policy_is_the_documented_table() {
        let doc = include_str!("../../docs/architecture.md");
        let start = doc
            .find("| appliance state | `no_rebalance` | `rebalance` |")
            .expect("the policy table in docs/architecture.md");
        let rows: Vec<Vec<&str>> = doc[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
            .collect();
        let now = 1000;
        let state = |name: &str| match name.split(|c: char| !c.is_alphabetic()).next().unwrap() {
            "initial" => ApplianceState::Initial,
            "healthy" => ApplianceState::Healthy,
            "unhealthy" => ApplianceState::Unhealthy,
            "draining" if name.contains("delay over") => ApplianceState::Draining { until: now },
            "draining" => ApplianceState::Draining { until: now + 1 },
            "drained" => ApplianceState::Gone,
            other => panic!("unknown state in the docs' table: {other}"),
        };
        let decision = |cell: &str| match cell.split([' ', ':']).next().unwrap() {
            "stays" => ExistingFlow::Keep,
            "moves" => ExistingFlow::Move,
            "ends" => ExistingFlow::End,
            other => panic!("unknown decision in the docs' table: {other}"),
        };
        assert_eq!(rows.len(), 6, "{rows:?}");
        for row in rows {
            let s = state(row[0]);
            assert_eq!(existing_flow(s, false, now), decision(row[1]), "{row:?}");
            assert_eq!(existing_flow(s, true, now), decision(row[2]), "{row:?}");
        }
    }

    #[test]
    fn a_move_with_no_appliance_left_keeps_only_its_own_target() {
        assert_eq!(when_no_appliance_left(true), ExistingFlow::Keep);
        assert_eq!(when_no_appliance_left(false), ExistingFlow::End);
    }

    #[test]
    fn test_who_serves() {
        let g = |healthy, registered, min_targets, min_percent, failover| GroupHealth {
            healthy,
            registered,
            min_targets,
            min_percent,
            failover,
            fail_open: false,
        };
        // (primary, backup) -> who serves the primary.
        let cases = [
            // At or above the minimums: itself.
            (g(2, 4, 2, 50, Some(1)), g(1, 1, 1, 0, None), Serving::Own),
            // Below the count: the backup.
            (
                g(1, 4, 2, 0, Some(1)),
                g(1, 1, 1, 0, None),
                Serving::Failover(1),
            ),
            // Below the share (1 of 4 = 25 % < 30 %): the backup.
            (
                g(1, 4, 1, 30, Some(1)),
                g(1, 1, 1, 0, None),
                Serving::Failover(1),
            ),
            // None healthy, the default minimum: the backup.
            (
                g(0, 3, 1, 0, Some(1)),
                g(2, 2, 1, 0, None),
                Serving::Failover(1),
            ),
            // The backup below its own minimum: the primary's remaining targets.
            (g(1, 4, 2, 0, Some(1)), g(1, 3, 2, 0, None), Serving::Own),
            (g(0, 4, 2, 0, Some(1)), g(0, 3, 1, 0, None), Serving::Own),
            // No failover group: itself, whatever its health.
            (g(0, 4, 2, 0, None), g(5, 5, 1, 0, None), Serving::Own),
        ];
        for (i, (primary, backup, want)) in cases.into_iter().enumerate() {
            let got = who_serves(&[primary, backup]);
            assert_eq!(got[0], want, "case {i}: {primary:?} / {backup:?}");
            assert_eq!(got[1], Serving::Own, "case {i}: the backup serves itself");
        }
        // One level: a chain a -> b -> c with b below its minimum does not reach c.
        let chain = [
            g(0, 1, 1, 0, Some(1)),
            g(0, 1, 1, 0, Some(2)),
            g(1, 1, 1, 0, None),
        ];
        assert_eq!(
            who_serves(&chain),
            [Serving::Own, Serving::Failover(2), Serving::Own]
        );
    }

    #[test]
    fn test_starts_new_connection() {
        const SYN: u8 = 0x02;
        const ACK: u8 = 0x10;
        const FIN: u8 = 0x01;
        const RST: u8 = 0x04;
        let off = u32::MAX;
        // (flags, closed, idle, reuse_idle) -> new connection?
        let cases = [
            (SYN, true, 0, off, true),
            (SYN, false, 0, off, false),
            (SYN, false, 1000, off, false),
            (SYN, false, 29, 30, false),
            (SYN, false, 30, 30, true),
            (SYN | ACK, true, 100, 30, false),
            (ACK, true, 100, 30, false),
            (FIN | ACK, true, 100, 30, false),
            (RST, true, 100, 30, false),
            (SYN | FIN, true, 0, off, true),
        ];
        for (flags, closed, idle, reuse, want) in cases {
            assert_eq!(
                starts_new_connection(flags, closed, idle, reuse),
                want,
                "flags {flags:#x} closed {closed} idle {idle} reuse {reuse}"
            );
        }
    }

    /// `on_below_minimum = "fail_open"`: below its minimum (count or share; none healthy
    /// included) a group sends to all its registered targets; at its minimum, to its healthy
    /// ones; with no registered target at all, there is nothing to open to
    /// (`on_all_unhealthy` decides).
    #[test]
    fn test_who_serves_fail_open() {
        let g = |healthy, registered, min_targets, min_percent| GroupHealth {
            healthy,
            registered,
            min_targets,
            min_percent,
            failover: None,
            fail_open: true,
        };
        let cases = [
            (g(2, 4, 2, 50), Serving::Own),
            (g(1, 4, 2, 0), Serving::FailOpen),
            (g(1, 4, 1, 30), Serving::FailOpen),
            (g(0, 3, 1, 0), Serving::FailOpen),
            (g(0, 0, 1, 0), Serving::Own),
        ];
        for (i, (group, want)) in cases.into_iter().enumerate() {
            assert_eq!(who_serves(&[group]), [want], "case {i}: {group:?}");
            // The same health without fail_open: its remaining targets.
            let plain = GroupHealth {
                fail_open: false,
                ..group
            };
            assert_eq!(who_serves(&[plain]), [Serving::Own], "case {i}");
        }
        // A failover group that failed open is below its minimum: nobody fails over to it.
        let primary = GroupHealth {
            failover: Some(1),
            fail_open: false,
            ..g(0, 2, 1, 0)
        };
        assert_eq!(
            who_serves(&[primary, g(1, 4, 2, 0)]),
            [Serving::Own, Serving::FailOpen]
        );
    }
}
