//! Ethernet II frames ([RFC 894], IEEE 802.3 clause 3.2.6 type interpretation) and their
//! IEEE 802.1Q VLAN tags (C-tag, ethertype 0x8100; S-tag of 802.1ad QinQ, 0x88a8).
//!
//! ```text
//! +--------------------+--------------------+-----------+---------
//! | destination (6)    | source (6)         | type (2)  | payload
//! +--------------------+--------------------+-----------+---------
//!
//! an 802.1Q tag in place of the type:   | 0x8100 | PCP(3) DEI(1) VID(12) | type (2) |
//! ```
//!
//! gwlb writes one kind of Ethernet header: an untagged one in front of an IP packet
//! (encapsulation templates, decapsulated returns, fail-open forwarding, TCP resets keep the
//! received one). VLAN tags are only read.
//!
//! [RFC 894]: https://www.rfc-editor.org/rfc/rfc894

use super::{get_array, get_u16, set_u16, Error, MacAddr};

mod field {
    use crate::wire::Field;

    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: core::ops::RangeFrom<usize> = super::HEADER_LEN..;
}

mod tag_field {
    use crate::wire::Field;

    /// Tag control information: PCP (3 bits), DEI (1), VID (12).
    pub const TCI: Field = 0..2;
    /// The ethertype of what follows the tag.
    pub const ETHERTYPE: Field = 2..4;
    pub const PCP_SHIFT: u32 = 13;
    pub const DEI: u16 = 0x1000;
    pub const VID_MASK: u16 = 0x0fff;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = 14;

/// Length of one 802.1Q / 802.1ad tag (the tag's own TPID is the ethertype before it).
pub const TAG_LEN: usize = 4;

/// Ethertypes gwlb reads or writes ([IEEE registry]).
///
/// [IEEE registry]: https://standards-oui.ieee.org/ethertype/eth.txt
pub mod ethertype {
    /// IPv4 (RFC 894).
    pub const IPV4: u16 = 0x0800;
    /// ARP (RFC 826; passed to the control plane).
    pub const ARP: u16 = 0x0806;
    /// IEEE 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// IEEE 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    /// IPv6 (RFC 2464).
    pub const IPV6: u16 = 0x86dd;

    /// The ethertype of an IP packet of this version.
    #[inline]
    pub const fn of_ip(ipv6: bool) -> u16 {
        if ipv6 {
            IPV6
        } else {
            IPV4
        }
    }
}

/// A read/write view of an Ethernet II header at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking it: accessors panic if it is shorter than
    /// [`HEADER_LEN`]. Over a `[u8; HEADER_LEN]` (or longer array) no access is checked.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps a received buffer after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Frame<T>, Error> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// [`Error::Truncated`] if the buffer is shorter than the header.
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::DESTINATION))
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::SOURCE))
    }

    /// EtherType (or the TPID of a VLAN tag).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// What follows the 14-byte header (a VLAN tag's TCI, or the payload).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, value: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&value.0);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, value: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&value.0);
    }

    /// Sets the EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ETHERTYPE, value);
    }

    /// Swaps source and destination address (a frame sent back to where it came from).
    #[inline]
    pub fn swap_addrs(&mut self) {
        let b = self.buffer.as_mut();
        let (dst, rest) = b.split_at_mut(field::SOURCE.start);
        dst.swap_with_slice(&mut rest[..field::SOURCE.len()]);
    }

    /// What follows the header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// A read/write view of one 802.1Q / 802.1ad tag: the 4 bytes after a VLAN TPID (the TCI and
/// the ethertype of what follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// Wraps a buffer without checking it (accessors panic below [`TAG_LEN`] bytes).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> VlanTag<T> {
        VlanTag { buffer }
    }

    /// Wraps a received buffer after checking it holds a whole tag.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<VlanTag<T>, Error> {
        if buffer.as_ref().len() < TAG_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// Tag control information (PCP, DEI, VID).
    #[inline]
    pub fn tci(&self) -> u16 {
        get_u16(self.buffer.as_ref(), tag_field::TCI)
    }

    /// VLAN identifier (12 bits).
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & tag_field::VID_MASK
    }

    /// Priority code point (3 bits).
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> tag_field::PCP_SHIFT) as u8
    }

    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & tag_field::DEI != 0
    }

    /// The ethertype of what follows the tag (another TPID for QinQ).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), tag_field::ETHERTYPE)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    /// Sets the tag control information.
    #[inline]
    pub fn set_tci(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), tag_field::TCI, value);
    }

    /// Sets the ethertype of what follows.
    #[inline]
    pub fn set_ethertype(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), tag_field::ETHERTYPE, value);
    }
}

