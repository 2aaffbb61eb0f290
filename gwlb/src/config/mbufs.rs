//! The mbufs a configuration's ports need (no DPDK): their data room, the ring frames
//! gwlb gives `net_af_packet`, and what a `net_af_xdp` port can carry. Validation refuses
//! what does not fit ([`af_xdp`]); `dataplane::ports` sizes the pools with the same numbers
//! (and checks the DPDK constants mirrored here against the bindings' own).

use super::{Device, Port};

/// Bytes DPDK keeps free in front of a received frame (`RTE_PKTMBUF_HEADROOM`).
pub const MBUF_HEADROOM: u32 = 128;

/// DPDK's default mbuf data room (`RTE_MBUF_DEFAULT_BUF_SIZE`: 2048 + the headroom).
pub const DEFAULT_DATA_ROOM: u32 = 2048 + MBUF_HEADROOM;

/// What a `net_af_packet` ring frame holds beyond the packet, as the PMD counts it
/// (`TPACKET2_HDRLEN` less the `sockaddr_ll` it overlaps).
pub const TPACKET_OVERHEAD: u32 = 32;

/// What a `net_af_xdp` port carries (DPDK 22.11). Where the kernel headers have
/// `XDP_UMEM_UNALIGNED_CHUNK_FLAG` (Linux 5.4 and later, so every supported system) the PMD
/// runs zero-copy: its UMEM is gwlb's mbuf pool, one chunk per mbuf (the whole mempool
/// object), and the kernel writes a received frame [`XDP_HEADROOM`] past the chunk's own
/// headroom, which the PMD sets to end where the mbuf's data room starts after
/// [`MBUF_HEADROOM`]. So the frame starts 384 bytes into the data room, not 128, and the
/// kernel refuses chunks larger than a page ([`CHUNK_MAX`]), which bounds the data room of
/// the *whole pool*, shared by every port of the worker: with an af_xdp port, no port may
/// need more.
pub mod af_xdp {
    use super::MBUF_HEADROOM;

    /// The kernel's largest UMEM chunk: one page (`xdp_umem_reg`).
    pub const CHUNK_MAX: u32 = 4096;
    /// A mempool object's header (`rte_mempool_objhdr`, 24 bytes, padded to a cache line).
    pub const OBJECT_HEADER: u32 = 64;
    /// `struct rte_mbuf` (two cache lines); gwlb's pools have no private area.
    pub const MBUF_STRUCT: u32 = 128;
    /// `XDP_PACKET_HEADROOM`: room the kernel keeps in front of a received frame.
    pub const XDP_HEADROOM: u32 = 256;
    /// The largest mbuf data room a chunk holds (3,904 bytes).
    pub const MAX_DATA_ROOM: u32 = CHUNK_MAX - OBJECT_HEADER - MBUF_STRUCT;
    /// The largest frame an af_xdp port receives whole (3,520 bytes).
    pub const MAX_FRAME: u32 = MAX_DATA_ROOM - MBUF_HEADROOM - XDP_HEADROOM;
    /// The largest `mtu` of an af_xdp port: its largest frame less Ethernet and two VLAN
    /// tags (3,498 bytes).
    pub const MAX_MTU: u16 = (MAX_FRAME - super::L2_MAX) as u16;
}

/// Ethernet header and two VLAN tags (QinQ): what a frame holds beyond its L3 MTU.
pub const L2_MAX: u32 = 14 + 8;

/// The largest Ethernet frame a port of L3 MTU `mtu` carries: the MTU plus the Ethernet header
/// and two VLAN tags (QinQ).
pub fn max_frame(mtu: u16) -> u32 {
    u32::from(mtu) + L2_MAX
}

impl Device {
    /// Whether this is a `net_af_xdp` vdev.
    pub fn is_af_xdp(&self) -> bool {
        matches!(self, Device::Vdev(spec) if spec.starts_with("net_af_xdp"))
    }

    /// Whether this is a `net_af_packet` vdev.
    pub fn is_af_packet(&self) -> bool {
        matches!(self, Device::Vdev(spec) if spec.starts_with("net_af_packet"))
    }
}

