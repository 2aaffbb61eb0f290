//! Service-insertion policy as the data path reads it: which endpoint (tenant) a frame
//! belongs to ([`EndpointView::claims`]), and what its steering rules decide for a new flow
//! ([`decide`]). Built from the configuration once per snapshot; pure functions, no DPDK.
//!
//! Rules are evaluated once per new flow, first match wins, and the decision is kept in the
//! flow entry (its group, or [`crate::flow_table::FlowEntry::BYPASS`], and the rule's id):
//! established packets never look at the rules. A drop decision is not stored
//! (a flood of dropped flows must not fill the table): each packet of a dropped flow is
//! decided again.
//!
//! Rule indices: index 0 is the traffic of target groups' `user_ports` (no endpoint); every
//! endpoint then has its rules, in order, followed by its default action (named
//! `"default"`). Indices move whenever a change inserts or removes a rule, so nothing that
//! outlives a snapshot keeps them: flow entries and counters use the rule's id
//! ([`RuleIds`]), which the control loop gives each (endpoint, rule) name and keeps while the
//! rule exists, wherever it moves. An endpoint's counters are the sum of its rules'.
//!
//! Zones: a flow's key carries its endpoint's zone, a number the control loop gives each
//! endpoint name once ([`ZoneMap`]) and never reuses, so that a reload that adds, removes
//! or reorders endpoints never hands one tenant's flow entries to another.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Range;

use crate::config::{self, Config, RuleAction, RuleDirection};
use crate::decap::VlanTags;
use crate::encap::AwsIdentity;
use crate::flow::Stickiness;
use crate::mirror::net_mask;
use crate::parse::{proto, ParsedPacket};
use crate::wire::IpAddrBytes;

/// What a rule does with a flow, with group indices as the snapshot uses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Encapsulate toward this target group.
    Inspect(u16),
    /// Encapsulate toward each of these groups in turn ([`config::Chain`]).
    Chain(config::Chain),
    /// Forward uninspected through the endpoint's routes.
    Bypass,
    /// Drop (answer TCP with a RST when `reset`).
    Drop {
        /// Answer TCP with a RST.
        reset: bool,
    },
}

impl Action {
    /// The file's name of the action (`inspect`, `bypass`, `drop`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Inspect(g) => RuleAction::Inspect(g as usize).as_str(),
            Action::Chain(c) => RuleAction::Chain(c).as_str(),
            Action::Bypass => RuleAction::Bypass.as_str(),
            Action::Drop { reset } => RuleAction::Drop { reset }.as_str(),
        }
    }
}

impl From<RuleAction> for Action {
    fn from(a: RuleAction) -> Self {
        match a {
            RuleAction::Inspect(g) => Action::Inspect(g as u16),
            RuleAction::Chain(c) => Action::Chain(c),
            RuleAction::Bypass => Action::Bypass,
            RuleAction::Drop { reset } => Action::Drop { reset },
        }
    }
}

/// A set of prefixes as (network, mask) pairs over 128-bit addresses (IPv4 mapped).
#[derive(Clone, Debug, Default)]
struct Prefixes(Vec<(u128, u128)>);

impl Prefixes {
    fn new(nets: &[crate::wire::IpNet]) -> Self {
        Prefixes(nets.iter().map(net_mask).collect())
    }

    /// Empty matches everything.
    #[inline]
    fn admits(&self, a: &IpAddrBytes) -> bool {
        let v = u128::from_be_bytes(a.0);
        self.0.is_empty() || self.0.iter().any(|&(net, mask)| v & mask == net)
    }

    #[inline]
    fn holds(&self, a: &IpAddrBytes) -> bool {
        let v = u128::from_be_bytes(a.0);
        self.0.iter().any(|&(net, mask)| v & mask == net)
    }
}

/// Port ranges; empty matches every packet, a non-empty set only TCP and UDP.
#[derive(Clone, Debug, Default)]
struct Ports(Vec<(u16, u16)>);

impl Ports {
    #[inline]
    fn admits(&self, l4: bool, port: u16) -> bool {
        self.0.is_empty() || (l4 && self.0.iter().any(|&(a, b)| a <= port && port <= b))
    }
}

/// A steering rule's match, compiled.
#[derive(Clone, Debug)]
pub struct RuleMatch {
    sources: Prefixes,
    destinations: Prefixes,
    /// Bit `n` of word `n / 64`: IP protocol `n` matches.
    protocols: [u64; 4],
    source_ports: Ports,
    destination_ports: Ports,
    both_ways: bool,
}

impl RuleMatch {
    /// Matches every flow (an endpoint's default action).
    fn any() -> Self {
        RuleMatch {
            sources: Prefixes::default(),
            destinations: Prefixes::default(),
            protocols: [u64::MAX; 4],
            source_ports: Ports::default(),
            destination_ports: Ports::default(),
            both_ways: false,
        }
    }

    fn new(r: &config::Rule) -> Self {
        let mut protocols = [0u64; 4];
        if r.protocols.is_empty() {
            protocols = [u64::MAX; 4];
        }
        for &p in &r.protocols {
            protocols[usize::from(p / 64)] |= 1 << (p % 64);
        }
        let ports = |r: &[std::ops::RangeInclusive<u16>]| {
            Ports(r.iter().map(|r| (*r.start(), *r.end())).collect())
        };
        RuleMatch {
            sources: Prefixes::new(&r.sources),
            destinations: Prefixes::new(&r.destinations),
            protocols,
            source_ports: ports(&r.source_ports),
            destination_ports: ports(&r.destination_ports),
            both_ways: r.direction == RuleDirection::Both,
        }
    }