/// An untagged Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src_addr: MacAddr,
    /// Destination address.
    pub dst_addr: MacAddr,
    /// EtherType of the payload.
    pub ethertype: u16,
}

impl Repr {
    /// Reads the header of a checked frame.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr, Error> {
        frame.check_len()?;
        Ok(Repr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `frame`.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 02:00:00:00:00:02 <- 02:00:00:00:00:01, IPv4, then 4 payload bytes.
    static FRAME_BYTES: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0xaa,
        0xbb, 0xcc, 0xdd,
    ];

    /// QinQ: S-tag VID 100 (PCP 5), C-tag VID 7 (DEI), then IPv6.
    static QINQ_BYTES: [u8; 22] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0xa8, 0xa0,
        0x64, 0x81, 0x00, 0x10, 0x07, 0x86, 0xdd,
    ];

    const SRC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const DST: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn repr() -> Repr {
        Repr {
            src_addr: SRC,
            dst_addr: DST,
            ethertype: ethertype::IPV4,
        }
    }

    #[test]
    fn test_deconstruct() {
        let f = Frame::new_checked(&FRAME_BYTES[..]).unwrap();
        assert_eq!(f.dst_addr(), DST);
        assert_eq!(f.src_addr(), SRC);
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn test_construct() {
        let mut b = [0xa5u8; 18];
        let mut f = Frame::new_unchecked(&mut b);
        f.set_dst_addr(DST);
        f.set_src_addr(SRC);
        f.set_ethertype(ethertype::IPV4);
        f.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(b, FRAME_BYTES);
    }

    #[test]
    fn test_parse() {
        let f = Frame::new_unchecked(&FRAME_BYTES[..]);
        assert_eq!(Repr::parse(&f), Ok(repr()));
    }

    #[test]
    // A slice of run-time length, as buffers are on the data path (no fixed-size view).
    #[allow(clippy::useless_vec)]
    fn test_emit() {
        let mut b = vec![0xa5u8; 18];
        repr().emit(&mut Frame::new_unchecked(&mut b[..]));
        assert_eq!(&b[..HEADER_LEN], &FRAME_BYTES[..HEADER_LEN]);
        assert_eq!(&b[HEADER_LEN..], &[0xa5; 4], "payload untouched");
        assert_eq!(repr().buffer_len(), HEADER_LEN);
    }

    #[test]
    fn test_emit_into_array() {
        let mut b = [0xa5u8; HEADER_LEN];
        repr().emit(&mut Frame::new_unchecked(&mut b));
        assert_eq!(b[..], FRAME_BYTES[..HEADER_LEN]);
    }

    #[test]
    fn test_swap_addrs() {
        let mut b = FRAME_BYTES;
        Frame::new_unchecked(&mut b).swap_addrs();
        let f = Frame::new_unchecked(&b);
        assert_eq!((f.dst_addr(), f.src_addr()), (SRC, DST));
        assert_eq!(f.ethertype(), ethertype::IPV4);
    }

    #[test]
    fn test_vlan_tags() {
        let f = Frame::new_checked(&QINQ_BYTES[..]).unwrap();
        assert_eq!(f.ethertype(), ethertype::QINQ);
        let s = VlanTag::new_checked(f.payload()).unwrap();
        assert_eq!((s.vid(), s.pcp(), s.dei()), (100, 5, false));
        assert_eq!(s.ethertype(), ethertype::VLAN);
        let c = VlanTag::new_checked(&f.payload()[TAG_LEN..]).unwrap();
        assert_eq!((c.vid(), c.pcp(), c.dei()), (7, 0, true));
        assert_eq!(c.ethertype(), ethertype::IPV6);

        let mut b = [0xa5u8; TAG_LEN];
        let mut t = VlanTag::new_unchecked(&mut b);
        t.set_tci(0x1007);
        t.set_ethertype(ethertype::IPV6);
        assert_eq!(b, QINQ_BYTES[18..22]);
    }

    #[test]
    fn test_truncated() {
        assert_eq!(
            Frame::new_checked(&FRAME_BYTES[..13]).err(),
            Some(Error::Truncated)
        );
        assert!(Frame::new_checked(&FRAME_BYTES[..14]).is_ok());
        assert_eq!(
            Repr::parse(&Frame::new_unchecked(&FRAME_BYTES[..5])),
            Err(Error::Truncated)
        );
        assert_eq!(
            VlanTag::new_checked(&QINQ_BYTES[14..17]).err(),
            Some(Error::Truncated)
        );
    }

    #[test]
    fn test_ethertype_of_ip() {
        assert_eq!(ethertype::of_ip(false), 0x0800);
        assert_eq!(ethertype::of_ip(true), 0x86dd);
    }
}
