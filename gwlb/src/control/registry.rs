//! Stable appliance slots across registrations, deregistrations and reloads.
//!
//! Flow-table entries name their appliance by *slot* (a `u16` index into the snapshot's
//! appliances and the per-appliance counters). A slot therefore must keep meaning the same
//! appliance for as long as any flow may name it: the [`Registry`] hands out one slot per
//! `(target group, address)` and gives it to another target only once it is [`SlotState::Gone`]
//! and every slot is in use. A target that is deregistered keeps its slot while it drains; one
//! that comes back (by reload or API) gets its old slot back, with its flows.
//!
//! Reuse: a reused slot's [`Slot::generation`] is incremented. Flow entries record the
//! generation of their appliance, so an entry left over from the slot's previous target (a
//! flow that kept sending after its appliance was gone, under `no_rebalance`) is treated as
//! belonging to a gone appliance and never reaches the new target. The per-target counters of
//! a reused slot start from [`Slot::counter_base`]. The generation is a byte: an entry would
//! be mistaken only if it outlived 256 reuses of its slot while sending continuously.
//!
//! The registry is pure bookkeeping (no I/O, no clocks of its own): the control loop feeds it
//! the running configuration and the time, and builds snapshots from it.

use std::net::IpAddr;

use crate::config::{Config, HealthCheck, Target};
use crate::health::HealthState;

/// Where a slot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// In the running configuration.
    Registered,
    /// Deregistered: existing flows keep it until `until` (the data path's seconds clock).
    Draining {
        /// End of the deregistration delay.
        until: u32,
    },
    /// Deregistered and drained: no flow may use it any more.
    Gone,
}

/// One appliance slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Target group name.
    pub group: String,
    /// The target as last configured (kept while it drains, when the config no longer has
    /// it).
    pub target: Target,
    /// Registration state.
    pub state: SlotState,
    /// Health as last reported by the checker. A target starts in
    /// [`HealthState::at_registration`] of its group's check each time it is registered (at
    /// start, by API or reload, back from draining): initial while the check is enabled, so
    /// it takes no new flows until its checks pass.
    pub health: HealthState,
    /// Why it is in its state (last health transition or the deregistration).
    pub reason: Option<String>,
    /// Incremented each time the slot is given to another target.
    pub generation: u8,
    /// The slot's per-appliance counters (packets, bytes, flows) when it was last given to
    /// another target; what the workers count beyond it belongs to this target.
    pub counter_base: [u64; 3],
}

/// What [`Registry::reconcile`] changed, as `group/address` strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Targets new in the configuration (or back from draining).
    pub registered: Vec<String>,
    /// Targets gone from the configuration: now draining.
    pub deregistered: Vec<String>,
    /// Targets whose weight changed.
    pub reweighted: Vec<String>,
    /// Targets whose port or static MAC changed.
    pub modified: Vec<String>,
    /// Slots given to a new target after their previous one was gone.
    pub reused: Vec<u16>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.registered.is_empty()
            && self.deregistered.is_empty()
            && self.reweighted.is_empty()
            && self.modified.is_empty()
            && self.reused.is_empty()
    }
}

/// Why a slot could not be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no free appliance slot: {max} targets registered or still draining (the most a gateway serves)"
)]
pub struct SlotsExhausted {
    /// The slot limit.
    pub max: usize,
}

/// Slot bookkeeping. See the module documentation.
#[derive(Debug, Clone)]
pub struct Registry {
    slots: Vec<Slot>,
    max: usize,
}

fn label(group: &str, addr: IpAddr) -> String {
    format!("{group}/{addr}")
}

/// The reason shown for a target just registered, until its first probe.
fn registered_reason(check: &HealthCheck) -> String {
    match HealthState::at_registration(check) {
        HealthState::Initial => format!(
            "registered: no new flows until {} consecutive health checks pass",
            check.healthy_threshold
        ),
        _ => "registered".into(),
    }
}

impl Registry {
    /// Slots for the targets of `cfg`, in config order (group by group), at most `max`.
    pub fn new(cfg: &Config, max: usize) -> Result<Registry, SlotsExhausted> {
        let mut r = Registry {
            slots: Vec::new(),
            max,
        };
        r.reconcile(cfg, 0)?;
        Ok(r)
    }

    /// Every slot, by index.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Mutable slot by index.
    pub fn slot_mut(&mut self, slot: u16) -> Option<&mut Slot> {
        self.slots.get_mut(usize::from(slot))
    }

