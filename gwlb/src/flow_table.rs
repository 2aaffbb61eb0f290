//! Per-worker flow table: fixed capacity, no allocation after construction, no locks.
//!
//! One table per worker core, never shared. It maps a flow key `K` (the canonical 5-tuple,
//! `crate::flow::FlowKey`) to a [`FlowEntry`] (chosen appliance, target group, flow cookie,
//! protocol class, last-seen time). The caller computes the 32-bit flow hash once per packet
//! and passes it to every call; the table never hashes.
//!
//! # Layout
//! Two-choice set-associative hashing: `2^k` buckets of [`WAYS`] = 8 slots. A key may live in
//! one of two buckets derived from its hash (`hash & mask`, and a remix of the whole hash);
//! insertion picks the less loaded one; when both are full it moves one resident entry to a
//! free slot of that entry's other bucket (one level of cuckoo displacement, bounded work).
//! Each bucket has a 32-byte array of tags (the flow hash, 0 = free), two buckets per cache line, compared
//! branch-free into a bit mask; the slots (key and entry together) live in a separate array.
//! A hit touches one or two tag lines plus the slot's one or two lines.
//!
//! Memory per slot, 40-byte key: 56 bytes (key 40 + [`FlowEntry`] 16) + 4 bytes of tag = 60
//! bytes ([`FlowTable::bytes_per_slot`]). 10 M flows: `with_capacity(10_000_000)` rounds up to
//! 2^21 buckets = 16.8 M slots = 1.0 GB (exactly 10 M slots would be 600 MB). Measured fill
//! before the first insert fails: 97% of 2^10 slots, 94% of 2^16, 91% of 2^20 (the
//! `measure_fill_load` test).
//!
//! Measured (release, random keys, no prefetch, loaded 2 vCPU Zen 4): 2^16 slots at 85% load:
//! hit 12 ns, miss 7 ns, insert 50-85 ns; 2^22 slots (240 MiB) at 85%: hit 17-27 ns, miss
//! 60-95 ns, insert 200-300 ns (cache and TLB misses; the worker should prefetch the tag line
//! a few packets ahead).
//!
//! # Time
//! `now` is a coarse `u32` tick in **seconds** from any fixed epoch (a worker derives it from
//! the TSC: `tsc / tsc_hz`); [`Timeouts`] are in the same unit. The table only ever computes
//! `now.wrapping_sub(last_seen)`, so the wrap of `now` is harmless provided every entry is looked
//! at (by a lookup or by [`FlowTable::expire_step`]) at least once every 2^32 ticks (136 years in
//! seconds). An entry is expired when `now - last_seen > timeout`: with whole-second ticks it is
//! never dropped before it has really been idle for `timeout` seconds.
//!
//! # Expiry and a full table
//! An expired entry is treated as absent by every lookup and its slot counts as free: it is
//! reclaimed on the spot by [`FlowTable::lookup`] and [`FlowTable::insert`], and in the
//! background by [`FlowTable::expire_step`], which the worker calls with bounded work when idle.
//!
//! A live (not expired) entry is **never evicted** before its timeout. When both candidate
//! buckets of a new flow hold only live entries, [`FlowTable::insert`] returns [`TableFull`]
//! and counts it in [`FlowTableStats::full_misses`]; the caller then forwards the packet
//! statelessly to the appliance Maglev picks for its hash (the same one a table hit would have
//! recorded, as long as the appliance pool does not change).

use std::fmt;
use std::mem::MaybeUninit;
use std::ops::RangeInclusive;

use thiserror::Error;

use crate::huge_array::{HugeArray, HugeArrayError};

/// Slots per bucket.
pub const WAYS: usize = 8;

/// AWS default TCP idle timeout, seconds.
pub const DEFAULT_TCP_TIMEOUT: u32 = 350;
/// AWS idle timeout for UDP and other protocols, seconds.
pub const DEFAULT_OTHER_TIMEOUT: u32 = 120;
/// Accepted TCP idle timeouts, seconds (AWS range).
pub const TCP_TIMEOUT_RANGE: RangeInclusive<u32> = 60..=6000;
/// Accepted idle timeouts for other protocols, seconds (AWS fixes 120; gwlb lets it be tuned).
pub const OTHER_TIMEOUT_RANGE: RangeInclusive<u32> = 1..=6000;

/// Largest number of slots (2^30; about 60 GiB with a 40-byte key).
pub const MAX_SLOTS: usize = 1 << 30;

/// Protocol class: selects the idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ProtoClass {
    /// TCP: [`Timeouts::tcp`].
    Tcp = 0,
    /// UDP, ICMP and everything else: [`Timeouts::other`].
    Other = 1,
}

/// Idle timeouts per protocol class, in ticks (seconds, see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    tcp: u32,
    other: u32,
}

impl Default for Timeouts {
    /// AWS defaults: TCP 350 s, others 120 s.
    fn default() -> Self {
        Self {
            tcp: DEFAULT_TCP_TIMEOUT,
            other: DEFAULT_OTHER_TIMEOUT,
        }
    }
}

impl Timeouts {
    /// Validated timeouts: `tcp` in [`TCP_TIMEOUT_RANGE`], `other` in [`OTHER_TIMEOUT_RANGE`].
    pub fn new(tcp: u32, other: u32) -> Result<Self, FlowTableError> {
        if !TCP_TIMEOUT_RANGE.contains(&tcp) {
            return Err(FlowTableError::TcpTimeout(tcp));
        }
        if !OTHER_TIMEOUT_RANGE.contains(&other) {
            return Err(FlowTableError::OtherTimeout(other));
        }
        Ok(Self { tcp, other })
    }

    /// TCP idle timeout.
    pub fn tcp(&self) -> u32 {
        self.tcp
    }

    /// Idle timeout of every other protocol.
    pub fn other(&self) -> u32 {
        self.other
    }

    /// The timeout of `class`.
    #[inline]
    pub fn for_class(&self, class: ProtoClass) -> u32 {
        match class {
            ProtoClass::Tcp => self.tcp,
            ProtoClass::Other => self.other,
        }
    }
}

/// Target groups with idle timeouts of their own ([`GroupTimeouts`]); configurations may
/// have at most this many groups.
pub const TIMEOUT_GROUPS: usize = 256;

/// Idle timeouts per target group: an entry expires after its own group's timeout for its
/// protocol class (AWS sets idle timeouts per target group). A fixed array, so that changing
/// it on a worker allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupTimeouts([Timeouts; TIMEOUT_GROUPS]);

impl Default for GroupTimeouts {
    fn default() -> Self {
        Self::uniform(Timeouts::default())
    }
}

