//! The control loop: the one thread that changes what the workers see.
//!
//! It owns the running [`Config`], the [`Registry`] of appliance slots, the health checker
//! and the learned neighbours, and publishes a new [`Snapshot`] whenever one of them changes.
//! Inputs: health events, the kernel's neighbour table (exception path), operator commands
//! ([`Command`] from the API, SIGHUP reloads) and the clock (drain deadlines).
//!
//! Every operator change goes through one path, [`ControlLoop::apply`]: the change is made to
//! a copy of the running configuration, which is validated exactly like a file (so errors
//! name the field), checked for settings that need a restart, reconciled with the slots and
//! turned into a snapshot; only when all of that succeeded does anything change. A failed
//! change, or a reload of a broken file, leaves the running state untouched.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender};

use crate::config::{
    Config, ConfigEdit, ConfigError, OnAllUnhealthy, OnBelowMinimum, OnUnhealthy, Probe, TargetText,
};
use crate::control::config_reader::{ConfigReader, ReadResult, ReaderGone, Reloads};
use crate::control::registry::{Changes, Registry, SlotState};
use crate::control::{
    Change, Command, ControlError, ControlResult, DrainAction, DrainReport, EndpointReport,
    EndpointSpec, FlowInfo, FlowPage, FlowQuery, HealthCheckInfo, HealthCheckPatch,
    MirrorSessionReport, MirrorSessionSpec, Now, ReloadReport, RulesChange, StatsReport,
    TargetGroupInfo, TargetInfo, TargetSpec, TargetState, WorkerReport,
};
use crate::flow_dump::{FlowDumpReply, FlowDumpRequest, FlowFilter, FlowRecord};
use crate::flow_table::DumpCursor;
use crate::health::{HealthChecker, HealthEvent, HealthState, ProbeTarget, TargetHealth};
use crate::mirror::MirrorCounter;
use crate::parse::IpAddrBytes;
use crate::pipeline::{MAX_APPLIANCES, MAX_MIRROR_SESSIONS};
use crate::routing::speaker::{Speaker, SpeakerError};
use crate::routing::{self, ServeState, Withdrawn};
use crate::snapshot::{LiveState, Snapshot};
use crate::stats::WorkerStats;

/// Default and largest page of a flow dump.
const FLOWS_DEFAULT_LIMIT: usize = 100;
const FLOWS_MAX_LIMIT: usize = 10_000;

/// How long the loop waits for a worker's flow-dump page.
const DUMP_TIMEOUT: Duration = Duration::from_secs(2);

/// What the control loop is given at start.
#[derive(Debug)]
pub struct ControlSetup {
    /// The running configuration.
    pub cfg: Config,
    /// Its file, for reloads (`None`: reload refused).
    pub config_path: Option<PathBuf>,
    /// Port MACs, config order.
    pub macs: Vec<[u8; 6]>,
    /// `(config port index, kernel interface name)` of the exception paths.
    pub kernel_ifs: Vec<(usize, String)>,
    /// Every worker's counters.
    pub stats: Vec<Arc<WorkerStats>>,
    /// Every worker's flow-dump channel.
    pub dumps: Vec<Sender<FlowDumpRequest>>,
    /// The data path's clock (seconds, as the flow tables count them).
    pub clock: Box<dyn Now>,
}

/// Who asked for a reload: an API request (its reply) or a SIGHUP (nobody to answer).
type ReloadWaiter = Option<crate::control::Reply<ReloadReport>>;

/// The control loop's state. See the module documentation.
#[derive(Debug)]
pub struct ControlLoop {
    cfg: Config,
    /// Reloads of the configuration file, read off this thread (`None`: no file, reloads
    /// refused).
    reloads: Option<Reloads<ReloadWaiter>>,
    /// The reader's results (`never()` without a file), selected on in [`ControlLoop::turn`].
    reload_results: Receiver<ReadResult>,
    macs: Vec<[u8; 6]>,
    kernel_ifs: Vec<(usize, String)>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    stats: Vec<Arc<WorkerStats>>,
    dumps: Vec<Sender<FlowDumpRequest>>,
    clock: Box<dyn Now>,
    registry: Registry,
    live: LiveState,
    checker: HealthChecker,
    health_rx: Receiver<HealthEvent>,
    generation: u64,
    started: Instant,
    last_neigh: Instant,
    /// The BGP speaker, once [`ControlLoop::start_bgp`] started it.
    speaker: Option<Speaker>,
    /// The announcement last asked of the speaker (`None`: nothing asked yet).
    announcing: Option<Result<(), Withdrawn>>,
    /// Each worker's last heartbeat and when it changed.
    beats: Vec<(u64, Instant)>,
    /// Start: the targets' first verdicts are still awaited for the announcement (see
    /// [`ControlLoop::health_pending`]); false for good once they are in.
    settling: bool,
    /// When `gwlb drain` started (`None`: not draining).
    draining_since: Option<Instant>,
    /// Per mirror counter slot, what its counters held when it was given to its session
    /// (reported: the counters less this).
    mirror_base: [[u64; MirrorCounter::COUNT]; MAX_MIRROR_SESSIONS],
    /// Per rule id, what its counters held when its rule got it (reported: the counters
    /// less this; an id is reused only once every id has been used, `RuleIds`).
    rule_base: Vec<[u64; 3]>,
}