    /// Whether the flow whose first packet is `p` matches. An ICMP error is matched on the
    /// flow it quotes, as the flow table keys it.
    #[inline]
    pub fn matches(&self, p: &ParsedPacket) -> bool {
        let (src, dst, sport, dport, protocol, l4) = match p.embedded {
            // The error travels back to the quoted packet's source: its flow was opened by
            // the quoted packet.
            Some(e) => (
                e.src,
                e.dst,
                e.src_port,
                e.dst_port,
                e.protocol,
                !e.fragmented && matches!(e.protocol, proto::TCP | proto::UDP),
            ),
            None => (
                p.src,
                p.dst,
                p.src_port,
                p.dst_port,
                p.protocol,
                // No fragment is matched on ports: the flow table keys every fragment on
                // the 3-tuple, so a decision stored for one holds for all of them.
                p.l4_offset.is_some()
                    && p.fragment.is_none()
                    && matches!(p.protocol, proto::TCP | proto::UDP),
            ),
        };
        if self.protocols[usize::from(protocol / 64)] & (1 << (protocol % 64)) == 0 {
            return false;
        }
        let one_way = |s: &IpAddrBytes, d: &IpAddrBytes, sp: u16, dp: u16| {
            self.sources.admits(s)
                && self.destinations.admits(d)
                && self.source_ports.admits(l4, sp)
                && self.destination_ports.admits(l4, dp)
        };
        one_way(&src, &dst, sport, dport) || (self.both_ways && one_way(&dst, &src, dport, sport))
    }
}

/// One rule as the snapshot holds it.
#[derive(Clone, Debug)]
pub struct RuleView {
    /// The rule's name (`"default"` for an endpoint's default action, `"user_ports"` for
    /// index 0).
    pub name: String,
    /// Its id ([`RuleIds`]): what flow entries keep and counters are kept by.
    pub id: u16,
    /// Its endpoint's zone (0 for index 0).
    pub zone: u16,
    /// What it matches.
    pub matcher: RuleMatch,
    /// What it does.
    pub action: Action,
}

/// One next hop of an endpoint, longest prefix first.
#[derive(Clone, Copy, Debug)]
pub struct EndpointRouteView {
    net: u128,
    mask: u128,
    /// Egress port.
    pub port: u16,
    /// Next-hop MAC.
    pub mac: [u8; 6],
}

/// An endpoint as the data path reads it.
#[derive(Clone, Debug)]
pub struct EndpointView {
    /// Its name.
    pub name: String,
    /// Its zone ([`ZoneMap`]; flow keys carry it).
    pub zone: u16,
    /// Bit `p`: arrives on port `p` (ports 0-63).
    ports: u64,
    /// The VLAN tags its frames carry, and those its egress frames get.
    pub tags: VlanTags,
    prefixes: Prefixes,
    /// Stickiness of its flows' keys (its groups share it).
    pub stickiness: Stickiness,
    /// What its encapsulations carry.
    pub identity: AwsIdentity,
    /// Its rules, then its default action, as indices into the snapshot's rules.
    pub rules: Range<u16>,
    /// The id of its default action (the last of `rules`).
    pub default_id: u16,
    /// Its rules (not the default) by the address blocks they match.
    pub index: RuleIndex,
    /// The group whose idle timeouts its bypassed flows get (its first group; 0 if none).
    pub timeout_group: u16,
    /// Its routes, longest prefix first (empty: the node's routes, untagged).
    pub routes: Vec<EndpointRouteView>,
}

impl EndpointView {
    /// Whether a frame parsed as `p`, arriving on `in_port`, belongs to this endpoint.
    #[inline]
    pub fn claims(&self, p: &ParsedPacket, in_port: u16) -> bool {
        in_port < 64
            && self.ports & (1 << in_port) != 0
            && p.vlan_count == self.tags.count
            && p.vlan_ids[..usize::from(p.vlan_count.min(2))]
                == self.tags.ids[..usize::from(self.tags.count.min(2))]
            && (self.prefixes.0.is_empty()
                || self.prefixes.holds(&p.src)
                || self.prefixes.holds(&p.dst))
    }

    /// The global index of the rule with id `id` (what a flow entry keeps), `rule_at` being
    /// the snapshot's [`Policy::rule_at`]; a rule the endpoint no longer has (a change
    /// removed it) is its default.
    #[inline]
    pub fn rule_index(&self, id: u16, rule_at: &[u16]) -> u16 {
        match rule_at.get(usize::from(id)) {
            Some(&i) if self.rules.contains(&i) => i,
            _ => self.rules.end.saturating_sub(1),
        }
    }

    /// The id an established flow whose entry keeps `id` is counted under: its rule's while
    /// the endpoint has it, else the endpoint's default's ([`EndpointView::rule_index`]).
    #[inline]
    pub fn counted_id(&self, id: u16, rule_at: &[u16]) -> u16 {
        match rule_at.get(usize::from(id)) {
            Some(i) if self.rules.contains(i) => id,
            _ => self.default_id,
        }
    }

    /// The endpoint's next hop for `dst`: `None` when it has no route for it (or no routes).
    #[inline]
    pub fn next_hop(&self, dst: &IpAddrBytes) -> Option<&EndpointRouteView> {
        let bits = u128::from_be_bytes(dst.0);
        self.routes.iter().find(|r| bits & r.mask == r.net)
    }
}