impl GroupTimeouts {
    /// The same timeouts for every group.
    pub fn uniform(t: Timeouts) -> Self {
        Self([t; TIMEOUT_GROUPS])
    }

    /// Group `group`'s timeouts (a group past [`TIMEOUT_GROUPS`], which validation refuses,
    /// gets the last one's).
    #[inline(always)]
    pub fn for_group(&self, group: u16) -> &Timeouts {
        &self.0[usize::from(group).min(TIMEOUT_GROUPS - 1)]
    }

    /// Sets group `group`'s timeouts (ignored past [`TIMEOUT_GROUPS`]).
    pub fn set(&mut self, group: usize, t: Timeouts) {
        if let Some(slot) = self.0.get_mut(group) {
            *slot = t;
        }
    }
}

/// Invalid flow-table configuration.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FlowTableError {
    /// TCP idle timeout outside [`TCP_TIMEOUT_RANGE`].
    #[error("TCP idle timeout {0} s is outside 60..=6000 s")]
    TcpTimeout(u32),
    /// Other-protocol idle timeout outside [`OTHER_TIMEOUT_RANGE`].
    #[error("idle timeout {0} s for non-TCP flows is outside 1..=6000 s")]
    OtherTimeout(u32),
    /// Capacity above [`MAX_SLOTS`].
    #[error("flow table capacity {requested} exceeds the maximum of {max} slots")]
    CapacityTooLarge {
        /// Requested number of flows.
        requested: usize,
        /// [`MAX_SLOTS`].
        max: usize,
    },
    /// The table's memory could not be mapped.
    #[error("flow table memory: {0}")]
    Memory(#[from] HugeArrayError),
}

/// Insert failed: both candidate buckets hold only live flows. Counted in
/// [`FlowTableStats::full_misses`]; the caller forwards statelessly.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("flow table full: both candidate buckets hold only live flows")]
pub struct TableFull;

/// The state of one flow. 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowEntry {
    /// Appliance index in the target group's pool.
    pub appliance: u16,
    /// Target group index.
    pub group: u16,
    /// Flow cookie (AWS Geneve option type 3): what the encapsulation carries (today the
    /// flow's table hash) and what an appliance's echo must match.
    pub cookie: u32,
    /// Set by the table to `now` on insert and on every [`FlowTable::lookup`] hit.
    last_seen: u32,
    /// Pool generation the appliance index refers to (detects indexes of a replaced pool).
    pub generation: u8,
    /// Bits 0-3: which connection on this 5-tuple the entry is (0 for the first): a TCP SYN
    /// that reuses the tuple of a closed (or long idle) connection starts the next one, with
    /// the next cookie ([`flow_cookie`]), modulo [`COOKIE_INSTANCES`]. Bit 6: the protocol
    /// class is [`ProtoClass::Other`]. Bit 7: a TCP FIN or RST has been seen on the flow (a
    /// following SYN starts a new connection). Bit 4: a steering rule's chain decided the
    /// flow (its packets visit the chain's groups in turn). Bit 5: the flow's first packet
    /// went from the key's `hi` end to its `lo` end ([`crate::flow::Direction::Reverse`]).
    conn: u8,
    /// The id of the steering rule that decided the flow ([`crate::policy::RuleIds`]; 0 for
    /// a flow of a target group's `user_ports`): its packets are counted under it.
    pub rule: u16,
}

impl FlowEntry {
    /// The `appliance` of a flow a steering rule forwards uninspected (`bypass`): no
    /// appliance slot has this index.
    pub const BYPASS: u16 = u16::MAX;
    const CHAINED: u8 = 1 << 4;
    const OPENED_REVERSE: u8 = 1 << 5;
    const CLASS_OTHER: u8 = 1 << 6;
    const CLOSED: u8 = 1 << 7;
    const INSTANCE: u8 = 0x0f;

    /// Selects the idle timeout.
    #[inline]
    pub fn class(&self) -> ProtoClass {
        if self.conn & Self::CLASS_OTHER != 0 {
            ProtoClass::Other
        } else {
            ProtoClass::Tcp
        }
    }

    /// Which connection on the 5-tuple this is (see [`COOKIE_INSTANCES`]).
    #[inline]
    pub fn instance(&self) -> u8 {
        self.conn & Self::INSTANCE
    }

    /// Sets the connection instance (modulo [`COOKIE_INSTANCES`]).
    #[inline]
    pub fn set_instance(&mut self, instance: u8) {
        self.conn = (self.conn & !Self::INSTANCE) | (instance % COOKIE_INSTANCES);
    }

    /// A TCP FIN or RST has been seen on the flow.
    #[inline]
    pub fn closed(&self) -> bool {
        self.conn & Self::CLOSED != 0
    }

    /// Marks the flow closed (a FIN or RST was seen).
    #[inline]
    pub fn set_closed(&mut self) {
        self.conn |= Self::CLOSED;
    }

    /// Whether a steering rule forwards the flow uninspected.
    #[inline]
    pub fn is_bypass(&self) -> bool {
        self.appliance == Self::BYPASS
    }

    /// Whether a chain decided the flow (its rule's action is a chain).
    #[inline]
    pub fn is_chained(&self) -> bool {
        self.conn & Self::CHAINED != 0
    }

    /// Marks the flow chained, opened in direction `opened` (its first packet's).
    #[inline]
    pub fn set_chained(&mut self, opened: crate::flow::Direction) {
        self.conn |= Self::CHAINED;
        if opened == crate::flow::Direction::Reverse {
            self.conn |= Self::OPENED_REVERSE;
        }
    }

    /// The direction of a chained flow's first packet.
    #[inline]
    pub fn opened(&self) -> crate::flow::Direction {
        if self.conn & Self::OPENED_REVERSE != 0 {
            crate::flow::Direction::Reverse
        } else {
            crate::flow::Direction::Forward
        }
    }
}

/// Connections on one 5-tuple whose cookies differ before they repeat (see [`flow_cookie`]).
pub const COOKIE_INSTANCES: u8 = 16;

/// The flow cookie of connection `instance` (modulo [`COOKIE_INSTANCES`]) of the flow whose
/// table hash is `table_hash`: the hash itself for the first, then a fixed odd step further
/// per connection, so that each connection on a reused tuple carries a new cookie (as AWS
/// issues one) while a node without the flow's entry (behind ECMP) can still check an
/// echoed cookie against the [`COOKIE_INSTANCES`] it may be ([`is_flow_cookie`]).
#[inline]
pub const fn flow_cookie(table_hash: u32, instance: u8) -> u32 {
    table_hash.wrapping_add(((instance % COOKIE_INSTANCES) as u32).wrapping_mul(0x9e37_79b9))
}