    /// The slot of `(group, addr)`, whatever its state.
    pub fn find(&self, group: &str, addr: IpAddr) -> Option<u16> {
        self.slots
            .iter()
            .position(|s| s.group == group && s.target.address == addr)
            .map(|i| i as u16)
    }

    /// Brings the slots in line with `cfg` at time `now`: targets new to it get a slot
    /// (their old one if they had one), targets no longer in it start draining for their
    /// group's deregistration delay (a group that no longer exists drains with delay 0),
    /// weights and ports are updated. Nothing changes when it fails.
    pub fn reconcile(&mut self, cfg: &Config, now: u32) -> Result<Changes, SlotsExhausted> {
        let mut next = self.slots.clone();
        let mut changes = Changes::default();
        let mut present = vec![false; next.len()];
        for g in &cfg.target_groups {
            for t in &g.targets {
                let found = next
                    .iter()
                    .position(|s| s.group == g.name && s.target.address == t.address);
                match found {
                    Some(i) => {
                        let s = &mut next[i];
                        if s.state != SlotState::Registered {
                            s.state = SlotState::Registered;
                            s.health = HealthState::at_registration(&g.health_check);
                            s.reason = Some(registered_reason(&g.health_check));
                            changes.registered.push(label(&g.name, t.address));
                        } else if s.target.weight != t.weight {
                            changes.reweighted.push(label(&g.name, t.address));
                        } else if s.target != *t {
                            changes.modified.push(label(&g.name, t.address));
                        }
                        s.target = *t;
                        present[i] = true;
                    }
                    None => {
                        let slot = Slot {
                            group: g.name.clone(),
                            target: *t,
                            state: SlotState::Registered,
                            health: HealthState::at_registration(&g.health_check),
                            reason: Some(registered_reason(&g.health_check)),
                            generation: 0,
                            counter_base: [0; 3],
                        };
                        if next.len() < self.max {
                            next.push(slot);
                            present.push(true);
                        } else {
                            // Every slot used: take a gone one (not one this pass gave out).
                            let free = next
                                .iter()
                                .zip(&present)
                                .position(|(s, here)| s.state == SlotState::Gone && !here)
                                .ok_or(SlotsExhausted { max: self.max })?;
                            let generation = next[free].generation.wrapping_add(1);
                            next[free] = Slot { generation, ..slot };
                            present[free] = true;
                            changes.reused.push(free as u16);
                        }
                        changes.registered.push(label(&g.name, t.address));
                    }
                }
            }
        }
        for (s, here) in next.iter_mut().zip(present) {
            if here || s.state != SlotState::Registered {
                continue;
            }
            let delay = cfg
                .target_groups
                .iter()
                .find(|g| g.name == s.group)
                .map_or(0, |g| g.deregistration_delay.as_secs());
            let until = now.saturating_add(u32::try_from(delay).unwrap_or(u32::MAX));
            s.state = SlotState::Draining { until };
            s.reason = Some(format!("deregistered: draining for {delay} s"));
            changes.deregistered.push(label(&s.group, s.target.address));
        }
        self.slots = next;
        Ok(changes)
    }

    /// Ends the draining of every slot whose delay is over at `now`; returns their labels.
    pub fn expire_drains(&mut self, now: u32) -> Vec<String> {
        let mut done = Vec::new();
        for s in &mut self.slots {
            if let SlotState::Draining { until } = s.state {
                if now >= until {
                    s.state = SlotState::Gone;
                    s.reason = Some("deregistered: draining finished".into());
                    done.push(label(&s.group, s.target.address));
                }
            }
        }
        done
    }

    /// Records a health transition of `slot` (to healthy or unhealthy: nothing goes back to
    /// initial). Returns whether the slot exists.
    pub fn set_health(&mut self, slot: u16, healthy: bool, reason: String) -> bool {
        match self.slots.get_mut(usize::from(slot)) {
            Some(s) => {
                s.health = if healthy {
                    HealthState::Healthy
                } else {
                    HealthState::Unhealthy
                };
                if s.state == SlotState::Registered {
                    s.reason = Some(reason);
                }
                true
            }
            None => false,
        }
    }

    /// Marks every slot healthy, as if every check had passed: for [`crate::snapshot::Snapshot::build`]
    /// (tests and benchmarks of the data path, which have no health checker).
    pub fn assume_healthy(&mut self) {
        for s in &mut self.slots {
            s.health = HealthState::Healthy;
        }
    }