/// The rule index and action for the new flow whose first packet is `p`, of endpoint `ep`:
/// its first matching rule, else its default action (the last of its range). Only the
/// rules [`RuleIndex`] lists for the packet's addresses are tried.
#[inline]
pub fn decide(rules: &[RuleView], ep: &EndpointView, p: &ParsedPacket) -> (u16, Action) {
    let default = ep.rules.end - 1;
    let i = ep.index.first_match(rules, p).unwrap_or(default);
    (i, rules[usize::from(i)].action)
}

/// The address blocks rules are indexed by: IPv4 /24 and /16, IPv6 /64 and /32 (lengths in
/// the 128-bit space, IPv4 mapped).
const LEVELS_V4: [u32; 2] = [120, 112];
const LEVELS_V6: [u32; 2] = [64, 32];

fn top(level: u32) -> u128 {
    u128::MAX << (128 - level)
}

fn is_v4_mapped(a: u128) -> bool {
    a >> 32 == 0xffff
}

/// The index block of a prefix (network, mask): the longest level it covers, or `None` when
/// it is shorter than them all.
fn block_of(net: u128, mask: u128) -> Option<(u32, u128)> {
    let len = mask.count_ones();
    let levels = if is_v4_mapped(net) && len >= 96 {
        LEVELS_V4
    } else {
        LEVELS_V6
    };
    levels
        .into_iter()
        .find(|&l| len >= l)
        .map(|l| (l, net & top(l)))
}

/// An endpoint's rules by address block, so that a new flow tries only the rules that can
/// match its addresses, not all of them (10,000 rules: a few binary searches). A rule whose
/// sources all fall in blocks is listed under them; else one whose destinations do; else it
/// is tried for every flow (`any`). Sound for both directions: a rule listed by its sources
/// is looked up with the packet's source and, for rules that match both ways, destination.
#[derive(Clone, Debug, Default)]
pub struct RuleIndex {
    /// (level, block) -> rule indices (ascending), sorted by key.
    by_source: Vec<((u32, u128), Vec<u16>)>,
    by_destination: Vec<((u32, u128), Vec<u16>)>,
    any: Vec<u16>,
}

impl RuleIndex {
    fn new(rules: &[RuleView], range: Range<u16>) -> Self {
        let mut by_source: Vec<((u32, u128), u16)> = Vec::new();
        let mut by_destination: Vec<((u32, u128), u16)> = Vec::new();
        let mut any = Vec::new();
        for i in range {
            let m = &rules[usize::from(i)].matcher;
            let blocks = |p: &Prefixes| -> Option<Vec<(u32, u128)>> {
                if p.0.is_empty() {
                    return None;
                }
                p.0.iter().map(|&(n, k)| block_of(n, k)).collect()
            };
            if let Some(b) = blocks(&m.sources) {
                by_source.extend(b.into_iter().map(|k| (k, i)));
            } else if let Some(b) = blocks(&m.destinations) {
                by_destination.extend(b.into_iter().map(|k| (k, i)));
            } else {
                any.push(i);
            }
        }
        let group = |mut v: Vec<((u32, u128), u16)>| {
            v.sort();
            v.dedup();
            let mut out: Vec<((u32, u128), Vec<u16>)> = Vec::new();
            for (k, i) in v {
                match out.last_mut() {
                    Some((last, list)) if *last == k => list.push(i),
                    _ => out.push((k, vec![i])),
                }
            }
            out
        };
        RuleIndex {
            by_source: group(by_source),
            by_destination: group(by_destination),
            any,
        }
    }

    /// The first rule (lowest index) that matches `p`, among those its addresses may match.
    pub fn first_match(&self, rules: &[RuleView], p: &ParsedPacket) -> Option<u16> {
        let (src, dst) = match p.embedded {
            Some(e) => (e.src, e.dst),
            None => (p.src, p.dst),
        };
        let mut best: Option<u16> = None;
        let try_list = |list: &[u16], best: &mut Option<u16>| {
            for &i in list {
                if best.is_some_and(|b| i >= b) {
                    return;
                }
                if rules[usize::from(i)].matcher.matches(p) {
                    *best = Some(i);
                    return;
                }
            }
        };
        try_list(&self.any, &mut best);
        for (map, addrs) in [
            (&self.by_source, [src, dst]),
            (&self.by_destination, [dst, src]),
        ] {
            if map.is_empty() {
                continue;
            }
            for a in addrs {
                let v = u128::from_be_bytes(a.0);
                let levels = if is_v4_mapped(v) {
                    LEVELS_V4
                } else {
                    LEVELS_V6
                };
                for l in levels {
                    let key = (l, v & top(l));
                    if let Ok(k) = map.binary_search_by(|(x, _)| x.cmp(&key)) {
                        try_list(&map[k].1, &mut best);
                    }
                }
            }
        }
        best
    }
}

/// The zone of every endpoint name, kept by the control loop across reloads: a name keeps
/// its zone for as long as the process runs, and a zone is never given to another name
/// (until 65,534 names have been used, when the lowest unused ones are).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZoneMap {
    zones: Vec<(String, u16)>,
    next: u16,
}

impl ZoneMap {
    /// Gives every endpoint of `cfg` that has none a zone.
    pub fn assign(&mut self, cfg: &Config) {
        for e in &cfg.endpoints {
            if self.zone(&e.name).is_some() {
                continue;
            }
            let zone = if self.next < u16::MAX - 1 {
                self.next += 1;
                self.next
            } else {
                // Every number has been used once: forget the names `cfg` no longer has and
                // take the lowest free zone.
                self.zones
                    .retain(|(n, _)| cfg.endpoints.iter().any(|e| &e.name == n));
                (1..u16::MAX)
                    .find(|z| self.zones.iter().all(|(_, y)| y != z))
                    .unwrap_or(u16::MAX)
            };
            self.zones.push((e.name.clone(), zone));
        }
    }