/// Whether `cookie` is one of the cookies a flow of hash `table_hash` can carry.
#[inline]
pub fn is_flow_cookie(table_hash: u32, cookie: u32) -> bool {
    (0..COOKIE_INSTANCES).any(|i| flow_cookie(table_hash, i) == cookie)
}

impl FlowEntry {
    const VACANT: Self = Self::new(ProtoClass::Other, 0, 0, 0);

    /// An entry with generation, instance, rule and timestamp zero.
    pub const fn new(class: ProtoClass, appliance: u16, group: u16, cookie: u32) -> Self {
        Self {
            appliance,
            group,
            cookie,
            last_seen: 0,
            generation: 0,
            conn: match class {
                ProtoClass::Tcp => 0,
                ProtoClass::Other => Self::CLASS_OTHER,
            },
            rule: 0,
        }
    }

    /// Tick of the last insert or lookup hit.
    pub fn last_seen(&self) -> u32 {
        self.last_seen
    }

    /// Whether the entry has been idle for longer than its class's timeout at `now`.
    #[inline]
    pub fn is_expired(&self, now: u32, timeouts: &Timeouts) -> bool {
        now.wrapping_sub(self.last_seen) > timeouts.for_class(self.class())
    }
}

/// Counters of one table (plain integers: the table belongs to one worker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowTableStats {
    /// New entries stored.
    pub inserts: u64,
    /// Inserts that overwrote a live entry of the same key.
    pub replaced: u64,
    /// Inserts refused with [`TableFull`].
    pub full_misses: u64,
    /// Expired entries reclaimed (by lookup, insert or `expire_step`).
    pub expired: u64,
    /// Entries removed with [`FlowTable::remove`].
    pub removed: u64,
    /// Entries moved to their other bucket to make room for an insert.
    pub displaced: u64,
}

/// Tags of one bucket: the flow hash of each slot, 0 when the slot is free (a hash of 0 is
/// stored as 1: tags only filter, keys decide).
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Tags([u32; WAYS]);

/// Invariant: `key` is initialised whenever the slot's tag is non-zero (only `insert` and
/// `displace` set tags, and both write the key with it). Vacant slots keep an uninitialised key
/// so that `K` needs no `Default`.
struct Slot<K> {
    key: MaybeUninit<K>,
    entry: FlowEntry,
}

// Manual: `MaybeUninit<K>` is `Clone` only for `K: Copy`, which derive would not require.
impl<K: Copy> Clone for Slot<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: Copy> Copy for Slot<K> {}

/// Where to resume a paged dump ([`FlowTable::dump_page`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DumpCursor(usize);

impl DumpCursor {
    /// The beginning of the table.
    pub const START: Self = Self(0);

    /// The cursor at slot `position` (as returned by [`DumpCursor::position`]).
    pub const fn at(position: usize) -> Self {
        Self(position)
    }

    /// The slot this cursor continues at (to carry it across an API request).
    pub const fn position(self) -> usize {
        self.0
    }
}

/// A fixed-capacity flow table for one worker. See the module documentation.
pub struct FlowTable<K> {
    tags: HugeArray<Tags>,
    slots: HugeArray<Slot<K>>,
    /// Buckets - 1 (buckets is a power of two, at least 2).
    mask: u32,
    /// Occupied slots, including expired entries not reclaimed yet.
    len: usize,
    timeouts: GroupTimeouts,
    /// Next bucket `expire_step` visits.
    sweep: u32,
    stats: FlowTableStats,
}

impl<K> fmt::Debug for FlowTable<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowTable")
            .field("slots", &self.slots.len())
            .field("len", &self.len)
            .field("timeouts (group 0)", self.timeouts.for_group(0))
            .field("stats", &self.stats)
            .finish()
    }
}

#[inline(always)]
fn tag_of(hash: u32) -> u32 {
    if hash == 0 {
        1
    } else {
        hash
    }
}

/// Bit i set when `tags[i] == tag`: two SSE2 compares and a move-mask on x86_64 (the scalar
/// loop below is what LLVM made of it before: about 70 instructions, not vectorised).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn match_mask(tags: &[u32; WAYS], tag: u32) -> u32 {
    use core::arch::x86_64::{
        __m128i, _mm_castsi128_ps, _mm_cmpeq_epi32, _mm_loadu_si128, _mm_movemask_ps,
        _mm_set1_epi32,
    };
    const _: () = assert!(WAYS == 8);
    let p = tags.as_ptr().cast::<__m128i>();
    // SAFETY: SSE2 is part of the x86_64 baseline. `tags` is 8 u32 = two 16-byte vectors, so
    // both unaligned loads (`p` and `p + 1`) read inside the array.
    unsafe {
        let t = _mm_set1_epi32(tag as i32);
        let lo = _mm_cmpeq_epi32(_mm_loadu_si128(p), t);
        let hi = _mm_cmpeq_epi32(_mm_loadu_si128(p.add(1)), t);
        let lo = _mm_movemask_ps(_mm_castsi128_ps(lo)) as u32;
        let hi = _mm_movemask_ps(_mm_castsi128_ps(hi)) as u32;
        lo | hi << 4
    }
}

/// Bit i set when `tags[i] == tag` (portable version).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn match_mask(tags: &[u32; WAYS], tag: u32) -> u32 {
    let mut m = 0u32;
    for (i, &t) in tags.iter().enumerate() {
        m |= u32::from(t == tag) << i;
    }
    m
}