/// Why the control loop could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlStartError {
    /// More targets than appliance slots.
    #[error(transparent)]
    Slots(#[from] crate::control::registry::SlotsExhausted),
    /// The first snapshot could not be built.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// The health checker could not start.
    #[error(transparent)]
    Health(#[from] crate::health::HealthError),
    /// The configuration reader thread could not start.
    #[error("cannot start the configuration reader thread: {0}")]
    Reader(#[source] std::io::Error),
}

/// Maps a validation error of an edited configuration to a control error. `prefix` (e.g.
/// `target_groups[0].targets[2].`) is removed from the field path, so a request's error names
/// the request's own field (`weight`), not the config path.
fn config_error(e: &ConfigError, prefix: &str) -> ControlError {
    // A file that is not TOML at all names no field: the file is the problem.
    let field = e.field().filter(|f| !f.is_empty()).unwrap_or("config");
    let short = field.strip_prefix(prefix).unwrap_or(field);
    let message = match e {
        ConfigError::Invalid { message, .. } | ConfigError::Toml { message, .. } => message.clone(),
        other => other.to_string(),
    };
    ControlError::invalid(if short.is_empty() { field } else { short }, message)
}

/// The first setting that differs between `old` and `new` and that only a restart can
/// change, as `(field, message)`.
fn needs_restart(old: &Config, new: &Config) -> Option<(String, String)> {
    let restart = |f: &str| Some((f.to_owned(), "changing it needs a restart".to_owned()));
    let mut a = old.dataplane.clone();
    let mut b = new.dataplane.clone();
    a.stats_interval = None;
    b.stats_interval = None;
    if a != b {
        return restart("dataplane");
    }
    if old.ports != new.ports {
        return restart("ports");
    }
    if old.control != new.control {
        return restart("control");
    }
    if old.bgp != new.bgp {
        return restart("bgp");
    }
    let names =
        |c: &Config| -> Vec<String> { c.target_groups.iter().map(|g| g.name.clone()).collect() };
    if names(old) != names(new) {
        return Some((
            "target_groups".into(),
            "adding, removing, renaming or reordering target groups needs a restart".into(),
        ));
    }
    for (i, (g, h)) in old.target_groups.iter().zip(&new.target_groups).enumerate() {
        if g.user_ports != h.user_ports {
            return restart(&format!("target_groups[{i}].user_ports"));
        }
        if g.stickiness != h.stickiness {
            return restart(&format!("target_groups[{i}].stickiness"));
        }
    }
    None
}

fn health_check_info(h: &crate::config::HealthCheck) -> HealthCheckInfo {
    let (protocol, path, codes) = match &h.probe {
        Probe::Tcp => ("tcp", None, None),
        Probe::Http {
            path,
            success_codes,
            tls,
        } => (
            if tls.is_some() { "https" } else { "http" },
            Some(path.clone()),
            Some(success_codes.to_string()),
        ),
        Probe::Geneve => ("geneve", None, None),
    };
    HealthCheckInfo {
        enabled: h.enabled,
        protocol: protocol.into(),
        port: h.port,
        data_path: h
            .data_path
            .map(|d| format!("{} -> {}", d.source, d.destination)),
        flap_damping_half_life_s: h.flap_half_life.map_or(0, |d| d.as_secs()),
        tls: match &h.probe {
            Probe::Http { tls: Some(t), .. } => Some(crate::control::TlsInfo {
                verify: t.verify,
                ca_file: t.ca_file.as_ref().map(|p| p.display().to_string()),
                server_name: t.server_name.clone(),
            }),
            _ => None,
        },
        path,
        success_codes: codes,
        interval_ms: h.interval.as_millis() as u64,
        timeout_ms: h.timeout.as_millis() as u64,
        healthy_threshold: h.healthy_threshold,
        unhealthy_threshold: h.unhealthy_threshold,
        initial_state: h.initial_state.as_str().into(),
    }
}

impl ControlLoop {
    /// Builds the registry and the first snapshot (see [`ControlLoop::snapshot`]) and starts
    /// the health checker.
    pub fn start(setup: ControlSetup) -> Result<ControlLoop, ControlStartError> {
        let registry = Registry::new(&setup.cfg, MAX_APPLIANCES)?;
        let mut live = LiveState::default();
        live.zones.assign(&setup.cfg);
        live.mirror_slots.assign(&setup.cfg.mirror_sessions);
        live.rule_ids.assign(&setup.cfg);
        let snap = Snapshot::build_with(&setup.cfg, &setup.macs, &registry, &live, 1)?;
        for a in &snap.appliances {
            if a.template.is_none() {
                tracing::warn!(appliance = %a.addr, "no MAC known for appliance yet: its flows are dropped (neighbor_unresolved) until it is resolved");
            }
        }
        let snapshot = Arc::new(ArcSwap::from_pointee(snap));
        let (health_tx, health_rx) = crossbeam_channel::unbounded();
        let checker = HealthChecker::spawn(probe_targets(&setup.cfg, &registry), health_tx)?;
        let setup_workers = setup.stats.len();
        let reloads = match setup.config_path {
            Some(p) => Some(Reloads::new(
                ConfigReader::start(p).map_err(ControlStartError::Reader)?,
            )),
            None => None,
        };
        let reload_results = reloads
            .as_ref()
            .map_or_else(crossbeam_channel::never, |r| r.reader().results().clone());
        let ctl = ControlLoop {
            cfg: setup.cfg,
            reloads,
            reload_results,
            macs: setup.macs,
            kernel_ifs: setup.kernel_ifs,
            snapshot,
            stats: setup.stats,
            dumps: setup.dumps,
            clock: setup.clock,
            registry,
            live,
            checker,
            health_rx,
            generation: 1,
            started: Instant::now(),
            last_neigh: Instant::now() - Duration::from_secs(2),
            speaker: None,
            announcing: None,
            beats: vec![(0, Instant::now()); setup_workers],
            settling: true,
            draining_since: None,
            mirror_base: [[0; MirrorCounter::COUNT]; MAX_MIRROR_SESSIONS],
            rule_base: vec![[0; 3]; crate::policy::RuleIds::COUNT],
        };
        ctl.log_groups_without_healthy();
        Ok(ctl)
    }

    /// The published snapshot, for the workers.
    pub fn snapshot(&self) -> Arc<ArcSwap<Snapshot>> {
        Arc::clone(&self.snapshot)
    }

    /// The running configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The address of every appliance slot, by slot.
    pub fn slot_addresses(&self) -> Vec<String> {
        self.registry
            .slots()
            .iter()
            .map(|s| s.target.address.to_string())
            .collect()
    }

    /// Waits up to `max_wait` for a command or a health event and handles what arrived, then
    /// does the periodic work (drain deadlines, neighbour refresh). Returns after at most
    /// about `max_wait`.
    pub fn turn(&mut self, commands: &Receiver<Command>, max_wait: Duration) {
        crossbeam_channel::select! {
            recv(commands) -> c => if let Ok(c) = c { self.handle(c) },
            recv(self.health_rx) -> ev => if let Ok(ev) = ev { self.health_event(ev) },
            recv(self.reload_results) -> r => if let Ok(r) = r { self.on_reload_read(r) },
            default(max_wait) => {}
        }
        let mut changed = false;
        while let Ok(ev) = self.health_rx.try_recv() {
            changed |= self.record_health(ev);
        }
        let drained = self.registry.expire_drains(self.clock.now());
        for t in &drained {
            tracing::info!(target = %t, "deregistration delay over: target removed");
        }
        changed |= !drained.is_empty();
        if !self.kernel_ifs.is_empty() && self.last_neigh.elapsed() >= Duration::from_secs(1) {
            self.last_neigh = Instant::now();
            changed |= self.refresh_neighbors();
        }
        if changed {
            self.publish("health, drain or neighbours changed");
        }
        self.update_announcement();
    }

    /// Starts the BGP speaker when the configuration has `[bgp]` (withdrawn until the node
    /// can serve; see [`crate::routing`]). Call once the workers run.
    pub fn start_bgp(&mut self) -> Result<(), SpeakerError> {
        if let Some(bgp) = self.cfg.bgp.clone() {
            self.speaker = Some(Speaker::start(bgp)?);
            self.update_announcement();
        }
        Ok(())
    }

    /// What the node can do now, for [`routing::should_announce`].
    fn serve_state(&mut self) -> ServeState {
        let stall = self
            .cfg
            .bgp
            .as_ref()
            .map_or(Duration::from_secs(1), |b| b.stall_timeout);
        let mut stalled_workers = Vec::new();
        let mut workers_started = true;
        for (i, w) in self.stats.iter().enumerate() {
            let beat = w.heartbeat.load(Relaxed);
            let (last, since) = &mut self.beats[i];
            if beat != *last {
                *last = beat;
                *since = Instant::now();
            }
            if beat == 0 {
                workers_started = false;
            } else if since.elapsed() > stall {
                stalled_workers.push(i);
            }
        }
        // The appliances that take each group's new flows, as published: its own healthy
        // ones, or its failover group's. Initial targets are not healthy: a fail-closed group
        // whose targets have all not passed their checks yet (and no failover group that
        // takes over) cannot serve, and the node does not announce.
        let snap = self.snapshot.load();
        let groups = self
            .cfg
            .target_groups
            .iter()
            .enumerate()
            .map(|(gi, g)| {
                let serving = snap.groups.get(gi).map_or(0, |v| v.backends.len());
                (
                    g.name.clone(),
                    serving,
                    g.on_all_unhealthy == OnAllUnhealthy::FailOpen,
                )
            })
            .collect();
        ServeState {
            workers_started,
            stalled_workers,
            draining: self.draining_since.is_some(),
            stopping: false,
            groups,
            health_pending: self.health_pending(),
        }
    }

    /// At start, the registered targets still initial: the node announces only once every
    /// target has a verdict, so that it joins the other nodes with the same view of the pool
    /// (docs/architecture.md, "Health views"). The wait ends for good when none is left, or
    /// at the latest when every group's checks must have decided (`interval × (the larger
    /// threshold + 1)` with jitter, plus the timeout): a target whose probes cannot even be
    /// sent (local errors) must not keep the node out forever. Targets registered later never
    /// withdraw the node.
    fn health_pending(&mut self) -> usize {
        if !self.settling {
            return 0;
        }
        let pending = self
            .registry
            .registered()
            .filter(|(_, s)| s.health == HealthState::Initial)
            .count();
        let bound = self
            .cfg
            .target_groups
            .iter()
            .filter(|g| g.health_check.enabled)
            .map(|g| {
                let h = &g.health_check;
                let probes = u32::from(h.healthy_threshold.max(h.unhealthy_threshold)) + 1;
                h.interval * probes * (100 + u32::from(h.jitter_percent)) / 100 + h.timeout
            })
            .max()
            .unwrap_or_default();
        if pending == 0 || self.started.elapsed() > bound {
            self.settling = false;
            return 0;
        }
        pending
    }

    /// Asks the speaker for the announcement the node's state calls for, when it changed.
    fn update_announcement(&mut self) {
        if self.speaker.is_none() {
            return;
        }
        let decision = routing::should_announce(&self.serve_state());
        if self.announcing.as_ref() == Some(&decision) {
            return;
        }
        if let Some(sp) = &self.speaker {
            sp.announce(
                decision.is_ok(),
                decision.as_ref().err().map(ToString::to_string),
            );
        }
        self.announcing = Some(decision);
    }

    /// `gwlb drain`: starts, stops or reports.
    fn drain(&mut self, action: DrainAction) -> DrainReport {
        match action {
            DrainAction::Start if self.draining_since.is_none() => {
                tracing::warn!(
                    "drain: withdrawing the announcement, forwarding the flows that still arrive"
                );
                self.draining_since = Some(Instant::now());
            }
            DrainAction::Stop if self.draining_since.is_some() => {
                tracing::info!("drain stopped: announcing again when the node can serve");
                self.draining_since = None;
            }
            _ => {}
        }
        self.update_announcement();
        self.drain_report().unwrap_or_default()
    }

    fn drain_report(&self) -> Option<DrainReport> {
        let since = self.draining_since?;
        let timeout_s = self
            .cfg
            .target_groups
            .iter()
            .map(|g| g.deregistration_delay.as_secs())
            .max()
            .unwrap_or(0);
        let active_flows: u64 = self
            .stats
            .iter()
            .map(|w| w.active_flows.load(Relaxed))
            .sum();
        let elapsed = since.elapsed();
        Some(DrainReport {
            draining: true,
            elapsed_s: elapsed.as_secs_f64(),
            timeout_s,
            active_flows,
            drained: active_flows == 0 || elapsed.as_secs() >= timeout_s,
        })
    }

    /// A health result: from the checker (selected on in [`ControlLoop::turn`]) or another
    /// source of health (data-path probes; tests). Recorded, and a snapshot published, when
    /// it changes the target's state.
    pub fn health_event(&mut self, ev: HealthEvent) {
        if self.record_health(ev) {
            self.publish("health changed");
        }
    }

    fn record_health(&mut self, ev: HealthEvent) -> bool {
        if !self.registry.set_health(ev.slot, ev.healthy, ev.reason) {
            return false;
        }
        self.log_groups_without_healthy();
        true
    }

    /// Builds and publishes a snapshot of the current state.
    fn publish(&mut self, why: &str) {
        match Snapshot::build_with(
            &self.cfg,
            &self.macs,
            &self.registry,
            &self.live,
            self.generation + 1,
        ) {
            Ok(s) => {
                self.generation += 1;
                self.log_failovers(&s);
                self.snapshot.store(Arc::new(s));
                tracing::debug!(
                    generation = self.generation,
                    "{why}: new snapshot published"
                );
            }
            Err(e) => tracing::error!("snapshot rebuild failed, keeping the old one: {e}"),
        }
    }

    /// Logs each group that starts or stops failing over to its failover group, or failing
    /// open, with `new`.
    fn log_failovers(&self, new: &Snapshot) {
        let old = self.snapshot.load();
        for (gi, g) in new.groups.iter().enumerate() {
            let was_open = old
                .groups
                .get(gi)
                .is_some_and(|o| o.name == g.name && o.failed_open);
            match (was_open, g.failed_open) {
                (false, true) => tracing::warn!(
                    group = %g.name,
                    targets = g.backends.len(),
                    "group below its health minimum: FAIL-OPEN, new flows go to all its registered targets, healthy or not"
                ),
                (true, false) => tracing::info!(
                    group = %g.name,
                    "group back at its health minimum (or without registered targets): new flows go to its healthy targets"
                ),
                _ => {}
            }
            let before = old
                .groups
                .get(gi)
                .filter(|o| o.name == g.name)
                .and_then(|o| o.failover);
            if before == g.failover {
                continue;
            }
            let cfg = self.cfg.target_groups.get(gi);
            let (min_targets, min_percent) =
                cfg.map_or((0, 0), |c| (c.min_healthy_targets, c.min_healthy_percent));
            match g.failover.and_then(|b| new.groups.get(usize::from(b))) {
                Some(b) => tracing::warn!(
                    group = %g.name,
                    failover_group = %b.name,
                    min_healthy_targets = min_targets,
                    min_healthy_percent = min_percent,
                    "group below its health minimum: new flows go to its failover group"
                ),
                None => tracing::info!(
                    group = %g.name,
                    "group back at its health minimum (or its failover group below its own): new flows go to its own targets"
                ),
            }
        }
    }

    /// Per-appliance counter `k` (packets, bytes, flows) of `slot`, summed over workers since
    /// start (for every target the slot has served).
    fn slot_counter(&self, slot: usize, k: usize) -> u64 {
        self.stats
            .iter()
            .map(|w| w.appliance.get(slot).map_or(0, |a| a[k].load(Relaxed)))
            .sum()
    }

    /// Makes `new` the running configuration, or changes nothing. See the module docs.
    pub fn apply(&mut self, new: Config, why: &str) -> ControlResult<Changes> {
        if let Some((field, message)) = needs_restart(&self.cfg, &new) {
            return Err(ControlError::Invalid { field, message });
        }
        let mut registry = self.registry.clone();
        let changes =
            registry
                .reconcile(&new, self.clock.now())
                .map_err(|e| ControlError::Conflict {
                    message: e.to_string(),
                })?;
        for &slot in &changes.reused {
            let base = [0, 1, 2].map(|k| self.slot_counter(usize::from(slot), k));
            if let Some(s) = registry.slot_mut(slot) {
                s.counter_base = base;
            }
        }
        // Endpoints keep their zones across the change; new ones get new zones.
        let mut live = self.live.clone();
        live.zones.assign(&new);
        // Rules keep their ids (and so their flows and counters) wherever the change moves
        // them; an id given to a new rule counts from what it holds now.
        let rule_bases: Vec<(usize, [u64; 3])> = live
            .rule_ids
            .assign(&new)
            .into_iter()
            .map(|id| (usize::from(id), self.rule_sums(usize::from(id))))
            .collect();
        // Mirror sessions keep their counter slots; a slot given to a new name counts from
        // what it holds now.
        let mirror_bases: Vec<(usize, [u64; MirrorCounter::COUNT])> = live
            .mirror_slots
            .assign(&new.mirror_sessions)
            .into_iter()
            .map(|s| (usize::from(s), self.mirror_sums(usize::from(s))))
            .collect();
        let snap = Snapshot::build_with(&new, &self.macs, &registry, &live, self.generation + 1)
            .map_err(|e| ControlError::invalid("target_groups", e.to_string()))?;
        self.checker
            .update_targets(probe_targets(&new, &registry))
            .map_err(|e| ControlError::Unavailable {
                message: e.to_string(),
            })?;
        self.cfg = new;
        self.live = live;
        for (id, base) in rule_bases {
            if let Some(b) = self.rule_base.get_mut(id) {
                *b = base;
            }
        }
        for (slot, base) in mirror_bases {
            if let Some(b) = self.mirror_base.get_mut(slot) {
                *b = base;
            }
        }
        self.registry = registry;
        self.generation += 1;
        self.snapshot.store(Arc::new(snap));
        for t in &changes.registered {
            tracing::info!(target = %t, cause = why, "target registered");
        }
        for t in &changes.deregistered {
            tracing::info!(target = %t, cause = why, "target deregistered: draining");
        }
        for t in &changes.reweighted {
            tracing::info!(target = %t, cause = why, "target weight changed");
        }
        for t in &changes.modified {
            tracing::info!(target = %t, cause = why, "target port or MAC changed");
        }
        self.log_groups_without_healthy();
        Ok(changes)
    }

    /// Asks for a reload of the configuration file, on behalf of an API request (`reply`)
    /// or a SIGHUP (`None`). The file is read and validated off this thread
    /// ([`ConfigReader`]); the result is applied, and answered, when it arrives in
    /// [`ControlLoop::turn`]. On any error the running configuration is kept.
    pub fn request_reload(&mut self, reply: ReloadWaiter) {
        let Some(reloads) = self.reloads.as_mut() else {
            let e = ControlError::Conflict {
                message: "the gateway was not started from a configuration file".into(),
            };
            tracing::error!("reload refused: {e}");
            if let Some(tx) = reply {
                let _ = tx.send(Err(e));
            }
            return;
        };
        if let Err((waiter, gone)) = reloads.request(reply) {
            Self::answer_gone(vec![waiter], &gone);
        }
    }

    fn answer_gone(waiters: Vec<ReloadWaiter>, gone: &ReaderGone) {
        tracing::error!("configuration reload impossible: {gone}");
        for tx in waiters.into_iter().flatten() {
            let _ = tx.send(Err(ControlError::Unavailable {
                message: gone.to_string(),
            }));
        }
    }

    /// A read of the configuration file is done: applies it and answers who asked.
    fn on_reload_read(&mut self, read: ReadResult) {
        let Some(path) = self.reloads.as_ref().map(|r| r.reader().path().to_owned()) else {
            return;
        };
        let result = self.apply_reload(&path, read);
        let Some(reloads) = self.reloads.as_mut() else {
            return;
        };
        let (done, unserved) = reloads.finished();
        for tx in done.into_iter().flatten() {
            let _ = tx.send(result.clone());
        }
        if !unserved.is_empty() {
            Self::answer_gone(unserved, &ReaderGone);
        }
    }

    /// Applies a configuration read from `path` (or the error reading it). On any error the
    /// running configuration is kept.
    fn apply_reload(&mut self, path: &Path, read: ReadResult) -> ControlResult<ReloadReport> {
        let result = read.map_err(|e| config_error(&e, "")).and_then(|new| {
            let changed = changed_settings(&self.cfg, &new);
            let warnings = new
                .warnings()
                .iter()
                .map(|w| format!("{}: {}", w.field, w.message))
                .collect();
            let changes = self.apply(new, "reload")?;
            Ok(ReloadReport {
                file: path.display().to_string(),
                registered: changes.registered,
                deregistered: changes.deregistered,
                reweighted: changes.reweighted,
                changed,
                warnings,
            })
        });
        match &result {
            Ok(r) => tracing::info!(
                file = %path.display(),
                registered = r.registered.len(),
                deregistered = r.deregistered.len(),
                reweighted = r.reweighted.len(),
                changed = ?r.changed,
                "configuration reloaded"
            ),
            Err(e) => tracing::error!(
                file = %path.display(),
                "configuration reload rejected, the running configuration is kept: {e}"
            ),
        }
        result
    }

    /// Handles one operator command.
    pub fn handle(&mut self, c: Command) {
        // A requester that timed out has dropped its receiver: nothing to do then.
        match c {
            Command::ListGroups(reply) => {
                let _ = reply.send(Ok(self.groups()));
            }
            Command::Register {
                group,
                target,
                reply,
            } => {
                let _ = reply.send(self.register(&group, target));
            }
            Command::Deregister {
                group,
                address,
                reply,
            } => {
                let _ = reply.send(self.deregister(&group, address));
            }
            Command::SetWeight {
                group,
                address,
                weight,
                reply,
            } => {
                let _ = reply.send(self.set_weight(&group, address, weight));
            }
            Command::SetHealthCheck {
                group,
                patch,
                reply,
            } => {
                let _ = reply.send(self.set_health_check(&group, &patch));
            }
            Command::Stats(reply) => {
                let _ = reply.send(Ok(self.stats_report()));
            }
            Command::Flows(q, reply) => {
                let _ = reply.send(self.flows(&q));
            }
            Command::Reload(reply) => self.request_reload(Some(reply)),
            Command::Drain(action, reply) => {
                let _ = reply.send(Ok(self.drain(action)));
            }
            Command::CreateMirror { spec, reply } => {
                let _ = reply.send(self.create_mirror(spec));
            }
            Command::ChangeMirror {
                name,
                change,
                reply,
            } => {
                let _ = reply.send(self.change_mirror(&name, change));
            }
            Command::DeleteMirror { name, reply } => {
                let _ = reply.send(self.delete_mirror(&name));
            }
            Command::CreateEndpoint { spec, reply } => {
                let _ = reply.send(self.create_endpoint(spec));
            }
            Command::ChangeEndpoint {
                name,
                change,
                reply,
            } => {
                let _ = reply.send(self.change_endpoint(&name, change));
            }
            Command::ChangeRules {
                name,
                change,
                reply,
            } => {
                let _ = reply.send(self.change_rules(&name, change));
            }
            Command::DeleteEndpoint { name, reply } => {
                let _ = reply.send(self.delete_endpoint(&name));
            }
        }
    }

    fn group_index(&self, group: &str) -> ControlResult<usize> {
        self.cfg
            .target_groups
            .iter()
            .position(|g| g.name == group)
            .ok_or_else(|| ControlError::NotFound {
                what: format!("target group {group:?}"),
            })
    }

    /// The running configuration changed by `change` ([`ConfigEdit`]: the file's mirror,
    /// validated like a file). `prefix` (e.g. `target_groups[0].targets[2].`) is removed
    /// from the field an error names, so that it names the request's own field.
    fn edited(
        &self,
        prefix: &str,
        change: impl FnOnce(&mut ConfigEdit) -> Result<(), ConfigError>,
    ) -> ControlResult<Config> {
        let mut e = self.cfg.edit();
        change(&mut e)
            .and_then(|()| e.finish())
            .map_err(|err| config_error(&err, prefix))
    }

    fn target_position(&self, gi: usize, address: IpAddr) -> ControlResult<usize> {
        let g = &self.cfg.target_groups[gi];
        g.targets
            .iter()
            .position(|t| t.address == address)
            .ok_or_else(|| ControlError::NotFound {
                what: format!("registered target {address} in target group {:?}", g.name),
            })
    }

    fn register(&mut self, group: &str, spec: TargetSpec) -> ControlResult<TargetInfo> {
        let gi = self.group_index(group)?;
        if self.target_position(gi, spec.address).is_ok() {
            return Err(ControlError::Conflict {
                message: format!("{} is already registered in {group:?}", spec.address),
            });
        }
        let elsewhere = self.registry.slots().iter().find(|s| {
            s.group != group && s.target.address == spec.address && s.state != SlotState::Gone
        });
        if let Some(s) = elsewhere {
            return Err(ControlError::Conflict {
                message: format!(
                    "{} is a target of target group {:?} (an appliance belongs to one group: returns are matched by their source address)",
                    spec.address, s.group
                ),
            });
        }
        let j = self.cfg.target_groups[gi].targets.len();
        let new = self.edited(&format!("target_groups[{gi}].targets[{j}]."), |e| {
            e.add_target(
                gi,
                TargetText {
                    address: spec.address.to_string(),
                    weight: spec.weight,
                    port: spec.port.clone(),
                    mac: spec.mac.clone(),
                },
            );
            Ok(())
        })?;
        self.apply(new, "api")?;
        self.target_info(group, spec.address)
    }

    fn deregister(&mut self, group: &str, address: IpAddr) -> ControlResult<TargetInfo> {
        let gi = self.group_index(group)?;
        let j = self.target_position(gi, address).map_err(|e| {
            match self
                .registry
                .find(group, address)
                .map(|s| self.registry.slots()[usize::from(s)].state)
            {
                Some(SlotState::Draining { .. }) => ControlError::Conflict {
                    message: format!("{address} is already deregistered (draining)"),
                },
                _ => e,
            }
        })?;
        let new = self.edited("", |e| {
            e.remove_target(gi, j);
            Ok(())
        })?;
        self.apply(new, "api")?;
        self.target_info(group, address)
    }

    fn set_weight(
        &mut self,
        group: &str,
        address: IpAddr,
        weight: u16,
    ) -> ControlResult<TargetInfo> {
        let gi = self.group_index(group)?;
        let j = self.target_position(gi, address)?;
        let new = self.edited(&format!("target_groups[{gi}].targets[{j}]."), |e| {
            e.set_weight(gi, j, weight);
            Ok(())
        })?;
        self.apply(new, "api")?;
        self.target_info(group, address)
    }

    fn set_health_check(
        &mut self,
        group: &str,
        p: &HealthCheckPatch,
    ) -> ControlResult<TargetGroupInfo> {
        let gi = self.group_index(group)?;
        let new = self.edited(&format!("target_groups[{gi}].health_check."), |e| {
            e.patch_health_check(gi, p).map(|_| ())
        })?;
        self.apply(new, "api")?;
        tracing::info!(group, patch = ?p, "health check changed");
        self.groups()
            .into_iter()
            .find(|g| g.name == group)
            .ok_or_else(|| ControlError::NotFound {
                what: format!("target group {group:?}"),
            })
    }

    fn target_info(&self, group: &str, address: IpAddr) -> ControlResult<TargetInfo> {
        self.groups()
            .into_iter()
            .filter(|g| g.name == group)
            .flat_map(|g| g.targets)
            .find(|t| t.address == address)
            .ok_or_else(|| ControlError::NotFound {
                what: format!("target {address} in target group {group:?}"),
            })
    }

    /// Every target group with its targets (registered in config order, then draining).
    pub fn groups(&self) -> Vec<TargetGroupInfo> {
        let health: Vec<TargetHealth> = self.checker.snapshot();
        let snap = self.snapshot.load();
        let now = self.clock.now();
        let sum = |slot: usize, k: usize| -> u64 {
            let base = self.registry.slots()[slot].counter_base[k];
            self.slot_counter(slot, k).saturating_sub(base)
        };
        let mut out = Vec::new();
        for (gi, g) in self.cfg.target_groups.iter().enumerate() {
            let mut targets = Vec::new();
            let mut order: Vec<(usize, usize)> = Vec::new();
            for (slot, s) in self.registry.slots().iter().enumerate() {
                if s.group != g.name {
                    continue;
                }
                let rank = match s.state {
                    SlotState::Registered => g
                        .targets
                        .iter()
                        .position(|t| t.address == s.target.address)
                        .unwrap_or(usize::MAX / 2),
                    SlotState::Draining { .. } => usize::MAX / 2 + slot,
                    SlotState::Gone => continue,
                };
                order.push((rank, slot));
            }
            order.sort_unstable();
            let (mut healthy, mut unhealthy, mut initial) = (0, 0, 0);
            for (_, slot) in order {
                let s = &self.registry.slots()[slot];
                let h = health.iter().find(|h| usize::from(h.slot) == slot);
                let (state, drain) = match s.state {
                    SlotState::Draining { until } => (
                        TargetState::Draining,
                        Some(u64::from(until.saturating_sub(now))),
                    ),
                    _ => match s.health {
                        HealthState::Initial => (TargetState::Initial, None),
                        HealthState::Healthy => (TargetState::Healthy, None),
                        HealthState::Unhealthy => (TargetState::Unhealthy, None),
                    },
                };
                match state {
                    TargetState::Healthy if s.target.weight > 0 => healthy += 1,
                    TargetState::Unhealthy => unhealthy += 1,
                    TargetState::Initial => initial += 1,
                    _ => {}
                }
                // The latest probe's outcome, unless the checker does not probe this target
                // and another source of health (a health event) marked it unhealthy.
                let reason = match state {
                    TargetState::Draining => s.reason.clone(),
                    _ => h
                        .filter(|h| h.enabled || s.health == HealthState::Healthy)
                        .and_then(|h| h.last_reason.clone())
                        .or_else(|| s.reason.clone()),
                };
                targets.push(TargetInfo {
                    group: g.name.clone(),
                    address: s.target.address,
                    port: self
                        .cfg
                        .ports
                        .get(s.target.port)
                        .map_or_else(String::new, |p| p.name.clone()),
                    weight: s.target.weight,
                    state,
                    reason,
                    drain_remaining_s: drain,
                    check_latency_ms: h
                        .and_then(|h| h.last_latency)
                        .map(|d| d.as_secs_f64() * 1e3),
                    slot: slot as u16,
                    resolved: snap
                        .appliances
                        .get(slot)
                        .is_some_and(|a| a.template.is_some()),
                    packets: sum(slot, 0),
                    bytes: sum(slot, 1),
                    flows: sum(slot, 2),
                });
            }
            out.push(TargetGroupInfo {
                name: g.name.clone(),
                stickiness: g.stickiness.as_str().into(),
                on_unhealthy: match g.on_unhealthy {
                    OnUnhealthy::Rebalance => "rebalance",
                    OnUnhealthy::NoRebalance => "no_rebalance",
                }
                .into(),
                on_all_unhealthy: match g.on_all_unhealthy {
                    OnAllUnhealthy::FailOpen => "fail_open",
                    OnAllUnhealthy::FailClosed => "fail_closed",
                }
                .into(),
                deregistration_delay_s: g.deregistration_delay.as_secs(),
                health_check: health_check_info(&g.health_check),
                healthy_count: healthy,
                unhealthy_count: unhealthy,
                initial_count: initial,
                failover_group: g
                    .failover_group
                    .and_then(|b| self.cfg.target_groups.get(b))
                    .map(|b| b.name.clone()),
                min_healthy_targets: g.min_healthy_targets,
                min_healthy_percent: g.min_healthy_percent,
                failed_over: snap
                    .groups
                    .get(gi)
                    .is_some_and(|v| v.name == g.name && v.failover.is_some()),
                on_below_minimum: g.on_below_minimum.as_str().into(),
                failed_open: snap
                    .groups
                    .get(gi)
                    .is_some_and(|v| v.name == g.name && v.failed_open),
                targets,
            });
        }
        out
    }

    /// Counters of every worker and their sum.
    pub fn stats_report(&self) -> StatsReport {
        let cap = u64::from(self.cfg.dataplane.flow_table_capacity);
        let workers: Vec<WorkerReport> = self
            .stats
            .iter()
            .enumerate()
            .map(|(i, w)| WorkerReport::from_stats(i, w, cap))
            .collect();
        let mut total = WorkerReport::default();
        for w in &workers {
            total.add(w);
        }
        StatsReport {
            uptime_s: self.started.elapsed().as_secs_f64(),
            generation: self.snapshot.load().generation,
            choice_digest: format!("{:#018x}", self.cfg.choice_digest()),
            workers,
            total,
            routing: self.speaker.as_ref().map(Speaker::report),
            drain: self.drain_report(),
            mirror_sessions: self.mirror_reports(),
            endpoints: self.endpoint_reports(),
        }
    }

    /// Each endpoint with its rules' counters summed over the workers (kept by rule id, so a
    /// rule's follow it wherever a change moves it: `crate::policy::RuleIds`).
    fn endpoint_reports(&self) -> Vec<crate::control::EndpointReport> {
        use crate::policy::Action;
        let snap = self.snapshot.load();
        snap.endpoints
            .iter()
            .map(|ep| {
                let rules: Vec<crate::control::RuleReport> = (ep.rules.start..ep.rules.end)
                    .map(usize::from)
                    .filter_map(|i| snap.rules.get(i))
                    .map(|r| (r, self.rule_value(usize::from(r.id))))
                    .map(|(r, [packets, bytes, flows])| crate::control::RuleReport {
                        name: r.name.clone(),
                        action: r.action.as_str().to_owned(),
                        target_group: match r.action {
                            Action::Inspect(g) => {
                                snap.groups.get(usize::from(g)).map(|g| g.name.clone())
                            }
                            _ => None,
                        },
                        chain: match r.action {
                            Action::Chain(c) => c
                                .groups()
                                .iter()
                                .filter_map(|&g| snap.groups.get(usize::from(g)))
                                .map(|g| g.name.clone())
                                .collect(),
                            _ => Vec::new(),
                        },
                        packets,
                        bytes,
                        flows,
                    })
                    .collect();
                crate::control::EndpointReport {
                    name: ep.name.clone(),
                    vlan: ep.tags.ids[..usize::from(ep.tags.count.min(2))].to_vec(),
                    endpoint_id: format!("{:#x}", ep.identity.endpoint_id),
                    packets: rules.iter().map(|r| r.packets).sum(),
                    bytes: rules.iter().map(|r| r.bytes).sum(),
                    flows: rules.iter().map(|r| r.flows).sum(),
                    rules,
                    settings: self
                        .cfg
                        .endpoints
                        .iter()
                        .position(|e| e.name == ep.name)
                        .and_then(|i| self.cfg.endpoint_spec(i)),
                }
            })
            .collect()
    }

    /// Rule id `id`'s counters (packets, bytes, flows), summed over the workers since start.
    fn rule_sums(&self, id: usize) -> [u64; 3] {
        std::array::from_fn(|c| {
            self.stats
                .iter()
                .map(|w| w.rules.get(id).map_or(0, |r| r[c].load(Relaxed)))
                .sum()
        })
    }

    /// What the rule with id `id` has counted since it got the id.
    fn rule_value(&self, id: usize) -> [u64; 3] {
        let now = self.rule_sums(id);
        let base = self.rule_base.get(id).copied().unwrap_or_default();
        std::array::from_fn(|c| now[c].saturating_sub(base[c]))
    }

    fn endpoint_index(&self, name: &str) -> ControlResult<usize> {
        self.cfg
            .endpoints
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| ControlError::NotFound {
                what: format!("endpoint {name:?}"),
            })
    }

    fn endpoint_report(&self, name: &str) -> ControlResult<EndpointReport> {
        self.endpoint_reports()
            .into_iter()
            .find(|e| e.name == name)
            .ok_or_else(|| ControlError::NotFound {
                what: format!("endpoint {name:?}"),
            })
    }

    fn create_endpoint(&mut self, spec: EndpointSpec) -> ControlResult<EndpointReport> {
        let name = spec.name().to_owned();
        if self.endpoint_index(&name).is_ok() {
            return Err(ControlError::Conflict {
                message: format!("endpoint {name:?} exists"),
            });
        }
        let i = self.cfg.endpoints.len();
        let new = self.edited(&format!("endpoints[{i}]."), |e| {
            e.add_endpoint(spec);
            Ok(())
        })?;
        self.apply(new, "api")?;
        tracing::info!(endpoint = %name, "endpoint created");
        self.endpoint_report(&name)
    }

    fn change_endpoint(
        &mut self,
        name: &str,
        change: Change<EndpointSpec>,
    ) -> ControlResult<EndpointReport> {
        let i = self.endpoint_index(name)?;
        if change.renames(name, EndpointSpec::name) {
            return Err(ControlError::invalid(
                "name",
                format!("the endpoint is {name:?}: an endpoint keeps its name (its zone and flows go with it)"),
            ));
        }
        let new = self.edited(&format!("endpoints[{i}]."), |e| match change {
            Change::Replace(spec) => {
                e.set_endpoint(i, spec);
                Ok(())
            }
            Change::Patch(p) => e.patch_endpoint(i, &p).map(|_| ()),
        })?;
        self.apply(new, "api")?;
        tracing::info!(endpoint = %name, "endpoint changed");
        self.endpoint_report(name)
    }

    fn change_rules(&mut self, name: &str, change: RulesChange) -> ControlResult<EndpointReport> {
        let i = self.endpoint_index(name)?;
        let rules = &self.cfg.endpoints[i].rules;
        let new = match change {
            RulesChange::Replace(list) => self.edited(&format!("endpoints[{i}]."), |e| {
                e.set_rules(i, list);
                Ok(())
            })?,
            RulesChange::Append(rule) => {
                if rules.iter().any(|r| r.name == rule.name()) {
                    return Err(ControlError::Conflict {
                        message: format!("endpoint {name:?} has a rule {:?}", rule.name()),
                    });
                }
                let j = rules.len();
                self.edited(&format!("endpoints[{i}].rules[{j}]."), |e| {
                    e.add_rule(i, rule);
                    Ok(())
                })?
            }
            RulesChange::Remove(rule) => {
                let j = rules.iter().position(|r| r.name == rule).ok_or_else(|| {
                    ControlError::NotFound {
                        what: format!("rule {rule:?} of endpoint {name:?}"),
                    }
                })?;
                self.edited(&format!("endpoints[{i}]."), |e| {
                    e.remove_rule(i, j);
                    Ok(())
                })?
            }
        };
        self.apply(new, "api")?;
        tracing::info!(endpoint = %name, "steering rules changed");
        self.endpoint_report(name)
    }

    fn delete_endpoint(&mut self, name: &str) -> ControlResult<EndpointReport> {
        let i = self.endpoint_index(name)?;
        let last = self.endpoint_report(name)?;
        let new = self.edited("", |e| {
            e.remove_endpoint(i);
            Ok(())
        })?;
        self.apply(new, "api")?;
        tracing::info!(endpoint = %name, "endpoint removed");
        Ok(last)
    }

    /// Mirror counter slot `slot`'s counters, summed over the workers (since start).
    fn mirror_sums(&self, slot: usize) -> [u64; MirrorCounter::COUNT] {
        std::array::from_fn(|c| {
            self.stats
                .iter()
                .map(|w| w.mirror.get(slot).map_or(0, |s| s[c].load(Relaxed)))
                .sum()
        })
    }

    /// Each mirror session with its counters summed over the workers (from its own slot, less
    /// what the slot held when the session got it).
    fn mirror_reports(&self) -> Vec<MirrorSessionReport> {
        (0..self.cfg.mirror_sessions.len())
            .filter_map(|i| self.mirror_report(i))
            .collect()
    }

    fn mirror_report(&self, i: usize) -> Option<MirrorSessionReport> {
        use crate::mirror::MirrorCounter as C;
        let m = self.cfg.mirror_sessions.get(i)?;
        let slot = self.live.mirror_slots.slot(&m.name).map_or(i, usize::from);
        let now = self.mirror_sums(slot);
        let base = self.mirror_base.get(slot).copied().unwrap_or_default();
        let sum = |c: C| now[c as usize].saturating_sub(base[c as usize]);
        Some(MirrorSessionReport {
            name: m.name.clone(),
            target_group: self
                .cfg
                .target_groups
                .get(m.target_group)
                .map_or_else(String::new, |g| g.name.clone()),
            format: m.format.as_str().into(),
            vni: m.vni,
            copy_point: m.copy_point.as_str().into(),
            sample_one_in: m.sample_one_in,
            snap_length: m.snap_length,
            packets: sum(C::Packets),
            bytes: sum(C::Bytes),
            no_sensor: sum(C::NoSensor),
            no_buffer: sum(C::NoBuffer),
            tx_full: sum(C::TxFull),
            settings: self.cfg.mirror_session_spec(i),
        })
    }

    fn mirror_index(&self, name: &str) -> ControlResult<usize> {
        self.cfg
            .mirror_sessions
            .iter()
            .position(|m| m.name == name)
            .ok_or_else(|| ControlError::NotFound {
                what: format!("mirror session {name:?}"),
            })
    }

    fn create_mirror(&mut self, spec: MirrorSessionSpec) -> ControlResult<MirrorSessionReport> {
        let name = spec.name().to_owned();
        if self.mirror_index(&name).is_ok() {
            return Err(ControlError::Conflict {
                message: format!("mirror session {name:?} exists"),
            });
        }
        let i = self.cfg.mirror_sessions.len();
        let new = self.edited(&format!("mirror_sessions[{i}]."), |e| {
            e.add_mirror_session(spec);
            Ok(())
        })?;
        self.apply(new, "api")?;
        tracing::info!(session = %name, "mirror session created");
        self.mirror_index(&name)
            .ok()
            .and_then(|i| self.mirror_report(i))
            .ok_or_else(|| ControlError::NotFound {
                what: format!("mirror session {name:?}"),
            })
    }

    fn change_mirror(
        &mut self,
        name: &str,
        change: Change<MirrorSessionSpec>,
    ) -> ControlResult<MirrorSessionReport> {
        let i = self.mirror_index(name)?;
        if change.renames(name, MirrorSessionSpec::name) {
            return Err(ControlError::invalid(
                "name",
                format!("the session is {name:?}: a session keeps its name (delete it and create the new one)"),
            ));
        }
        let new = self.edited(&format!("mirror_sessions[{i}]."), |e| match change {
            Change::Replace(spec) => {
                e.set_mirror_session(i, spec);
                Ok(())
            }
            Change::Patch(p) => e.patch_mirror_session(i, &p).map(|_| ()),
        })?;
        self.apply(new, "api")?;
        tracing::info!(session = %name, "mirror session changed");
        self.mirror_report(i).ok_or_else(|| ControlError::NotFound {
            what: format!("mirror session {name:?}"),
        })
    }

    fn delete_mirror(&mut self, name: &str) -> ControlResult<MirrorSessionReport> {
        let i = self.mirror_index(name)?;
        let last = self.mirror_report(i);
        let new = self.edited("", |e| {
            e.remove_mirror_session(i);
            Ok(())
        })?;
        self.apply(new, "api")?;
        tracing::info!(session = %name, "mirror session removed");
        last.ok_or_else(|| ControlError::NotFound {
            what: format!("mirror session {name:?}"),
        })
    }

    /// A page of flows, worker by worker. Cursor: `WORKER.SLOT`.
    fn flows(&self, q: &FlowQuery) -> ControlResult<FlowPage> {
        let limit = q.limit.unwrap_or(FLOWS_DEFAULT_LIMIT);
        if limit == 0 || limit > FLOWS_MAX_LIMIT {
            return Err(ControlError::invalid(
                "limit",
                format!("{limit} is out of range 1..={FLOWS_MAX_LIMIT}"),
            ));
        }
        let snap = self.snapshot.load_full();
        let mut filter = FlowFilter {
            address: q.address.map(IpAddrBytes::from),
            port: q.port,
            ..FlowFilter::default()
        };
        if let Some(g) = &q.group {
            filter.group = Some(self.group_index(g)? as u16);
        }
        if let Some(a) = q.appliance {
            filter.appliance = Some(snap.appliance_by_addr(&IpAddrBytes::from(a)).ok_or_else(
                || ControlError::NotFound {
                    what: format!("appliance {a}"),
                },
            )?);
        }
        let (mut w, mut pos) = match &q.cursor {
            None => (0usize, 0usize),
            Some(c) => c
                .split_once('.')
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                .filter(|(a, _)| *a < self.dumps.len())
                .ok_or_else(|| {
                    ControlError::invalid(
                        "cursor",
                        format!("{c:?} is not a cursor of this gateway"),
                    )
                })?,
        };
        let mut flows: Vec<FlowInfo> = Vec::new();
        let (reply_tx, reply_rx) = crossbeam_channel::bounded::<FlowDumpReply>(1);
        while w < self.dumps.len() && flows.len() < limit {
            let req = FlowDumpRequest {
                cursor: DumpCursor::at(pos),
                filter,
                out: Vec::with_capacity(limit - flows.len()),
                reply: reply_tx.clone(),
            };
            self.dumps[w].send_timeout(req, DUMP_TIMEOUT).map_err(|_| {
                ControlError::Unavailable {
                    message: format!("worker {w} does not take flow-dump requests"),
                }
            })?;
            let page =
                reply_rx
                    .recv_timeout(DUMP_TIMEOUT)
                    .map_err(|_| ControlError::Unavailable {
                        message: format!("worker {w} did not answer a flow-dump request"),
                    })?;
            flows.extend(page.out.iter().map(|r| self.flow_info(&snap, w, r)));
            match page.next {
                Some(c) => pos = c.position(),
                None => {
                    w += 1;
                    pos = 0;
                }
            }
        }
        let next_cursor = (w < self.dumps.len()).then(|| format!("{w}.{pos}"));
        Ok(FlowPage { flows, next_cursor })
    }

    fn flow_info(&self, snap: &Snapshot, worker: usize, r: &FlowRecord) -> FlowInfo {
        let bypass = r.key.zone() != 0 && r.entry.is_bypass();
        let group = match self.cfg.target_groups.get(usize::from(r.entry.group)) {
            Some(g) if !bypass => g.name.clone(),
            _ => String::new(),
        };
        let endpoint = snap.endpoint(r.key.zone());
        let appliance = snap
            .appliances
            .get(usize::from(r.entry.appliance))
            .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.addr);
        FlowInfo {
            worker,
            group,
            appliance,
            protocol: r.key.protocol(),
            addr_a: r.key.lo_addr().to_ip_addr(),
            port_a: r.key.lo_port(),
            addr_b: r.key.hi_addr().to_ip_addr(),
            port_b: r.key.hi_port(),
            idle_s: r.idle,
            endpoint: endpoint.map(|e| e.name.clone()),
            rule: endpoint
                .and_then(|e| {
                    snap.rules
                        .get(usize::from(e.rule_index(r.entry.rule, &snap.rule_at)))
                })
                .map(|r| r.name.clone()),
            bypass,
        }
    }

    /// Logs, loudly, every target group left without a healthy appliance and what its
    /// traffic does now.
    fn log_groups_without_healthy(&self) {
        for g in &self.cfg.target_groups {
            let registered: Vec<_> = self
                .registry
                .registered()
                .filter(|(_, s)| s.group == g.name)
                .collect();
            let healthy = registered
                .iter()
                .filter(|(_, s)| s.health == HealthState::Healthy && s.target.weight > 0)
                .count();
            let initial = registered
                .iter()
                .filter(|(_, s)| s.health == HealthState::Initial)
                .count();
            if healthy == 0 && !registered.is_empty() {
                if g.on_below_minimum == OnBelowMinimum::FailOpen
                    && registered.iter().any(|(_, s)| s.target.weight > 0)
                {
                    // Below any minimum: its targets all serve (log_failovers says so).
                    continue;
                }
                match (g.on_all_unhealthy, initial) {
                    (OnAllUnhealthy::FailOpen, 0) => {
                        tracing::error!(group = %g.name, "no healthy appliance: FAIL-OPEN, new flows are forwarded uninspected")
                    }
                    (OnAllUnhealthy::FailClosed, 0) => {
                        tracing::error!(group = %g.name, "no healthy appliance: FAIL-CLOSED, new flows are dropped")
                    }
                    // Start, or targets just registered: expected, and over once one passes.
                    (OnAllUnhealthy::FailOpen, _) => {
                        tracing::warn!(group = %g.name, initial, "no healthy appliance yet (targets initial, waiting for their health checks): FAIL-OPEN, new flows are forwarded uninspected")
                    }
                    (OnAllUnhealthy::FailClosed, _) => {
                        tracing::warn!(group = %g.name, initial, "no healthy appliance yet (targets initial, waiting for their health checks): FAIL-CLOSED, new flows are dropped")
                    }
                }
            }
        }
    }

    /// Learns neighbours from the kernel's table on the exception-path interfaces and asks
    /// the kernel to resolve the ones still missing (targets and next hops). Returns whether
    /// the learned set changed.
    fn refresh_neighbors(&mut self) -> bool {
        let names: Vec<String> = self.kernel_ifs.iter().map(|(_, n)| n.clone()).collect();
        let learned = match crate::neighbors::read_kernel_neighbors(&names) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("reading the kernel neighbour table: {e}");
                return false;
            }
        };
        let snap = self.snapshot.load();
        let mut wanted: Vec<(IpAddr, usize)> = self
            .registry
            .slots()
            .iter()
            .filter(|s| s.state != SlotState::Gone && s.target.mac.is_none())
            .map(|s| (s.target.next_hop(), s.target.port))
            .collect();
        wanted.extend(
            self.cfg
                .routes
                .iter()
                .filter_map(|r| r.via.map(|v| (v, r.port))),
        );
        for (addr, port) in wanted {
            if snap.lookup_neighbor(&IpAddrBytes::from(addr)).is_none() {
                if let Some((_, ifname)) = self.kernel_ifs.iter().find(|(p, _)| *p == port) {
                    let _ = crate::neighbors::solicit(addr, ifname);
                }
            }
        }
        let new: Vec<(IpAddr, [u8; 6])> = learned.into_iter().map(|n| (n.addr, n.mac)).collect();
        if new != self.live.learned_neighbors {
            self.live.learned_neighbors = new;
            true
        } else {
            false
        }
    }

    /// Stops the health checker.
    pub fn stop(&mut self) {
        // Withdraws, then stops BIRD (the routers move traffic away before the data path
        // stops).
        if let Some(sp) = self.speaker.take() {
            sp.announce(false, Some(Withdrawn::Stopping.to_string()));
            drop(sp);
        }
        self.checker.stop();
    }
}