/// The ring frame size of a `net_af_packet` vdev (`None` for other devices) and whether gwlb
/// chooses it. The PMD's default is 2,048 bytes with the tpacket header, too small above an
/// MTU of about 1,990; for a larger MTU gwlb uses whole pages that hold a frame (12 KiB at
/// 9000), unless the spec sets `framesz` or `blocksz`. The PMD lays ring frames out every
/// `framesz` bytes, so `blocksz` must be a multiple of it: gwlb sets both equal.
pub fn af_packet_framesz(spec: &str, mtu: u16) -> Option<(u32, bool)> {
    const DEFAULT_FRAMESZ: u32 = 2048;
    if !spec.starts_with("net_af_packet") {
        return None;
    }
    let arg = |k: &str| {
        super::values::vdev_arg(spec, k).map(|v| v.parse::<u32>().unwrap_or(DEFAULT_FRAMESZ))
    };
    if let Some(f) = arg("framesz") {
        return Some((f, false));
    }
    let need = max_frame(mtu) + TPACKET_OVERHEAD;
    if arg("blocksz").is_some() || need <= DEFAULT_FRAMESZ {
        return Some((DEFAULT_FRAMESZ, false));
    }
    Some((need.next_multiple_of(4096), true))
}

/// The data room one port needs in an mbuf: the headroom in front of a frame (DPDK's, and
/// for `net_af_xdp` the kernel's XDP headroom too) plus its largest frame, or more where a
/// `net_af_packet` port's ring frames are larger (the PMD refuses ring frames that do not fit
/// one mbuf).
pub fn port_data_room(p: &Port) -> u32 {
    let ring = match &p.device {
        Device::Vdev(spec) => af_packet_framesz(spec, p.mtu).map(|(f, _)| f),
        Device::Pci { .. } => None,
    };
    let ring_data = ring.map_or(0, |f| f.saturating_sub(TPACKET_OVERHEAD));
    let xdp = if p.device.is_af_xdp() {
        af_xdp::XDP_HEADROOM
    } else {
        0
    };
    MBUF_HEADROOM + xdp + max_frame(p.mtu).max(ring_data)
}

/// Data room of gwlb's mbufs: the most any port needs ([`port_data_room`]), so a frame
/// always arrives in one segment (a 9000-byte MTU included), at least DPDK's default (2,176
/// bytes), rounded up to a cache line. A frame longer than that arrives as a chain of
/// segments, which the pipeline drops as `oversize`.
pub fn data_room(ports: &[Port]) -> u16 {
    let room = ports
        .iter()
        .map(port_data_room)
        .max()
        .unwrap_or(0)
        .next_multiple_of(64)
        .max(DEFAULT_DATA_ROOM);
    u16::try_from(room).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn cfg(ports: &[(&str, u16)]) -> Config {
        let mut text = String::from("[dataplane]\nworker_cpus = [1]\n");
        for (i, (dev, mtu)) in ports.iter().enumerate() {
            text.push_str(&format!(
                "[[ports]]\nname = \"p{i}\"\ndevice = \"{dev}{i}\"\nrole = \"{}\"\n\
                 address = \"10.{i}.0.1/24\"\nmtu = {mtu}\n",
                if i == 0 { "user" } else { "appliance" }
            ));
        }
        text.push_str(
            "[[target_groups]]\nname = \"g\"\n[target_groups.health_check]\nenabled = false\n",
        );
        Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn af_xdp_limits() {
        assert_eq!(af_xdp::MAX_DATA_ROOM, 3904);
        assert_eq!(af_xdp::MAX_FRAME, 3520);
        assert_eq!(af_xdp::MAX_MTU, 3498);
        // At the largest MTU, the pool's data room is exactly what one chunk holds.
        let xdp = "net_af_xdp";
        let c = cfg(&[(xdp, af_xdp::MAX_MTU), ("net_null", 1500)]);
        assert_eq!(u32::from(data_room(&c.ports)), af_xdp::MAX_DATA_ROOM);
    }

    /// The frame of an af_xdp port starts 384 bytes into the data room (DPDK's and XDP's
    /// headrooms): the room must hold that much more than a frame, where another port of
    /// the same MTU needs only DPDK's 128.
    #[test]
    fn af_xdp_frames_need_the_xdp_headroom_too() {
        let (xdp, null) = ("net_af_xdp", "net_null");
        for mtu in [1500, 1800, 2500, 3498] {
            let c = cfg(&[(xdp, mtu), (null, 1500)]);
            assert!(
                u32::from(data_room(&c.ports)) >= 128 + 256 + u32::from(mtu) + 22,
                "mtu {mtu}"
            );
        }
        // At 1800 the default room (2,176) holds a null port's frame but not an af_xdp one's.
        assert_eq!(data_room(&cfg(&[(null, 1800), (null, 1500)]).ports), 2176);
        assert_eq!(
            data_room(&cfg(&[(xdp, 1800), (null, 1500)]).ports),
            (384 + 1800 + 22u16).next_multiple_of(64)
        );
    }
}