/// Hints the CPU to start loading the cache line at `p` (no-op where unsupported). Also used
/// by the pipeline and the worker for packet data and mbuf headers.
#[inline(always)]
pub(crate) fn prefetch_line<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults and has no architectural effect, whatever
    // the address (SSE, part of the x86_64 baseline).
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl<K: Copy + Eq> FlowTable<K> {
    /// A table for at least `flows` entries: `max(2, next_power_of_two(ceil(flows / 8)))`
    /// buckets of 8 slots, every byte allocated here (and every page written, so pre-faulted)
    /// and never again. Plan for about 90% of the slots being usable (module documentation).
    pub fn with_capacity(flows: usize, timeouts: Timeouts) -> Result<Self, FlowTableError> {
        if flows > MAX_SLOTS {
            return Err(FlowTableError::CapacityTooLarge {
                requested: flows,
                max: MAX_SLOTS,
            });
        }
        let buckets = flows.div_ceil(WAYS).next_power_of_two().max(2);
        let vacant = Slot {
            key: MaybeUninit::uninit(),
            entry: FlowEntry::VACANT,
        };
        Ok(Self {
            tags: HugeArray::new(buckets, Tags([0; WAYS]))?,
            slots: HugeArray::new(buckets * WAYS, vacant)?,
            // buckets <= MAX_SLOTS / WAYS < 2^32.
            mask: (buckets - 1) as u32,
            len: 0,
            timeouts: GroupTimeouts::uniform(timeouts),
            sweep: 0,
            stats: FlowTableStats::default(),
        })
    }

    /// Bytes of table memory per slot (slot plus its tag).
    pub const fn bytes_per_slot() -> usize {
        std::mem::size_of::<Slot<K>>() + std::mem::size_of::<u32>()
    }

    /// Total slots (the power-of-two rounding of the requested capacity).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        self.tags.len()
    }

    /// Bytes of table memory.
    pub fn memory_bytes(&self) -> usize {
        self.capacity() * Self::bytes_per_slot()
    }

    /// Occupied slots, including expired entries not reclaimed yet (an upper bound of the live
    /// flows; see [`FlowTable::count_live`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// No slot occupied.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The counters.
    pub fn stats(&self) -> &FlowTableStats {
        &self.stats
    }

    /// The idle timeouts, per target group.
    pub fn timeouts(&self) -> &GroupTimeouts {
        &self.timeouts
    }

    /// Changes the idle timeouts of every group to `timeouts`; they apply to existing entries
    /// at once.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timeouts = GroupTimeouts::uniform(timeouts);
    }

    /// Changes the idle timeouts per group; they apply to existing entries at once.
    pub fn set_group_timeouts(&mut self, timeouts: &GroupTimeouts) {
        self.timeouts = *timeouts;
    }

    /// Whether `e` has been idle longer than its group's timeout for its class at `now`.
    #[inline(always)]
    fn expired(&self, e: &FlowEntry, now: u32) -> bool {
        e.is_expired(now, self.timeouts.for_group(e.group))
    }

    /// The two candidate buckets of a tag (distinct). Derived from the tag rather than the
    /// hash so that a resident entry's other bucket is known without its key.
    #[inline(always)]
    fn buckets_of(&self, tag: u32) -> (usize, usize) {
        let b1 = tag & self.mask;
        // Murmur3 fmix32 of the whole tag, so the second choice is not a function of b1.
        let mut h = tag ^ (tag >> 16);
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^= h >> 16;
        let mut b2 = h & self.mask;
        if b2 == b1 {
            b2 ^= 1;
        }
        (b1 as usize, b2 as usize)
    }

    #[inline(always)]
    fn find_in(&self, bucket: usize, mut m: u32, key: &K) -> Option<usize> {
        while m != 0 {
            let s = bucket * WAYS + m.trailing_zeros() as usize;
            if self.key_at(s) == key {
                return Some(s);
            }
            m &= m - 1;
        }
        None
    }

    /// Slot index of `key`, expired or not. Both buckets' tags are loaded and compared before
    /// any branch, so a cold table costs the two tag-line misses in parallel, not in series.
    #[inline(always)]
    fn find(&self, key: &K, hash: u32) -> Option<usize> {
        let tag = tag_of(hash);
        let (b1, b2) = self.buckets_of(tag);
        let m1 = match_mask(&self.tags[b1].0, tag);
        let m2 = match_mask(&self.tags[b2].0, tag);
        if m1 | m2 == 0 {
            return None;
        }
        match self.find_in(b1, m1, key) {
            Some(s) => Some(s),
            None => self.find_in(b2, m2, key),
        }
    }

    /// Starts loading the two candidate tag lines of `hash` into the cache (first step of a
    /// burst: call it for every packet of the burst, then [`FlowTable::prefetch_slots`], then
    /// look up). A hint only: never changes what the table holds.
    #[inline(always)]
    pub fn prefetch(&self, hash: u32) {
        let (b1, b2) = self.buckets_of(tag_of(hash));
        prefetch_line(self.tags.as_ptr().wrapping_add(b1));
        prefetch_line(self.tags.as_ptr().wrapping_add(b2));
    }

    /// Starts loading the slot (key and entry) of the first tag match in each candidate bucket
    /// of `hash`. Reads the tag lines, so call it after [`FlowTable::prefetch`] had time to
    /// bring them in (a burst later). A hint only.
    #[inline(always)]
    pub fn prefetch_slots(&self, hash: u32) {
        let tag = tag_of(hash);
        let (b1, b2) = self.buckets_of(tag);
        let m1 = match_mask(&self.tags[b1].0, tag);
        let m2 = match_mask(&self.tags[b2].0, tag);
        for (b, m) in [(b1, m1), (b2, m2)] {
            if m != 0 {
                let s = self
                    .slots
                    .as_ptr()
                    .wrapping_add(b * WAYS + m.trailing_zeros() as usize);
                // A slot is 56 bytes: it may straddle two lines.
                prefetch_line(s);
                prefetch_line(
                    s.cast::<u8>()
                        .wrapping_add(std::mem::size_of::<Slot<K>>() - 1),
                );
            }
        }
    }

    /// The key of an occupied slot (non-zero tag).
    #[inline(always)]
    fn key_at(&self, s: usize) -> &K {
        let occupied = self.tags[s / WAYS].0[s % WAYS] != 0;
        assert!(occupied, "key of a vacant slot");
        // SAFETY: the slot's tag is non-zero (asserted above; the callers only get here after
        // checking it, so the assert is a predictable, usually elided branch), and by the `Slot`
        // invariant a non-zero tag means its key was written with `MaybeUninit::new`.
        unsafe { self.slots[s].key.assume_init_ref() }
    }

    #[inline(always)]
    fn slot_expired(&self, s: usize, now: u32) -> bool {
        self.expired(&self.slots[s].entry, now)
    }

    #[inline(always)]
    fn free(&mut self, s: usize) {
        self.tags[s / WAYS].0[s % WAYS] = 0;
        self.len -= 1;
    }

    /// The live entry of `key`, its `last_seen` refreshed to `now`. An expired entry is
    /// reclaimed and reported as absent.
    #[inline]
    pub fn lookup(&mut self, key: &K, hash: u32, now: u32) -> Option<&mut FlowEntry> {
        self.lookup_idle(key, hash, now).map(|(e, _)| e)
    }

    /// [`FlowTable::lookup`], also returning how long the entry had been idle (ticks since
    /// its previous hit or insert).
    #[inline]
    pub fn lookup_idle(&mut self, key: &K, hash: u32, now: u32) -> Option<(&mut FlowEntry, u32)> {
        let s = self.find(key, hash)?;
        if self.slot_expired(s, now) {
            self.free(s);
            self.stats.expired += 1;
            return None;
        }
        let e = &mut self.slots[s].entry;
        let idle = now.wrapping_sub(e.last_seen);
        e.last_seen = now;
        Some((e, idle))
    }

    /// The live entry of `key` without refreshing or reclaiming anything (control plane, tests).
    pub fn get(&self, key: &K, hash: u32, now: u32) -> Option<&FlowEntry> {
        let s = self.find(key, hash)?;
        let e = &self.slots[s].entry;
        (!self.expired(e, now)).then_some(e)
    }

    /// Stores `value` for `key` with `last_seen = now` and returns it. An existing entry of the
    /// key (live or expired) is overwritten in place. Otherwise a free or expired slot of the
    /// less loaded candidate bucket is taken; when both buckets hold only live entries nothing
    /// is evicted and [`TableFull`] is returned (and counted).
    #[inline]
    pub fn insert(
        &mut self,
        key: K,
        hash: u32,
        mut value: FlowEntry,
        now: u32,
    ) -> Result<&mut FlowEntry, TableFull> {
        value.last_seen = now;
        if let Some(s) = self.find(&key, hash) {
            if self.slot_expired(s, now) {
                self.stats.expired += 1;
                self.stats.inserts += 1;
            } else {
                self.stats.replaced += 1;
            }
            let e = &mut self.slots[s].entry;
            *e = value;
            return Ok(e);
        }
        self.insert_new(key, hash, value)
    }

    /// Whether a new key of `hash` would find no room now: both its candidate buckets hold
    /// only live entries. (An insert may still succeed by displacing an entry; this is the
    /// necessary condition of [`TableFull`], checked without changing anything.) The pipeline
    /// accepts a return of a flow it does not hold only when this is true.
    pub fn is_full_for(&self, hash: u32, now: u32) -> bool {
        let (b1, b2) = self.buckets_of(tag_of(hash));
        [b1, b2].into_iter().all(|b| {
            match_mask(&self.tags[b].0, 0) == 0
                && (b * WAYS..(b + 1) * WAYS).all(|s| !self.slot_expired(s, now))
        })
    }

    /// [`FlowTable::insert`] of a key known to be absent: right after
    /// [`FlowTable::lookup`] returned `None` for it (a lookup reclaims an expired entry of its
    /// key, so none is left), with no other insert of that key in between. Skips the search.
    #[inline]
    pub fn insert_absent(
        &mut self,
        key: K,
        hash: u32,
        mut value: FlowEntry,
        now: u32,
    ) -> Result<&mut FlowEntry, TableFull> {
        debug_assert!(
            self.find(&key, hash).is_none(),
            "insert_absent of a present key"
        );
        value.last_seen = now;
        self.insert_new(key, hash, value)
    }

    /// Stores an absent key (`value.last_seen` already set).
    #[inline(always)]
    fn insert_new(
        &mut self,
        key: K,
        hash: u32,
        value: FlowEntry,
    ) -> Result<&mut FlowEntry, TableFull> {
        let now = value.last_seen;
        let tag = tag_of(hash);
        let (b1, b2) = self.buckets_of(tag);
        let free1 = match_mask(&self.tags[b1].0, 0);
        let free2 = match_mask(&self.tags[b2].0, 0);
        let s = if free1 | free2 != 0 {
            let (b, free) = if free2.count_ones() > free1.count_ones() {
                (b2, free2)
            } else {
                (b1, free1)
            };
            self.len += 1;
            b * WAYS + free.trailing_zeros() as usize
        } else {
            let expired = (b1 * WAYS..(b1 + 1) * WAYS)
                .chain(b2 * WAYS..(b2 + 1) * WAYS)
                .find(|&s| self.slot_expired(s, now));
            if let Some(s) = expired {
                self.stats.expired += 1;
                s
            } else if let Some(s) = self.displace(b1).or_else(|| self.displace(b2)) {
                self.len += 1;
                s
            } else {
                self.stats.full_misses += 1;
                return Err(TableFull);
            }
        };
        self.stats.inserts += 1;
        self.tags[s / WAYS].0[s % WAYS] = tag;
        let slot = &mut self.slots[s];
        slot.key = MaybeUninit::new(key);
        slot.entry = value;
        Ok(&mut slot.entry)
    }

    /// Frees a slot of the full `bucket` by moving one of its entries to a free slot of that
    /// entry's other bucket (one level of cuckoo displacement: at most 8 more tag lines read,
    /// one slot copied). Returns the freed slot.
    #[cold]
    fn displace(&mut self, bucket: usize) -> Option<usize> {
        for i in 0..WAYS {
            let tag = self.tags[bucket].0[i];
            let (x1, x2) = self.buckets_of(tag);
            let alt = if x1 == bucket { x2 } else { x1 };
            let free = match_mask(&self.tags[alt].0, 0);
            if free != 0 {
                let from = bucket * WAYS + i;
                let to = alt * WAYS + free.trailing_zeros() as usize;
                self.slots[to] = self.slots[from];
                self.tags[alt].0[to % WAYS] = tag;
                self.tags[bucket].0[i] = 0;
                self.stats.displaced += 1;
                return Some(from);
            }
        }
        None
    }

    /// Removes the entry of `key` and returns it, whether expired or not (use
    /// [`FlowEntry::is_expired`] to tell).
    pub fn remove(&mut self, key: &K, hash: u32) -> Option<FlowEntry> {
        let s = self.find(key, hash)?;
        self.free(s);
        self.stats.removed += 1;
        Some(self.slots[s].entry)
    }

    /// Removes every entry (control plane; touches the tag array only).
    pub fn clear(&mut self) {
        self.tags.fill(Tags([0; WAYS]));
        self.len = 0;
    }

    /// Background expiry: visits the next `max_buckets` buckets (round robin over the table) and
    /// reclaims their expired entries. Returns how many it reclaimed. Work is bounded by
    /// `max_buckets * 8` slot checks; a full sweep takes `buckets() / max_buckets` calls.
    pub fn expire_step(&mut self, now: u32, max_buckets: usize) -> usize {
        let mut reclaimed = 0;
        for _ in 0..max_buckets.min(self.tags.len()) {
            let b = self.sweep as usize;
            self.sweep = (self.sweep + 1) & self.mask;
            let mut occupied = !match_mask(&self.tags[b].0, 0) & ((1 << WAYS) - 1);
            while occupied != 0 {
                let s = b * WAYS + occupied.trailing_zeros() as usize;
                occupied &= occupied - 1;
                if self.slot_expired(s, now) {
                    self.free(s);
                    reclaimed += 1;
                }
            }
        }
        self.stats.expired += reclaimed as u64;
        reclaimed
    }

    /// Paged dump for the control plane: calls `f` for every live entry among the next
    /// `max_slots` slots from `cursor`, and returns where to continue, or `None` at the end.
    /// Weakly consistent: entries inserted, removed or displaced between pages may be missed or
    /// (displaced ones) reported twice.
    pub fn dump_page<F: FnMut(&K, &FlowEntry)>(
        &self,
        cursor: DumpCursor,
        max_slots: usize,
        now: u32,
        mut f: F,
    ) -> Option<DumpCursor> {
        let start = cursor.0.min(self.slots.len());
        let end = start.saturating_add(max_slots).min(self.slots.len());
        for s in start..end {
            if self.tags[s / WAYS].0[s % WAYS] != 0 && !self.slot_expired(s, now) {
                f(self.key_at(s), &self.slots[s].entry);
            }
        }
        (end < self.slots.len()).then_some(DumpCursor(end))
    }

    /// Every live entry at `now`.
    pub fn iter(&self, now: u32) -> impl Iterator<Item = (&K, &FlowEntry)> + '_ {
        (0..self.slots.len())
            .filter(move |&s| self.tags[s / WAYS].0[s % WAYS] != 0 && !self.slot_expired(s, now))
            .map(|s| (self.key_at(s), &self.slots[s].entry))
    }

    /// Number of live entries at `now` (scans the whole table).
    pub fn count_live(&self, now: u32) -> usize {
        self.iter(now).count()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// Stand-in for the 40-byte `FlowKey` (two IPv6 addresses, ports, protocol, padding).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
    struct Key40([u32; 10]);

    /// No `Default`: the table must not need it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    struct Key40Align8([u64; 5]);

    fn key(i: u32) -> Key40 {
        let mut k = Key40::default();
        k.0[0] = i;
        k.0[9] = !i;
        k
    }

    fn hash(i: u32) -> u32 {
        let mut h = i.wrapping_add(0x9e37_79b9);
        h ^= h >> 16;
        h = h.wrapping_mul(0x7feb_352d);
        h ^= h >> 15;
        h = h.wrapping_mul(0x846c_a68b);
        h ^ (h >> 16)
    }

    fn tcp(appliance: u16) -> FlowEntry {
        FlowEntry::new(
            ProtoClass::Tcp,
            appliance,
            0,
            0xc00c_1e00 | u32::from(appliance),
        )
    }

    fn udp(appliance: u16) -> FlowEntry {
        FlowEntry::new(ProtoClass::Other, appliance, 1, 0)
    }

    fn table(flows: usize) -> FlowTable<Key40> {
        FlowTable::with_capacity(flows, Timeouts::default()).unwrap()
    }

    #[test]
    fn test_entry_size() {
        assert_eq!(
            std::mem::size_of::<FlowEntry>(),
            16,
            "instance and closed fit the padding"
        );
        assert_eq!(std::mem::size_of::<Key40>(), 40);
        assert_eq!(std::mem::size_of::<Slot<Key40>>(), 56);
        assert_eq!(std::mem::size_of::<Slot<Key40Align8>>(), 56);
        assert_eq!(FlowTable::<Key40>::bytes_per_slot(), 60);
        assert!(FlowTable::<Key40Align8>::bytes_per_slot() <= 64);
        assert_eq!(std::mem::size_of::<Tags>(), 32);
        assert_eq!(std::mem::align_of::<Tags>(), 32);
        // 10 M flows round up to 2^21 buckets.
        let slots = 10_000_000usize.div_ceil(WAYS).next_power_of_two() * WAYS;
        assert_eq!(slots, 1 << 24);
        assert_eq!(slots * FlowTable::<Key40>::bytes_per_slot(), 1_006_632_960);
    }

    #[test]
    fn test_key_without_default() {
        let mut t: FlowTable<Key40Align8> =
            FlowTable::with_capacity(64, Timeouts::default()).unwrap();
        let k = Key40Align8([1, 2, 3, 4, 5]);
        t.insert(k, 77, udp(5), 0).unwrap();
        assert_eq!(t.lookup(&k, 77, 1).unwrap().appliance, 5);
        assert_eq!(t.iter(1).map(|(k, _)| k.0[4]).collect::<Vec<_>>(), [5]);
    }

    #[test]
    fn test_capacity_rounding() {
        for (flows, slots) in [
            (0, 16),
            (1, 16),
            (16, 16),
            (17, 32),
            (100, 128),
            (1000, 1024),
        ] {
            let t = table(flows);
            assert_eq!(t.capacity(), slots, "{flows}");
            assert_eq!(t.buckets(), slots / WAYS);
            assert_eq!(t.memory_bytes(), slots * 60);
        }
        assert_eq!(table(1 << 20).capacity(), 1 << 20);
        assert_eq!(table((1 << 20) + 1).capacity(), 1 << 21);
        assert!(matches!(
            FlowTable::<Key40>::with_capacity(MAX_SLOTS + 1, Timeouts::default()),
            Err(FlowTableError::CapacityTooLarge { .. })
        ));
    }

    #[test]
    fn test_timeouts_validation() {
        assert_eq!(Timeouts::default(), Timeouts::new(350, 120).unwrap());
        assert_eq!(Timeouts::new(59, 120), Err(FlowTableError::TcpTimeout(59)));
        assert_eq!(
            Timeouts::new(6001, 120),
            Err(FlowTableError::TcpTimeout(6001))
        );
        assert_eq!(Timeouts::new(60, 0), Err(FlowTableError::OtherTimeout(0)));
        assert!(Timeouts::new(60, 6000).is_ok());
        assert!(Timeouts::new(6000, 1).is_ok());
    }

    #[test]
    fn test_insert_lookup() {
        let mut t = table(100);
        assert!(t.lookup(&key(1), hash(1), 10).is_none());
        let e = t.insert(key(1), hash(1), tcp(7), 10).unwrap();
        assert_eq!(e.appliance, 7);
        assert_eq!(e.last_seen(), 10);
        e.generation = 3;
        let e = t.lookup(&key(1), hash(1), 11).unwrap();
        assert_eq!((e.appliance, e.cookie, e.generation), (7, 0xc00c_1e07, 3));
        assert_eq!(e.last_seen(), 11);
        assert_eq!(t.len(), 1);
        // Same hash, different key: a miss.
        assert!(t.lookup(&key(2), hash(1), 11).is_none());
        // Overwrite in place.
        t.insert(key(1), hash(1), tcp(9), 12).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(&key(1), hash(1), 12).unwrap().appliance, 9);
        assert_eq!(t.stats().replaced, 1);
        assert_eq!(t.remove(&key(1), hash(1)).unwrap().appliance, 9);
        assert!(t.remove(&key(1), hash(1)).is_none());
        assert!(t.is_empty());
    }

    #[test]
    fn test_hash_zero_and_collisions() {
        let mut t = table(16);
        for i in 0..5 {
            t.insert(key(i), 0, udp(i as u16), 0).unwrap();
        }
        for i in 0..5 {
            assert_eq!(t.lookup(&key(i), 0, 1).unwrap().appliance, i as u16);
        }
        assert!(t.get(&key(9), 0, 1).is_none());
    }

    #[test]
    fn test_expiry_per_protocol() {
        let mut t = table(100);
        t.insert(key(1), hash(1), tcp(1), 1000).unwrap();
        t.insert(key(2), hash(2), udp(2), 1000).unwrap();
        // Alive while idle <= timeout.
        assert!(t.get(&key(2), hash(2), 1120).is_some());
        assert!(t.get(&key(2), hash(2), 1121).is_none());
        assert!(t.get(&key(1), hash(1), 1350).is_some());
        assert!(t.get(&key(1), hash(1), 1351).is_none());
        // A lookup refreshes.
        assert!(t.lookup(&key(1), hash(1), 1300).is_some());
        assert!(t.lookup(&key(1), hash(1), 1650).is_some());
        // Lookup of an expired entry reclaims it.
        assert!(t.lookup(&key(2), hash(2), 1200).is_none());
        assert_eq!(t.len(), 1);
        assert_eq!(t.stats().expired, 1);
        // Configured timeouts apply to existing entries.
        t.set_timeouts(Timeouts::new(60, 120).unwrap());
        assert!(t.get(&key(1), hash(1), 1711).is_none());
        assert_eq!(t.count_live(1711), 0);
        assert_eq!(t.expire_step(1711, usize::MAX), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn test_expiry_per_group() {
        let mut t = table(100);
        let mut per_group = GroupTimeouts::default();
        per_group.set(1, Timeouts::new(60, 30).unwrap());
        per_group.set(TIMEOUT_GROUPS, Timeouts::new(60, 1).unwrap()); // past the end: ignored
        t.set_group_timeouts(&per_group);
        let udp_of = |group: u16| FlowEntry::new(ProtoClass::Other, 1, group, 0);
        t.insert(key(1), hash(1), udp_of(0), 1000).unwrap();
        t.insert(key(2), hash(2), udp_of(1), 1000).unwrap();
        t.insert(key(3), hash(3), udp_of(u16::MAX), 1000).unwrap();
        // Group 1: 30 s; groups 0 and past the end (the last group's): the default 120 s.
        assert!(t.get(&key(2), hash(2), 1030).is_some());
        assert!(t.get(&key(2), hash(2), 1031).is_none());
        assert!(t.get(&key(1), hash(1), 1120).is_some());
        assert!(t.get(&key(3), hash(3), 1120).is_some());
        assert!(t.get(&key(1), hash(1), 1121).is_none());
        assert_eq!(t.expire_step(1031, usize::MAX), 1);
        assert_eq!(t.len(), 2);
        assert_eq!(*t.timeouts().for_group(1), Timeouts::new(60, 30).unwrap());
    }

    #[test]
    fn test_wraparound() {
        let mut t = table(100);
        let start = u32::MAX - 50;
        t.insert(key(1), hash(1), udp(1), start).unwrap();
        let later = start.wrapping_add(120); // 69 after the wrap
        assert!(later < start);
        assert!(t.lookup(&key(1), hash(1), later).is_some());
        assert!(t.get(&key(1), hash(1), later.wrapping_add(120)).is_some());
        assert!(t.get(&key(1), hash(1), later.wrapping_add(121)).is_none());
    }

    #[test]
    fn test_expire_step_bounded_round_robin() {
        let mut t = table(1024); // 128 buckets
        for i in 0..500 {
            t.insert(key(i), hash(i), udp(0), 0).unwrap();
        }
        t.insert(key(9999), hash(9999), tcp(0), 0).unwrap();
        let mut total = 0;
        for _ in 0..16 {
            total += t.expire_step(200, 8);
        }
        // 16 x 8 buckets = one full sweep: every expired UDP entry, not the live TCP one.
        assert_eq!(total, 500);
        assert_eq!(t.len(), 1);
        assert_eq!(t.expire_step(200, 1000), 0);
        assert!(t.get(&key(9999), hash(9999), 200).is_some());
        assert_eq!(t.stats().expired, 500);
    }

    /// Fills a table until the first insert fails; returns the load factor reached.
    fn fill_until_full(t: &mut FlowTable<Key40>, now: u32) -> f64 {
        let mut i = 0;
        while t.insert(key(i), hash(i), tcp(1), now).is_ok() {
            i += 1;
        }
        t.len() as f64 / t.capacity() as f64
    }

    #[test]
    fn test_full_table_never_evicts_live() {
        let mut t = table(1 << 12);
        let load = fill_until_full(&mut t, 0);
        assert!(load > 0.80, "first failure at load {load}");
        let n = t.len();
        assert_eq!(t.stats().full_misses, 1);
        // Keep inserting new flows: some fail, none evicts a live entry.
        let mut failed = 1;
        for i in 100_000..110_000 {
            if t.insert(key(i), hash(i), udp(2), 5).is_err() {
                failed += 1;
            }
        }
        assert_eq!(t.stats().full_misses, failed);
        for i in 0..n as u32 {
            assert_eq!(t.get(&key(i), hash(i), 5).unwrap().appliance, 1, "flow {i}");
        }
        // Once the first flows expire their slots are reused lazily by inserts.
        let now = 5 + DEFAULT_TCP_TIMEOUT + 1;
        let before = t.stats().expired;
        for i in 200_000..200_100 {
            t.insert(key(i), hash(i), udp(3), now).unwrap();
        }
        assert!(t.stats().expired > before);
    }

    #[test]
    #[ignore = "prints figures; run with --ignored --nocapture"]
    fn measure_fill_load() {
        for shift in [10, 16, 20] {
            let mut t = table(1 << shift);
            println!(
                "{} slots: first TableFull at {:.3}",
                t.capacity(),
                fill_until_full(&mut t, 0)
            );
        }
    }

    #[test]
    fn test_no_allocation_after_construction() {
        let mut t = table(256);
        let (tags, slots) = (t.tags.as_ptr(), t.slots.as_ptr());
        let cap = t.capacity();
        for round in 0..5u32 {
            for i in 0..10_000 {
                let _ = t.insert(key(i), hash(i), tcp(1), round * 400);
                let _ = t.lookup(&key(i / 2), hash(i / 2), round * 400);
            }
            t.expire_step(round * 400, 7);
        }
        assert_eq!(
            (t.tags.as_ptr(), t.slots.as_ptr(), t.capacity()),
            (tags, slots, cap)
        );
    }

    #[test]
    fn test_dump_pages() {
        let mut t = table(1000);
        for i in 0..300 {
            t.insert(key(i), hash(i), udp(i as u16), 0).unwrap();
        }
        for i in 300..400 {
            t.insert(key(i), hash(i), udp(0), 0).unwrap();
            t.remove(&key(i), hash(i));
        }
        let mut seen = Vec::new();
        let mut cursor = Some(DumpCursor::START);
        let mut pages = 0;
        while let Some(c) = cursor {
            cursor = t.dump_page(c, 100, 1, |k, e| seen.push((k.0[0], e.appliance)));
            pages += 1;
        }
        assert_eq!(pages, t.capacity().div_ceil(100));
        seen.sort_unstable();
        assert_eq!(seen, (0..300).map(|i| (i, i as u16)).collect::<Vec<_>>());
        // Nothing live at a later time.
        assert_eq!(
            t.dump_page(DumpCursor::START, usize::MAX, 500, |_, _| panic!()),
            None
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u16, bool),
        Lookup(u8),
        Remove(u8),
        Advance(u16),
        Expire(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..60, any::<u16>(), any::<bool>()).prop_map(|(k, a, t)| Op::Insert(k, a, t)),
            4 => (0u8..60).prop_map(Op::Lookup),
            1 => (0u8..60).prop_map(Op::Remove),
            2 => (0u16..200).prop_map(Op::Advance),
            1 => (0u8..4).prop_map(Op::Expire),
        ]
    }

    /// Keys k and k + 20 share a hash: exercises the key compare behind equal tags.
    fn model_hash(k: u8) -> u32 {
        hash(u32::from(k % 20))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// The table behaves like a HashMap with idle expiry, except that an insert may fail
        /// with TableFull, and then only when both candidate buckets hold live entries only.
        #[test]
        fn prop_matches_model(
            ops in prop::collection::vec(op(), 1..300),
            start in prop_oneof![Just(0u32), Just(u32::MAX - 300), any::<u32>()],
            cap in prop_oneof![Just(16usize), Just(64)],
        ) {
            let timeouts = Timeouts::new(60, 30).unwrap();
            let mut t: FlowTable<Key40> = FlowTable::with_capacity(cap, timeouts).unwrap();
            let mut model: HashMap<u8, FlowEntry> = HashMap::new();
            let mut now = start;
            for op in ops {
                match op {
                    Op::Insert(k, a, is_tcp) => {
                        let class = if is_tcp { ProtoClass::Tcp } else { ProtoClass::Other };
                        let v = FlowEntry::new(class, a, 3, u32::from(a) << 8);
                        let h = model_hash(k);
                        let full_before = t.stats().full_misses;
                        match t.insert(key(k.into()), h, v, now) {
                            Ok(e) => {
                                let mut want = v;
                                want.last_seen = now;
                                prop_assert_eq!(*e, want);
                                model.insert(k, want);
                            }
                            Err(TableFull) => {
                                prop_assert_eq!(t.stats().full_misses, full_before + 1);
                                let live = model.get(&k).is_some_and(|e| !e.is_expired(now, &timeouts));
                                prop_assert!(!live, "TableFull for a live key");
                                let (b1, b2) = t.buckets_of(tag_of(h));
                                for s in (b1 * WAYS..(b1 + 1) * WAYS).chain(b2 * WAYS..(b2 + 1) * WAYS) {
                                    let tag = t.tags[s / WAYS].0[s % WAYS];
                                    prop_assert!(tag != 0);
                                    prop_assert!(!t.slot_expired(s, now));
                                    // And no resident could move to its other bucket.
                                    let (x1, x2) = t.buckets_of(tag);
                                    prop_assert!(match_mask(&t.tags[x1].0, 0) == 0);
                                    prop_assert!(match_mask(&t.tags[x2].0, 0) == 0);
                                }
                            }
                        }
                    }
                    Op::Lookup(k) => {
                        let got = t.lookup(&key(k.into()), model_hash(k), now).copied();
                        let want = match model.get_mut(&k) {
                            Some(e) if !e.is_expired(now, &timeouts) => {
                                e.last_seen = now;
                                Some(*e)
                            }
                            _ => None,
                        };
                        prop_assert_eq!(got, want);
                    }
                    Op::Remove(k) => {
                        let got = t.remove(&key(k.into()), model_hash(k))
                            .filter(|e| !e.is_expired(now, &timeouts));
                        let want = model.remove(&k).filter(|e| !e.is_expired(now, &timeouts));
                        prop_assert_eq!(got, want);
                    }
                    Op::Advance(d) => now = now.wrapping_add(u32::from(d)),
                    Op::Expire(b) => {
                        t.expire_step(now, usize::from(b));
                    }
                }
                model.retain(|_, e| !e.is_expired(now, &timeouts));
                prop_assert!(t.len() >= model.len());
                prop_assert_eq!(t.count_live(now), model.len());
            }
            let mut live: Vec<(u32, FlowEntry)> = t.iter(now).map(|(k, e)| (k.0[0], *e)).collect();
            live.sort_unstable_by_key(|(k, _)| *k);
            let mut want: Vec<(u32, FlowEntry)> =
                model.iter().map(|(&k, &e)| (u32::from(k), e)).collect();
            want.sort_unstable_by_key(|(k, _)| *k);
            prop_assert_eq!(live, want);
        }
    }

    #[test]
    fn test_flow_cookies_of_one_tuple_differ_and_are_recognised() {
        for hash in [0u32, 1, 0x8000_0000, 0xffff_ffff, 0x1234_5678] {
            let cookies: std::collections::HashSet<u32> = (0..COOKIE_INSTANCES)
                .map(|i| flow_cookie(hash, i))
                .collect();
            assert_eq!(cookies.len(), usize::from(COOKIE_INSTANCES), "{hash:#x}");
            assert_eq!(
                flow_cookie(hash, 0),
                hash,
                "the first connection's is the hash"
            );
            assert_eq!(flow_cookie(hash, COOKIE_INSTANCES), hash, "they repeat");
            assert!(cookies.iter().all(|&c| is_flow_cookie(hash, c)));
            assert!(!is_flow_cookie(hash, hash ^ 1));
        }
    }
}