/// Top-level settings that differ between two configurations, by section (for the reload
/// report; targets are reported by the registry).
fn changed_settings(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if old.routes != new.routes {
        out.push("routes".into());
    }
    if old.neighbors != new.neighbors {
        out.push("neighbors".into());
    }
    if old.dataplane.stats_interval != new.dataplane.stats_interval {
        out.push("dataplane.stats_interval".into());
    }
    if old.mirror_sessions != new.mirror_sessions {
        out.push("mirror_sessions".into());
    }
    if old.endpoints != new.endpoints {
        out.push("endpoints".into());
    }
    for (i, (g, h)) in old.target_groups.iter().zip(&new.target_groups).enumerate() {
        let mut a = g.clone();
        let mut b = h.clone();
        a.targets.clear();
        b.targets.clear();
        if a.health_check != b.health_check {
            out.push(format!("target_groups[{i}].health_check"));
        }
        a.health_check = b.health_check.clone();
        if a != b {
            out.push(format!("target_groups[{i}]"));
        }
    }
    out
}

/// Health-check targets for every registered slot. Probes leave from the port's own address
/// when the port has a kernel interface (the exception path carries them), else from the
/// host's routing choice.
fn probe_targets(cfg: &Config, registry: &Registry) -> Vec<ProbeTarget> {
    registry
        .registered()
        .filter_map(|(slot, s)| {
            let g = cfg.target_groups.iter().find(|g| g.name == s.group)?;
            let port = cfg.ports.get(s.target.port)?;
            Some(ProbeTarget {
                slot,
                group: g.name.clone(),
                addr: s.target.address,
                check: g.health_check.clone(),
                source: port
                    .kernel_interface
                    .as_ref()
                    .and_then(|_| port.source_for(s.target.address)),
                tunnel: crate::data_path_probe::Tunnel {
                    vni: g.geneve_vni,
                    endpoint_id: g.endpoint_id,
                    attachment_id: g.attachment_id,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ManualClock;
    use crate::snapshot::ApplianceState;

    const CONFIG: &str = r#"
[dataplane]
worker_cpus = [1]
main_cpu = 0
flow_table_capacity = 4096
[[ports]]
name = "user"
device = "net_null0"
role = "user"
address = "10.1.0.1/16"
[[ports]]
name = "appliance"
device = "net_null1"
role = "appliance"
address = "10.0.2.1/24"
[[target_groups]]
name = "fw"
deregistration_delay_s = 60
[target_groups.health_check]
enabled = false
[[target_groups.targets]]
address = "10.0.2.11"
mac = "02:00:00:00:02:0b"
"#;

    fn start(config: &str) -> (ControlLoop, ManualClock, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "gwlb-control-loop-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gwlb.toml");
        std::fs::write(&path, config).unwrap();
        let clock = ManualClock::at(100);
        let ctl = ControlLoop::start(ControlSetup {
            cfg: Config::load(&path).unwrap(),
            config_path: Some(path.clone()),
            macs: vec![[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]],
            kernel_ifs: Vec::new(),
            stats: vec![Arc::new(WorkerStats::new(MAX_APPLIANCES))],
            dumps: Vec::new(),
            clock: Box::new(clock.clone()),
        })
        .unwrap();
        (ctl, clock, path)
    }

    fn spec(addr: &str, mac: Option<&str>, weight: Option<u16>) -> TargetSpec {
        TargetSpec {
            address: addr.parse().unwrap(),
            weight,
            port: None,
            mac: mac.map(Into::into),
        }
    }

    /// `Ok(state weight)` or `Err(kind field)`, as the table below writes outcomes.
    fn outcome(r: ControlResult<TargetInfo>) -> String {
        match r {
            Ok(t) => format!("ok {:?} {}", t.state, t.weight),
            Err(ControlError::Invalid { field, .. }) => format!("invalid {field}"),
            Err(ControlError::NotFound { .. }) => "not_found".into(),
            Err(ControlError::Conflict { .. }) => "conflict".into(),
            Err(e) => format!("{e:?}"),
        }
    }

    /// The state of every target of group `fw`: `address state weight`.
    fn targets(ctl: &ControlLoop) -> Vec<String> {
        ctl.groups()[0]
            .targets
            .iter()
            .map(|t| format!("{} {:?} {}", t.address, t.state, t.weight))
            .collect()
    }

    /// One step of [`apply_path_table`].
    type Step<'a> = Box<dyn Fn(&mut ControlLoop) -> ControlResult<TargetInfo> + 'a>;

    /// Register, deregister, re-weight, drain and their conflicts, applied one after another
    /// to one running loop: each step's outcome, then every target of the group. A rejected
    /// step changes nothing; a deregistered target drains for the group's delay, can come
    /// back while draining (same slot), and is gone once the delay is over.
    #[test]
    fn apply_path_table() {
        let (mut ctl, clock, _) = start(CONFIG);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let m50 = Some("02:00:00:00:02:32");
        #[rustfmt::skip]
        let steps: Vec<(&str, Step<'_>, &str, &[&str])> = vec![
            ("register .50", Box::new(move |c| c.register("fw", spec("10.0.2.50", m50, Some(20)))),
             "ok Healthy 20", &["10.0.2.11 Healthy 1", "10.0.2.50 Healthy 20"]),
            ("register .50 again", Box::new(move |c| c.register("fw", spec("10.0.2.50", m50, None))),
             "conflict", &["10.0.2.11 Healthy 1", "10.0.2.50 Healthy 20"]),
            ("register without a MAC", Box::new(|c| c.register("fw", spec("10.0.2.51", None, None))),
             "invalid mac", &["10.0.2.11 Healthy 1", "10.0.2.50 Healthy 20"]),
            ("register outside the appliance subnet", Box::new(|c| c.register("fw", spec("10.0.3.5", m50, None))),
             "invalid address", &["10.0.2.11 Healthy 1", "10.0.2.50 Healthy 20"]),
            ("register the port's own address", Box::new(|c| c.register("fw", spec("10.0.2.1", m50, None))),
             "invalid address", &["10.0.2.11 Healthy 1", "10.0.2.50 Healthy 20"]),
            ("register in an unknown group", Box::new(|c| c.register("nope", spec("10.0.2.52", m50, None))),
             "not_found", &["10.0.2.11 Healthy 1", "10.0.2.50 Healthy 20"]),
            ("weight 1001", Box::new(move |c| c.set_weight("fw", ip("10.0.2.50"), 1001)),
             "invalid weight", &["10.0.2.11 Healthy 1", "10.0.2.50 Healthy 20"]),
            ("weight 0", Box::new(move |c| c.set_weight("fw", ip("10.0.2.50"), 0)),
             "ok Healthy 0", &["10.0.2.11 Healthy 1", "10.0.2.50 Healthy 0"]),
            ("weight of an unknown target", Box::new(move |c| c.set_weight("fw", ip("10.0.2.99"), 5)),
             "not_found", &["10.0.2.11 Healthy 1", "10.0.2.50 Healthy 0"]),
            ("deregister .50", Box::new(move |c| c.deregister("fw", ip("10.0.2.50"))),
             "ok Draining 0", &["10.0.2.11 Healthy 1", "10.0.2.50 Draining 0"]),
            ("deregister .50 again", Box::new(move |c| c.deregister("fw", ip("10.0.2.50"))),
             "conflict", &["10.0.2.11 Healthy 1", "10.0.2.50 Draining 0"]),
            ("weight of a draining target", Box::new(move |c| c.set_weight("fw", ip("10.0.2.50"), 5)),
             "not_found", &["10.0.2.11 Healthy 1", "10.0.2.50 Draining 0"]),
            ("register .50 while it drains", Box::new(move |c| c.register("fw", spec("10.0.2.50", m50, Some(7)))),
             "ok Healthy 7", &["10.0.2.11 Healthy 1", "10.0.2.50 Healthy 7"]),
            ("deregister .11", Box::new(move |c| c.deregister("fw", ip("10.0.2.11"))),
             "ok Draining 1", &["10.0.2.50 Healthy 7", "10.0.2.11 Draining 1"]),
            ("deregister an unknown target", Box::new(move |c| c.deregister("fw", ip("10.0.2.98"))),
             "not_found", &["10.0.2.50 Healthy 7", "10.0.2.11 Draining 1"]),
        ];
        for (what, step, want, after) in &steps {
            assert_eq!(outcome(step(&mut ctl)), *want, "{what}");
            assert_eq!(targets(&ctl), *after, "after {what}");
        }
        // .11 has slot 0, .50 got slot 1 and came back from draining on it.
        assert_eq!(ctl.registry.find("fw", ip("10.0.2.50")), Some(1));
        // The drain runs for deregistration_delay_s of the loop's clock.
        let commands = crossbeam_channel::never();
        clock.advance(59);
        ctl.turn(&commands, Duration::ZERO);
        assert_eq!(
            targets(&ctl),
            ["10.0.2.50 Healthy 7", "10.0.2.11 Draining 1"]
        );
        clock.advance(2);
        ctl.turn(&commands, Duration::ZERO);
        assert_eq!(targets(&ctl), ["10.0.2.50 Healthy 7"]);
        ctl.stop();
    }

    /// [`CONFIG`] with its health check enabled (TCP, thresholds 3 and 2). The appliance
    /// port gets a kernel interface, so probes bind its address (10.0.2.1), which this host
    /// does not have: every probe is a local error, counted for nothing, and nothing leaves
    /// the machine; only the events a test injects change a state.
    fn checked_config() -> String {
        CONFIG
            .replace(
                "[target_groups.health_check]\nenabled = false\n",
                "[target_groups.health_check]\nenabled = true\ninterval_ms = 1000\ntimeout_ms = 500\nhealthy_threshold = 3\nunhealthy_threshold = 2\n",
            )
            .replace(
                "address = \"10.0.2.1/24\"\n",
                "address = \"10.0.2.1/24\"\nkernel_interface = \"gwt-none0\"\n",
            )
    }

    fn event(slot: u16, addr: &str, healthy: bool) -> HealthEvent {
        HealthEvent {
            slot,
            group: "fw".into(),
            addr: addr.parse().unwrap(),
            healthy,
            reason: if healthy {
                "3 consecutive successes: TCP connect ok".into()
            } else {
                "2 consecutive failures: connection refused".into()
            },
            latency: None,
        }
    }

    /// One step of [`initial_targets_take_no_flows_until_they_pass`]: what, the step, its
    /// outcome, every target after it, the slots Maglev can pick after it.
    type PickStep<'a> = (&'a str, Step<'a>, &'a str, &'a [&'a str], &'a [u16]);

    /// The slots group `fw`'s Maglev table can pick (for any hash).
    fn pickable(ctl: &ControlLoop) -> Vec<u16> {
        let mut slots = ctl.snapshot.load().groups[0].backends.clone();
        slots.sort_unstable();
        slots
    }

    /// Issue 18: with the health check enabled, a target starts `initial` at start, on API
    /// registration, on re-registration while draining and on a reload that adds it; it is
    /// not in the Maglev table (no new flows) and the node does not announce for a
    /// fail-closed group of initial targets, until the checker reports it healthy. Failures
    /// make it unhealthy; `initial_state = "healthy"` and a disabled check make targets
    /// healthy at once.
    #[test]
    fn initial_targets_take_no_flows_until_they_pass() {
        let (mut ctl, _clock, path) = start(&checked_config());
        let commands = crossbeam_channel::never();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let m50 = Some("02:00:00:00:02:32");
        let m60 = Some("02:00:00:00:02:3c");
        // Every worker has turned its loop: only the groups decide the announcement.
        ctl.stats[0].heartbeat.store(1, Relaxed);
        let announce = |ctl: &mut ControlLoop| routing::should_announce(&ctl.serve_state());
        let counts = |ctl: &ControlLoop| {
            let g = &ctl.groups()[0];
            (g.healthy_count, g.unhealthy_count, g.initial_count)
        };

        // At start: initial, not pickable, not announced.
        assert_eq!(targets(&ctl), ["10.0.2.11 Initial 1"]);
        assert_eq!(
            ctl.snapshot.load().appliances[0].state,
            ApplianceState::Initial
        );
        assert_eq!(pickable(&ctl), [] as [u16; 0]);
        assert_eq!(counts(&ctl), (0, 0, 1));
        assert_eq!(
            ctl.groups()[0].targets[0].reason.as_deref(),
            Some("registered: no new flows until 3 consecutive health checks pass")
        );
        assert_eq!(
            announce(&mut ctl),
            Err(Withdrawn::GroupCannotServe("fw".into()))
        );
        // Its checks pass: healthy, pickable, announced.
        ctl.health_event(event(0, "10.0.2.11", true));
        assert_eq!(targets(&ctl), ["10.0.2.11 Healthy 1"]);
        assert_eq!(pickable(&ctl), [0]);
        assert_eq!(counts(&ctl), (1, 0, 0));
        assert_eq!(announce(&mut ctl), Ok(()));

        #[rustfmt::skip]
        let steps: Vec<PickStep<'_>> = vec![
            ("register .50", Box::new(move |c| c.register("fw", spec("10.0.2.50", m50, Some(20)))),
             "ok Initial 20", &["10.0.2.11 Healthy 1", "10.0.2.50 Initial 20"], &[0]),
            ("its checks fail: initial -> unhealthy", Box::new(move |c| { c.health_event(event(1, "10.0.2.50", false)); c.target_info("fw", ip("10.0.2.50")) }),
             "ok Unhealthy 20", &["10.0.2.11 Healthy 1", "10.0.2.50 Unhealthy 20"], &[0]),
            ("deregister .50", Box::new(move |c| c.deregister("fw", ip("10.0.2.50"))),
             "ok Draining 20", &["10.0.2.11 Healthy 1", "10.0.2.50 Draining 20"], &[0]),
            ("register .50 while it drains: initial again", Box::new(move |c| c.register("fw", spec("10.0.2.50", m50, Some(20)))),
             "ok Initial 20", &["10.0.2.11 Healthy 1", "10.0.2.50 Initial 20"], &[0]),
            ("its checks pass", Box::new(move |c| { c.health_event(event(1, "10.0.2.50", true)); c.target_info("fw", ip("10.0.2.50")) }),
             "ok Healthy 20", &["10.0.2.11 Healthy 1", "10.0.2.50 Healthy 20"], &[0, 1]),
            ("a weight change keeps the state", Box::new(move |c| c.set_weight("fw", ip("10.0.2.50"), 7)),
             "ok Healthy 7", &["10.0.2.11 Healthy 1", "10.0.2.50 Healthy 7"], &[0, 1]),
            ("initial_state = healthy: registered healthy", Box::new(move |c| {
                c.set_health_check("fw", &HealthCheckPatch { initial_state: Some("healthy".into()), ..Default::default() })?;
                c.register("fw", spec("10.0.2.60", m60, None))
             }),
             "ok Healthy 1", &["10.0.2.11 Healthy 1", "10.0.2.50 Healthy 7", "10.0.2.60 Healthy 1"], &[0, 1, 2]),
            ("initial_state = nonsense", Box::new(move |c| {
                c.set_health_check("fw", &HealthCheckPatch { initial_state: Some("up".into()), ..Default::default() })?;
                c.target_info("fw", ip("10.0.2.60"))
             }),
             "invalid initial_state", &["10.0.2.11 Healthy 1", "10.0.2.50 Healthy 7", "10.0.2.60 Healthy 1"], &[0, 1, 2]),
        ];
        for (what, step, want, after, picks) in &steps {
            assert_eq!(outcome(step(&mut ctl)), *want, "{what}");
            assert_eq!(targets(&ctl), *after, "after {what}");
            assert_eq!(pickable(&ctl), *picks, "after {what}");
        }

        // A reload that adds a target (the file's health check: initial_state default).
        let with_target = checked_config()
            + "[[target_groups.targets]]\naddress = \"10.0.2.12\"\nmac = \"02:00:00:00:02:0c\"\n";
        std::fs::write(&path, &with_target).unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        ctl.request_reload(Some(tx));
        let report = loop {
            ctl.turn(&commands, Duration::from_millis(10));
            if let Ok(r) = rx.try_recv() {
                break r;
            }
        };
        assert_eq!(report.unwrap().registered, ["fw/10.0.2.12"]);
        // .50 and .60 are not in the file: draining.
        assert_eq!(
            targets(&ctl),
            [
                "10.0.2.11 Healthy 1",
                "10.0.2.12 Initial 1",
                "10.0.2.50 Draining 7",
                "10.0.2.60 Draining 1"
            ]
        );
        assert_eq!(pickable(&ctl), [0]);
        assert_eq!(counts(&ctl), (1, 0, 1));

        // Disabling the check makes the initial target healthy at once (the checker says so).
        ctl.set_health_check(
            "fw",
            &HealthCheckPatch {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
        ctl.turn(&commands, Duration::ZERO);
        assert_eq!(
            targets(&ctl)[..2],
            ["10.0.2.11 Healthy 1", "10.0.2.12 Healthy 1"]
        );
        assert_eq!(counts(&ctl), (2, 0, 0));
        ctl.stop();
    }

    /// At start the node announces once every target has a verdict (here a fail-open group,
    /// so that only the wait decides); targets registered later never withdraw it.
    #[test]
    fn at_start_the_node_waits_for_every_verdict() {
        let text = checked_config().replace(
            "deregistration_delay_s = 60",
            "deregistration_delay_s = 60\non_all_unhealthy = \"fail_open\"",
        )
            + "[[target_groups.targets]]\naddress = \"10.0.2.12\"\nmac = \"02:00:00:00:02:0c\"\n";
        let (mut ctl, _clock, _) = start(&text);
        ctl.stats[0].heartbeat.store(1, Relaxed);
        let announce = |ctl: &mut ControlLoop| routing::should_announce(&ctl.serve_state());
        assert_eq!(
            targets(&ctl),
            ["10.0.2.11 Initial 1", "10.0.2.12 Initial 1"]
        );
        assert_eq!(announce(&mut ctl), Err(Withdrawn::HealthPending(2)));
        ctl.health_event(event(0, "10.0.2.11", true));
        assert_eq!(announce(&mut ctl), Err(Withdrawn::HealthPending(1)));
        ctl.health_event(event(1, "10.0.2.12", false));
        assert_eq!(announce(&mut ctl), Ok(()));
        let t = ctl
            .register("fw", spec("10.0.2.50", Some("02:00:00:00:02:32"), None))
            .unwrap();
        assert_eq!(t.state, TargetState::Initial);
        assert_eq!(announce(&mut ctl), Ok(()), "a later registration");
        ctl.stop();
    }

    /// The start's wait for verdicts ends at the latest when the checks must have decided:
    /// here interval 100 ms × (3 + 1) × 1.1 + timeout 50 ms = 490 ms (probes of this rig
    /// never decide anything).
    #[test]
    fn the_start_wait_for_verdicts_is_bounded() {
        let text = checked_config()
            .replace(
                "interval_ms = 1000\ntimeout_ms = 500",
                "interval_ms = 100\ntimeout_ms = 50",
            )
            .replace(
                "deregistration_delay_s = 60",
                "deregistration_delay_s = 60\non_all_unhealthy = \"fail_open\"",
            );
        let (mut ctl, _clock, _) = start(&text);
        ctl.stats[0].heartbeat.store(1, Relaxed);
        assert_eq!(
            routing::should_announce(&ctl.serve_state()),
            Err(Withdrawn::HealthPending(1))
        );
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(targets(&ctl), ["10.0.2.11 Initial 1"]);
        assert_eq!(routing::should_announce(&ctl.serve_state()), Ok(()));
        ctl.stop();
    }

    /// Reloads: what each kind of file change does (applied, or rejected naming the field
    /// with the running configuration kept).
    #[test]
    fn reload_table() {
        let (mut ctl, _clock, path) = start(CONFIG);
        let with_target = CONFIG.to_owned()
            + "[[target_groups.targets]]\naddress = \"10.0.2.12\"\nmac = \"02:00:00:00:02:0c\"\n";
        #[rustfmt::skip]
        let cases: Vec<(&str, String, &str)> = vec![
            ("unchanged", CONFIG.into(), "ok +[] -[] ~[]"),
            ("a target added", with_target.clone(), "ok +[fw/10.0.2.12] -[] ~[]"),
            ("a weight changed", with_target.replace("address = \"10.0.2.12\"", "address = \"10.0.2.12\"\nweight = 5"), "ok +[] -[] ~[fw/10.0.2.12]"),
            ("a target removed", CONFIG.into(), "ok +[] -[fw/10.0.2.12] ~[]"),
            ("a group added", CONFIG.to_owned() + "[[target_groups]]\nname = \"ids\"\nuser_ports = []\n", "invalid target_groups"),
            ("a port's address changed", CONFIG.replace("10.1.0.1/16", "10.1.0.2/16"), "invalid ports"),
            ("a bad value", CONFIG.replace("deregistration_delay_s = 60", "deregistration_delay_s = 7200"), "invalid target_groups[0].deregistration_delay_s"),
            ("not TOML", "[[ports]\n".into(), "invalid config"),
            ("no file", String::new(), "invalid config"),
        ];
        let commands = crossbeam_channel::never();
        for (what, text, want) in cases {
            if text.is_empty() {
                std::fs::remove_file(&path).unwrap();
            } else {
                std::fs::write(&path, &text).unwrap();
            }
            let before = ctl.groups();
            let (tx, rx) = crossbeam_channel::bounded(1);
            ctl.request_reload(Some(tx));
            let got = loop {
                ctl.turn(&commands, Duration::from_millis(10));
                if let Ok(r) = rx.try_recv() {
                    break r;
                }
            };
            let got = match got {
                Ok(r) => format!(
                    "ok +[{}] -[{}] ~[{}]",
                    r.registered.join(","),
                    r.deregistered.join(","),
                    r.reweighted.join(",")
                ),
                Err(ControlError::Invalid { field, .. }) => format!("invalid {field}"),
                Err(e) => format!("{e:?}"),
            };
            assert_eq!(got, want, "{what}");
            if !want.starts_with("ok") {
                assert_eq!(ctl.groups(), before, "{what}: nothing changed");
            }
        }
        ctl.stop();
    }
}