    /// The zone of endpoint `name`.
    pub fn zone(&self, name: &str) -> Option<u16> {
        self.zones.iter().find(|(n, _)| n == name).map(|&(_, z)| z)
    }

    /// This map with `cfg`'s endpoints assigned.
    pub fn assigned(&self, cfg: &Config) -> ZoneMap {
        let mut m = self.clone();
        m.assign(cfg);
        m
    }
}

/// The id of every steering rule by endpoint and rule name (an endpoint's default action is
/// its rule `"default"`), kept by the control loop across changes like [`ZoneMap`]: a rule
/// keeps its id while it exists, wherever a change moves it, so established flows stay its
/// own and its counters follow it. Id 0 is the groups' own user traffic (`user_ports`).
///
/// Ids never given are given first. Once all [`RuleIds::COUNT`] have been used, a new rule
/// gets the id freed longest ago; a rule removed and added again before its id is reused
/// gets its id back. An id given to another rule of the same endpoint hands that rule the
/// removed rule's remaining flows (their counts, not their decision: entries keep their
/// group); flows of another endpoint's rule count under their own default.
#[derive(Clone, Debug, Default)]
pub struct RuleIds {
    /// Endpoint name -> rule name -> id: live rules, and removed ones whose id is not reused.
    by_name: HashMap<String, HashMap<String, u16>>,
    /// By id, who holds it (`None`: id 0, and ids never given).
    owners: Vec<Option<RuleIdOwner>>,
    /// Ids freed by removed rules with when (`frees` then), longest free first; an entry
    /// whose id was taken back since is stale (its owner's `freed` differs) and skipped.
    free: VecDeque<(u16, u64)>,
    /// Frees so far.
    frees: u64,
}

/// The rule holding an id.
#[derive(Clone, Debug)]
struct RuleIdOwner {
    endpoint: String,
    rule: String,
    /// The rule is configured now.
    live: bool,
    /// When the id was last freed ([`RuleIds::frees`]).
    freed: u64,
}

impl RuleIds {
    /// How many ids there are: 0, and one per rule and endpoint default validation allows.
    pub const COUNT: usize = 1 + config::MAX_RULES + config::MAX_ENDPOINTS;

    /// The (endpoint, rule) names `cfg` configures, defaults included.
    fn configured(cfg: &Config) -> impl Iterator<Item = (&str, &str)> {
        cfg.endpoints.iter().flat_map(|e| {
            e.rules
                .iter()
                .map(|r| r.name.as_str())
                .chain(std::iter::once("default"))
                .map(move |r| (e.name.as_str(), r))
        })
    }

    /// Frees the ids of rules `cfg` no longer has and gives every rule of `cfg` its id.
    /// Returns the ids given to rules that had none (their counters start from what the
    /// id's counters hold now).
    pub fn assign(&mut self, cfg: &Config) -> Vec<u16> {
        if self.owners.is_empty() {
            self.owners.push(None); // id 0: user_ports
        }
        let wanted: HashSet<(&str, &str)> = Self::configured(cfg).collect();
        for (id, o) in self.owners.iter_mut().enumerate() {
            let Some(o) = o else { continue };
            let now = wanted.contains(&(o.endpoint.as_str(), o.rule.as_str()));
            if o.live && !now {
                self.frees += 1;
                o.freed = self.frees;
                self.free.push_back((id as u16, self.frees));
            }
            o.live = now;
        }
        if self.free.len() > 2 * Self::COUNT {
            let owners = &self.owners;
            self.free.retain(|&(id, at)| Self::is_free(owners, id, at));
        }
        let mut given = Vec::new();
        for (e, r) in Self::configured(cfg) {
            if self.id(e, r).is_some() {
                continue;
            }
            let Some(id) = self.take() else {
                // More rules than ids: validation's limits prevent it.
                continue;
            };
            if let Some(old) = self.owners[usize::from(id)].take() {
                if let Some(m) = self.by_name.get_mut(&old.endpoint) {
                    m.remove(&old.rule);
                }
            }
            self.by_name
                .entry(e.to_owned())
                .or_default()
                .insert(r.to_owned(), id);
            self.owners[usize::from(id)] = Some(RuleIdOwner {
                endpoint: e.to_owned(),
                rule: r.to_owned(),
                live: true,
                freed: 0,
            });
            given.push(id);
        }
        given
    }

    /// Whether the free-list entry `(id, at)` still stands.
    fn is_free(owners: &[Option<RuleIdOwner>], id: u16, at: u64) -> bool {
        matches!(owners.get(usize::from(id)), Some(Some(o)) if !o.live && o.freed == at)
    }

    /// An id for a new rule: one never given, else the longest free.
    fn take(&mut self) -> Option<u16> {
        if self.owners.len() < Self::COUNT {
            self.owners.push(None);
            return Some(self.owners.len() as u16 - 1);
        }
        while let Some((id, at)) = self.free.pop_front() {
            if Self::is_free(&self.owners, id, at) {
                return Some(id);
            }
        }
        None
    }

    /// The id of rule `rule` of endpoint `endpoint` (`"default"` for its default action).
    pub fn id(&self, endpoint: &str, rule: &str) -> Option<u16> {
        self.by_name.get(endpoint)?.get(rule).copied()
    }

    /// These ids with `cfg`'s rules assigned.
    pub fn assigned(&self, cfg: &Config) -> RuleIds {
        let mut m = self.clone();
        m.assign(cfg);
        m
    }
}