    /// Slots of registered targets (health-checked ones), in slot order.
    pub fn registered(&self) -> impl Iterator<Item = (u16, &Slot)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == SlotState::Registered)
            .map(|(i, s)| (i as u16, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(targets: &[(&str, u16)], delay: u32) -> Config {
        let mut s = format!(
            r#"
[[ports]]
name = "p0"
device = "net_null0"
role = "both"
address = "10.0.0.1/16"

[[target_groups]]
name = "tg"
deregistration_delay_s = {delay}
"#
        );
        for (a, w) in targets {
            s.push_str(&format!(
                "[[target_groups.targets]]\naddress = \"{a}\"\nweight = {w}\nmac = \"02:00:00:00:00:01\"\n"
            ));
        }
        Config::from_toml_str(&s).expect("valid config")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn slots_follow_config_order_at_start() {
        let r = Registry::new(&cfg(&[("10.0.0.11", 1), ("10.0.0.12", 1)], 300), 16).unwrap();
        assert_eq!(r.find("tg", ip("10.0.0.11")), Some(0));
        assert_eq!(r.find("tg", ip("10.0.0.12")), Some(1));
        assert_eq!(r.registered().count(), 2);
    }

    #[test]
    fn removal_drains_then_ends_and_a_slot_comes_back_to_its_target() {
        let mut r = Registry::new(&cfg(&[("10.0.0.11", 1), ("10.0.0.12", 1)], 30), 16).unwrap();
        // .11 leaves, .13 arrives: .13 gets a new slot, .12 keeps its slot.
        let ch = r
            .reconcile(&cfg(&[("10.0.0.12", 1), ("10.0.0.13", 1)], 30), 100)
            .unwrap();
        assert_eq!(ch.deregistered, vec!["tg/10.0.0.11"]);
        assert_eq!(ch.registered, vec!["tg/10.0.0.13"]);
        assert_eq!(r.find("tg", ip("10.0.0.12")), Some(1));
        assert_eq!(r.find("tg", ip("10.0.0.13")), Some(2));
        assert_eq!(r.slots()[0].state, SlotState::Draining { until: 130 });
        assert!(r.expire_drains(129).is_empty());
        assert_eq!(r.expire_drains(130), vec!["tg/10.0.0.11"]);
        assert_eq!(r.slots()[0].state, SlotState::Gone);
        // Coming back: the old slot again.
        let ch = r
            .reconcile(
                &cfg(&[("10.0.0.11", 5), ("10.0.0.12", 1), ("10.0.0.13", 1)], 30),
                200,
            )
            .unwrap();
        assert_eq!(ch.registered, vec!["tg/10.0.0.11"]);
        assert_eq!(r.find("tg", ip("10.0.0.11")), Some(0));
        assert_eq!(r.slots()[0].state, SlotState::Registered);
        assert_eq!(r.slots()[0].target.weight, 5);
    }

    #[test]
    fn gone_slots_are_reused_only_when_every_slot_is_used() {
        // Two slots. .11 drains (delay 0) and is gone at once; .12 stays.
        let mut r = Registry::new(&cfg(&[("10.0.0.11", 1), ("10.0.0.12", 1)], 0), 2).unwrap();
        r.reconcile(&cfg(&[("10.0.0.12", 1)], 0), 10).unwrap();
        assert_eq!(r.expire_drains(10), vec!["tg/10.0.0.11"]);
        // .13 takes .11's slot, one generation on, and is reported as a reuse.
        let ch = r
            .reconcile(&cfg(&[("10.0.0.12", 1), ("10.0.0.13", 1)], 0), 11)
            .unwrap();
        assert_eq!(ch.reused, vec![0]);
        assert_eq!(ch.registered, vec!["tg/10.0.0.13"]);
        assert_eq!(r.find("tg", ip("10.0.0.13")), Some(0));
        assert_eq!(r.find("tg", ip("10.0.0.11")), None);
        assert_eq!(r.slots()[0].generation, 1);
        // A third target while both slots are live (one draining): refused, nothing changed.
        let mut draining =
            Registry::new(&cfg(&[("10.0.0.11", 1), ("10.0.0.12", 1)], 30), 2).unwrap();
        draining
            .reconcile(&cfg(&[("10.0.0.12", 1)], 30), 10)
            .unwrap();
        let before = draining.slots().to_vec();
        assert_eq!(
            draining.reconcile(&cfg(&[("10.0.0.12", 1), ("10.0.0.13", 1)], 30), 11),
            Err(SlotsExhausted { max: 2 })
        );
        assert_eq!(draining.slots(), &before[..]);
    }

    #[test]
    fn thousands_of_distinct_targets_over_time_fit_few_slots() {
        // Register and remove 5,000 distinct addresses, one at a time, with 4 slots.
        let mut r = Registry::new(&cfg(&[("10.0.0.2", 1)], 0), 4).unwrap();
        for i in 0..5_000u32 {
            let a = format!("10.0.{}.{}", 1 + i / 250, 2 + i % 250);
            let with = cfg(&[("10.0.0.2", 1), (&a, 1)], 0);
            r.reconcile(&with, i)
                .unwrap_or_else(|e| panic!("target {i}: {e}"));
            r.reconcile(&cfg(&[("10.0.0.2", 1)], 0), i).unwrap();
            r.expire_drains(i);
        }
        assert!(r.slots().len() <= 4);
        assert_eq!(r.find("tg", ip("10.0.0.2")), Some(0));
    }

    #[test]
    fn weight_changes_are_reported() {
        let mut r = Registry::new(&cfg(&[("10.0.0.11", 1)], 30), 16).unwrap();
        let ch = r.reconcile(&cfg(&[("10.0.0.11", 7)], 30), 5).unwrap();
        assert_eq!(ch.reweighted, vec!["tg/10.0.0.11"]);
        assert!(ch.registered.is_empty() && ch.deregistered.is_empty());
        assert_eq!(r.slots()[0].target.weight, 7);
        assert!(r
            .reconcile(&cfg(&[("10.0.0.11", 7)], 30), 6)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn slot_exhaustion_changes_nothing() {
        let mut r = Registry::new(&cfg(&[("10.0.0.11", 1)], 30), 2).unwrap();
        let err = r
            .reconcile(&cfg(&[("10.0.0.12", 1), ("10.0.0.13", 1)], 30), 5)
            .unwrap_err();
        assert_eq!(err.max, 2);
        assert_eq!(r.slots().len(), 1);
        assert_eq!(r.slots()[0].state, SlotState::Registered);
    }

    #[test]
    fn health_is_recorded_per_slot() {
        let mut r = Registry::new(&cfg(&[("10.0.0.11", 1)], 30), 4).unwrap();
        assert!(r.set_health(0, false, "2 consecutive failures".into()));
        assert_eq!(r.slots()[0].health, HealthState::Unhealthy);
        assert!(!r.set_health(9, true, String::new()));
    }

    /// A target starts initial (health check enabled by default) at start, on registration
    /// and when it comes back from draining; healthy at once when its group's check is
    /// disabled or starts targets healthy.
    #[test]
    fn registration_starts_targets_in_their_groups_initial_state() {
        let two = cfg(&[("10.0.0.11", 1), ("10.0.0.12", 1)], 30);
        let mut r = Registry::new(&two, 16).unwrap();
        assert!(r.slots().iter().all(|s| s.health == HealthState::Initial));
        assert_eq!(
            r.slots()[0].reason.as_deref(),
            Some("registered: no new flows until 5 consecutive health checks pass")
        );
        r.set_health(0, true, "5 consecutive successes".into());
        // .11 leaves and comes back: initial again, whatever it was.
        r.reconcile(&cfg(&[("10.0.0.12", 1)], 30), 10).unwrap();
        assert_eq!(r.slots()[0].health, HealthState::Healthy);
        r.reconcile(&two, 11).unwrap();
        assert_eq!(r.slots()[0].health, HealthState::Initial);
        // Listed again unchanged: state kept.
        r.set_health(1, false, "2 consecutive failures".into());
        r.reconcile(&two, 12).unwrap();
        assert_eq!(r.slots()[1].health, HealthState::Unhealthy);

        for (setting, want) in [
            ("enabled = false", HealthState::Healthy),
            ("initial_state = \"healthy\"", HealthState::Healthy),
            ("initial_state = \"initial\"", HealthState::Initial),
        ] {
            let text = format!(
                r#"
[[ports]]
name = "p0"
device = "net_null0"
role = "both"
address = "10.0.0.1/16"
[[target_groups]]
name = "tg"
[target_groups.health_check]
{setting}
[[target_groups.targets]]
address = "10.0.0.11"
mac = "02:00:00:00:00:01"
"#
            );
            let c = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{setting}: {e}"));
            let r = Registry::new(&c, 16).unwrap();
            assert!(r.slots().iter().all(|s| s.health == want), "{setting}");
        }
    }
}