/// Whether endpoint `e` may have flows on group `gi`'s appliances.
fn reaches(cfg: &Config, e: &config::Endpoint, gi: usize) -> bool {
    e.groups()
        .any(|g| config::groups_carried_by(&cfg.target_groups, gi).any(|x| x == g))
}

/// The endpoints and rules of a configuration, as a snapshot holds them ([`build`]).
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// The endpoints, in the file's order.
    pub endpoints: Vec<EndpointView>,
    /// Every rule (module docs: indices).
    pub rules: Vec<RuleView>,
    /// Per port, the zones of the endpoints arriving there.
    pub port_zones: Vec<Vec<u16>>,
    /// By zone, the endpoint's index + 1 (0: none).
    pub zone_index: Vec<u16>,
    /// By rule id, the rule's index (`u16::MAX`: no rule has the id).
    pub rule_at: Vec<u16>,
}

/// The endpoints and rules of `cfg` with the zones of `zones` and the rule ids of `ids`
/// (which must hold every endpoint's and rule's: [`ZoneMap::assigned`],
/// [`RuleIds::assigned`]).
pub fn build(cfg: &Config, zones: &ZoneMap, ids: &RuleIds) -> Policy {
    let id_of = |e: &str, r: &str| ids.id(e, r).unwrap_or(0);
    let mut rules = vec![RuleView {
        name: "user_ports".to_owned(),
        id: 0,
        zone: 0,
        matcher: RuleMatch::any(),
        action: Action::Bypass,
    }];
    let mut endpoints = Vec::with_capacity(cfg.endpoints.len());
    let mut port_zones = vec![Vec::new(); cfg.ports.len()];
    let mut zone_index = Vec::new();
    for (i, e) in cfg.endpoints.iter().enumerate() {
        let zone = zones.zone(&e.name).unwrap_or(u16::MAX);
        if zone_index.len() <= usize::from(zone) {
            zone_index.resize(usize::from(zone) + 1, 0);
        }
        zone_index[usize::from(zone)] = i as u16 + 1;
        let start = rules.len() as u16;
        for r in &e.rules {
            rules.push(RuleView {
                name: r.name.clone(),
                id: id_of(&e.name, &r.name),
                zone,
                matcher: RuleMatch::new(r),
                action: r.action.into(),
            });
        }
        let default_id = id_of(&e.name, "default");
        rules.push(RuleView {
            name: "default".to_owned(),
            id: default_id,
            zone,
            matcher: RuleMatch::any(),
            action: e.default_action.into(),
        });
        let first_group = e.groups().next();
        let mut routes: Vec<EndpointRouteView> = e
            .routes
            .iter()
            .map(|r| {
                let (net, mask) = net_mask(&r.prefix);
                EndpointRouteView {
                    net,
                    mask,
                    port: r.port as u16,
                    mac: r.mac.0,
                }
            })
            .collect();
        // Longest prefix first (a stable sort keeps the file's order among equals).
        routes.sort_by_key(|r| std::cmp::Reverse(r.mask.count_ones()));
        let mut ids = [0u16; 2];
        for (d, &v) in ids.iter_mut().zip(&e.vlan) {
            *d = v;
        }
        for &p in &e.ports {
            port_zones[p].push(zone);
        }
        endpoints.push(EndpointView {
            name: e.name.clone(),
            zone,
            ports: e
                .ports
                .iter()
                .filter(|&&p| p < 64)
                .fold(0, |acc, &p| acc | 1 << p),
            tags: VlanTags {
                count: e.vlan.len() as u8,
                ids,
            },
            prefixes: Prefixes::new(&e.prefixes),
            stickiness: first_group
                .map_or_else(Stickiness::default, |g| cfg.target_groups[g].stickiness),
            identity: AwsIdentity {
                vni: e.geneve_vni,
                endpoint_id: e.endpoint_id,
                attachment_id: e.attachment_id,
            },
            index: RuleIndex::new(&rules, start..rules.len() as u16 - 1),
            rules: start..rules.len() as u16,
            default_id,
            timeout_group: first_group.unwrap_or(0) as u16,
            routes,
        });
    }
    let mut rule_at = vec![
        u16::MAX;
        rules
            .iter()
            .map(|r| usize::from(r.id) + 1)
            .max()
            .unwrap_or(1)
    ];
    for (i, r) in rules.iter().enumerate() {
        rule_at[usize::from(r.id)] = i as u16;
    }
    Policy {
        endpoints,
        rules,
        port_zones,
        zone_index,
        rule_at,
    }
}

/// How a group's appliances' returns name their endpoint: (VNI, endpoint id, zone).
#[derive(Clone, Debug, Default)]
pub struct ReturnZones {
    /// The endpoints this group inspects for (also as a failover group).
    zones: Vec<(u32, u64, u16)>,
    /// Groups' own user traffic (zone 0) its appliances carry: their VNI and endpoint id.
    own: Vec<(u32, u64)>,
}

impl ReturnZones {
    /// The return zones of group `gi` (zones from `zones`, as [`build`] takes them).
    pub fn new(cfg: &Config, gi: usize, zones: &ZoneMap) -> Self {
        let mut out = ReturnZones::default();
        for s in config::groups_carried_by(&cfg.target_groups, gi) {
            let g = &cfg.target_groups[s];
            if !g.user_ports.is_empty() {
                out.own.push((g.geneve_vni, g.endpoint_id));
            }
        }
        for e in cfg.endpoints.iter().filter(|e| reaches(cfg, e, gi)) {
            // The VNI the encapsulation carried: the endpoint's, or the group it chose (an
            // endpoint without a VNI of its own on a failed-over flow carries its own
            // group's VNI: the template is the backup's, so the backup's).
            let vni = e.geneve_vni.unwrap_or(cfg.target_groups[gi].geneve_vni);
            let zone = zones.zone(&e.name).unwrap_or(u16::MAX);
            out.zones.push((vni, e.endpoint_id, zone));
        }
        out
    }

    /// Whether a return of this group can belong to an endpoint (its zone must be looked
    /// up).
    pub fn is_zoned(&self) -> bool {
        !self.zones.is_empty()
    }

    /// The zone of a return with this VNI and echoed endpoint id, or `None` when it names no
    /// endpoint of the group. A group that inspects for no endpoint takes every return as
    /// its own (zone 0), as before endpoints existed. Without an echoed id the VNI decides,
    /// if only one of the group's tenants has it.
    #[inline]
    pub fn zone_of(&self, vni: u32, endpoint_id: Option<u64>) -> Option<u16> {
        if self.zones.is_empty() {
            return Some(0);
        }
        let own = self
            .own
            .iter()
            .any(|&(v, e)| v == vni && endpoint_id.is_none_or(|id| id == e))
            .then_some(0);
        let mut found = None;
        for &(v, e, zone) in &self.zones {
            if v == vni && endpoint_id.is_none_or(|id| id == e) {
                if found.is_some() || own.is_some() {
                    // Two tenants share the VNI and the return carries no id.
                    return None;
                }
                found = Some(zone);
            }
        }
        found.or(own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_frame;
    use gwlb_tests::frames;

    fn cfg(extra: &str) -> Config {
        let text = format!(
            r#"
[[ports]]
name = "p0"
device = "net_null0"
role = "both"
address = "10.0.0.1/24"
mac = "02:00:00:00:00:01"

[[target_groups]]
name = "fw"
user_ports = []
[[target_groups.targets]]
address = "10.0.0.10"
mac = "02:00:00:00:00:10"

[[target_groups]]
name = "ids"
user_ports = []
[[target_groups.targets]]
address = "10.0.0.11"
mac = "02:00:00:00:00:11"
{extra}"#
        );
        Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"))
    }

    const TWO_TENANTS: &str = r#"
[[endpoints]]
name = "a"
ports = ["p0"]
vlan = [100]
target_group = "fw"
[[endpoints.routes]]
prefix = "0.0.0.0/0"
via = "10.9.0.1"
mac = "02:00:00:00:09:01"
[[endpoints.rules]]
name = "web-to-ids"
protocols = [6]
destination_ports = ["80"]
action = "inspect"
target_group = "ids"
[[endpoints.rules]]
name = "backup"
sources = ["10.1.0.0/16"]
destinations = ["10.9.0.0/16"]
direction = "forward"
action = "bypass"
[[endpoints.rules]]
name = "telnet"
protocols = [6]
destination_ports = ["23"]
action = "drop"
tcp_reset = true

[[endpoints]]
name = "b"
ports = ["p0"]
vlan = [200, 7]
default_action = "drop"
[[endpoints.routes]]
prefix = "0.0.0.0/0"
via = "10.9.0.1"
mac = "02:00:00:00:09:01"
"#;

    /// `c`'s policy, zones and rule ids given from scratch.
    fn built(c: &Config) -> Policy {
        build(
            c,
            &ZoneMap::default().assigned(c),
            &RuleIds::default().assigned(c),
        )
    }

    /// A TCP SYN with these tags (outer first).
    fn tcp(src: &str, dst: &str, sport: u16, dport: u16, vlan: &[u16]) -> ParsedPacket {
        let ip = |a: &str| a.parse::<std::net::Ipv4Addr>().unwrap().octets();
        let mut f = frames::frame(
            [2, 0, 0, 0, 0, 9],
            [2, 0, 0, 0, 0, 1],
            frames::Ips::V4(ip(src), ip(dst)),
            frames::L4::Tcp {
                src_port: sport,
                dst_port: dport,
                flags: 0x02,
            },
            b"",
        );
        for &v in vlan.iter().rev() {
            f = frames::vlan_tagged(&f, 0, v);
        }
        parse_frame(&f).unwrap()
    }

    #[test]
    fn endpoints_claim_by_port_and_tags() {
        let c = cfg(TWO_TENANTS);
        let Policy {
            endpoints: eps,
            port_zones,
            ..
        } = built(&c);
        assert_eq!(port_zones, [vec![1, 2]]);
        let p = tcp("10.1.0.5", "10.9.0.5", 1000, 80, &[100]);
        assert!(eps[0].claims(&p, 0));
        assert!(!eps[0].claims(&p, 1));
        assert!(!eps[1].claims(&p, 0));
        assert!(eps[1].claims(&tcp("10.1.0.5", "10.9.0.5", 1, 2, &[200, 7]), 0));
        assert!(!eps[1].claims(&tcp("10.1.0.5", "10.9.0.5", 1, 2, &[200]), 0));
        assert!(!eps[0].claims(&tcp("10.1.0.5", "10.9.0.5", 1, 2, &[]), 0));
    }

    #[test]
    fn first_match_wins_and_the_default_comes_last() {
        let c = cfg(TWO_TENANTS);
        let Policy {
            endpoints: eps,
            rules,
            ..
        } = built(&c);
        let a = &eps[0];
        assert_eq!(a.rules, 1..5);
        let d = |p: &ParsedPacket| {
            let (i, act) = decide(&rules, a, p);
            (rules[usize::from(i)].name.as_str(), act)
        };
        // Port 80 goes to "ids" before the backup rule sees it.
        assert_eq!(
            d(&tcp("10.1.0.5", "10.9.0.5", 1000, 80, &[100])),
            ("web-to-ids", Action::Inspect(1))
        );
        // Both ways by default: the reply direction of a port-80 flow matches too.
        assert_eq!(
            d(&tcp("10.9.0.5", "10.1.0.5", 80, 1000, &[100])),
            ("web-to-ids", Action::Inspect(1))
        );
        assert_eq!(
            d(&tcp("10.1.0.5", "10.9.0.5", 1000, 5000, &[100])),
            ("backup", Action::Bypass)
        );
        // "forward" only: opened from the other side it is not the backup rule's.
        assert_eq!(
            d(&tcp("10.9.0.5", "10.1.0.5", 5000, 1000, &[100])),
            ("default", Action::Inspect(0))
        );
        assert_eq!(
            d(&tcp("10.2.0.5", "10.3.0.5", 1000, 23, &[100])),
            ("telnet", Action::Drop { reset: true })
        );
        let (i, act) = decide(
            &rules,
            &eps[1],
            &tcp("10.1.0.5", "10.9.0.5", 1, 2, &[200, 7]),
        );
        assert_eq!(
            (rules[usize::from(i)].name.as_str(), act),
            ("default", Action::Drop { reset: false })
        );
    }

    /// The index gives what trying every rule in order gives: random rules over a small
    /// address universe (so that they overlap, at every prefix length, both families).
    #[test]
    fn the_rule_index_agrees_with_trying_every_rule() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let v4 = |a: u64, b: u64| format!("10.{a}.{b}.1");
        let mut text =
            String::from("[[endpoints]]\nname = \"t\"\nports = [\"p0\"]\ntarget_group = \"fw\"\n");
        for k in 0..60 {
            let net = |next: &mut dyn FnMut(u64) -> u64| {
                let len = [8u64, 16, 24, 30, 32, 32][next(6) as usize];
                let addr: std::net::Ipv4Addr = v4(next(4), next(4)).parse().unwrap();
                let network = std::net::Ipv4Addr::from(u32::from(addr) & (u32::MAX << (32 - len)));
                format!("\"{network}/{len}\"")
            };
            let sources = if next(3) == 0 {
                String::new()
            } else {
                format!("sources = [{}]\n", net(&mut next))
            };
            let destinations = if next(2) == 0 {
                String::new()
            } else {
                format!("destinations = [{}, {}]\n", net(&mut next), net(&mut next))
            };
            let ports = if next(4) == 0 {
                format!("protocols = [6]\ndestination_ports = [\"{}\"]\n", next(3))
            } else {
                String::new()
            };
            let direction = if next(2) == 0 { "forward" } else { "both" };
            text.push_str(&format!("[[endpoints.rules]]\nname = \"r{k}\"\n{sources}{destinations}{ports}direction = \"{direction}\"\naction = \"bypass\"\n"));
        }
        let c = cfg(&text);
        let Policy {
            endpoints: eps,
            rules,
            ..
        } = built(&c);
        let ep = &eps[0];
        let linear = |p: &ParsedPacket| {
            (ep.rules.start..ep.rules.end - 1)
                .find(|&i| rules[usize::from(i)].matcher.matches(p))
                .unwrap_or(ep.rules.end - 1)
        };
        let mut hits = 0;
        for _ in 0..3000 {
            let (s, d) = (v4(next(4), next(4)), v4(next(4), next(4)));
            let p = tcp(&s, &d, next(3) as u16, next(3) as u16, &[]);
            let want = linear(&p);
            assert_eq!(decide(&rules, ep, &p).0, want, "{s} -> {d}");
            hits += usize::from(want != ep.rules.end - 1);
        }
        assert!(
            hits > 300,
            "the rules match often enough to test something: {hits}"
        );
        // Each way a rule is listed, matched the other way round.
        let c = cfg("[[endpoints]]\nname = \"t\"\nports = [\"p0\"]\ntarget_group = \"fw\"\n[[endpoints.rules]]\nname = \"s\"\nsources = [\"10.1.0.0/16\"]\naction = \"bypass\"\n[[endpoints.rules]]\nname = \"d\"\ndestinations = [\"10.3.3.0/24\"]\naction = \"bypass\"\n");
        let Policy {
            endpoints: eps,
            rules,
            ..
        } = built(&c);
        let name = |s: &str, d: &str| {
            let (i, _) = decide(&rules, &eps[0], &tcp(s, d, 1, 2, &[]));
            rules[usize::from(i)].name.clone()
        };
        assert_eq!(name("10.1.0.1", "10.2.0.1"), "s");
        assert_eq!(name("10.2.0.1", "10.1.0.1"), "s");
        assert_eq!(name("10.2.0.1", "10.3.3.1"), "d");
        assert_eq!(name("10.3.3.1", "10.2.0.1"), "d");
        assert_eq!(name("10.2.0.1", "10.3.4.1"), "default");
    }

    #[test]
    fn zones_stay_with_their_endpoint_names_across_changes() {
        let c = cfg(TWO_TENANTS);
        let mut zones = ZoneMap::default();
        zones.assign(&c);
        assert_eq!((zones.zone("a"), zones.zone("b")), (Some(1), Some(2)));
        // Without "a", and with a new endpoint first: "b" keeps 2, the new one gets 3, and
        // "a"'s zone is not handed out.
        let without_a = cfg(&TWO_TENANTS[TWO_TENANTS.find("[[endpoints]]\nname = \"b\"").unwrap()..]
            .replace("name = \"b\"", "name = \"c\"\nports = [\"p0\"]\nvlan = [9]\ndefault_action = \"bypass\"\n[[endpoints.routes]]\nprefix = \"0.0.0.0/0\"\nvia = \"10.9.0.1\"\nmac = \"02:00:00:00:09:01\"\n[[endpoints]]\nname = \"b\""));
        zones.assign(&without_a);
        assert_eq!(zones.zone("b"), Some(2));
        assert_eq!(zones.zone("c"), Some(3));
        let Policy {
            endpoints: eps,
            zone_index: index,
            ..
        } = build(&without_a, &zones, &RuleIds::default().assigned(&without_a));
        assert_eq!((eps[0].zone, eps[1].zone), (3, 2));
        assert_eq!(index[2], 2, "zone 2 is the second endpoint");
        assert_eq!(index.get(1), Some(&0), "zone 1 is nobody's");
    }

    /// Rules keep their ids wherever a change moves them; a removed rule's id is not given
    /// out while unused ones remain, and comes back with its name; once every id has been
    /// used, the longest free one is reused.
    #[test]
    fn rules_keep_their_ids_across_changes() {
        let c = cfg(TWO_TENANTS);
        let mut ids = RuleIds::default();
        assert_eq!(ids.assign(&c), [1, 2, 3, 4, 5]);
        let id = |ids: &RuleIds, r: &str| ids.id("a", r).unwrap();
        assert_eq!(
            ["web-to-ids", "backup", "telnet", "default"].map(|r| id(&ids, r)),
            [1, 2, 3, 4]
        );
        assert_eq!(ids.id("b", "default"), Some(5));
        // A rule inserted first, "backup" removed: the others keep theirs; the new one gets
        // an id never used; the snapshot finds each rule by its id.
        let edited = TWO_TENANTS
            .replacen(
                "[[endpoints.rules]]\nname = \"web-to-ids\"",
                "[[endpoints.rules]]\nname = \"new\"\naction = \"bypass\"\nprotocols = [17]\n[[endpoints.rules]]\nname = \"web-to-ids\"",
                1,
            )
            .replacen("name = \"backup\"", "name = \"backup2\"", 1);
        let c2 = cfg(&edited);
        assert_eq!(ids.assign(&c2), [6, 7], "new, backup2");
        assert_eq!(
            ["web-to-ids", "telnet", "default", "new", "backup2"].map(|r| id(&ids, r)),
            [1, 3, 4, 6, 7]
        );
        let p = build(&c2, &ZoneMap::default().assigned(&c2), &ids);
        for r in &p.rules {
            assert_eq!(
                p.rules[usize::from(p.rule_at[usize::from(r.id)])].name,
                r.name
            );
        }
        let a = &p.endpoints[0];
        assert_eq!(
            p.rules[usize::from(a.rule_index(3, &p.rule_at))].name,
            "telnet"
        );
        assert_eq!(a.counted_id(3, &p.rule_at), 3);
        // "backup"'s flows (id 2) fall to the default; "b"'s rule is not "a"'s.
        assert_eq!(a.rule_index(2, &p.rule_at), a.rules.end - 1);
        assert_eq!(a.counted_id(2, &p.rule_at), a.default_id);
        assert_eq!(a.counted_id(5, &p.rule_at), a.default_id);
        // Back again before its id was reused: its id is its own again.
        assert_eq!(ids.assign(&c), Vec::<u16>::new());
        assert_eq!(id(&ids, "backup"), 2);
        // Every id used: the longest free is reused ("new", then "backup2").
        ids.assign(&c2);
        ids.owners.resize(RuleIds::COUNT, None);
        ids.assign(&c);
        let third = edited.replacen("name = \"new\"", "name = \"newer\"", 1);
        let c3 = cfg(&third.replacen("name = \"backup2\"", "name = \"backup3\"", 1));
        assert_eq!(ids.assign(&c3), [6, 7]);
        assert_eq!((id(&ids, "newer"), id(&ids, "backup3")), (6, 7));
        assert_eq!(ids.id("a", "new"), None, "a reused id forgets its old name");
    }

    #[test]
    fn returns_name_their_endpoint_by_vni_and_endpoint_id() {
        let c = cfg(&format!(
            "{TWO_TENANTS}\n[[endpoints]]\nname = \"c\"\nports = [\"p0\"]\nvlan = [300]\ntarget_group = \"fw\"\ngeneve_vni = 9\n[[endpoints.routes]]\nprefix = \"0.0.0.0/0\"\nvia = \"10.9.0.1\"\nmac = \"02:00:00:00:09:01\"\n"
        ));
        let zones = ZoneMap::default().assigned(&c);
        let fw = ReturnZones::new(&c, 0, &zones);
        let (a, cz) = (c.endpoints[0].endpoint_id, c.endpoints[2].endpoint_id);
        assert_eq!(fw.zone_of(0, Some(a)), Some(1));
        assert_eq!(fw.zone_of(9, Some(cz)), Some(3));
        // Without the id (a Linux appliance) the VNI alone decides: unique here.
        assert_eq!(fw.zone_of(9, None), Some(3));
        assert_eq!(fw.zone_of(0, None), Some(1));
        // An id that is not the group's tenant, or an unknown VNI.
        assert_eq!(fw.zone_of(0, Some(cz)), None);
        assert_eq!(fw.zone_of(5, None), None);
        // "ids" inspects for endpoint a only.
        let ids = ReturnZones::new(&c, 1, &zones);
        assert_eq!(ids.zone_of(0, Some(a)), Some(1));
        assert_eq!(ids.zone_of(0, Some(cz)), None);
    }
}
