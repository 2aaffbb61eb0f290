//! The TCP header ([RFC 9293 section 3.1]).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Port          |       Destination Port        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Sequence Number                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Acknowledgment Number                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Data |       |C|E|U|A|P|R|S|F|                               |
//! | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Checksum            |         Urgent Pointer        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! gwlb emits one kind of TCP segment: an option-less, payload-less reset answering a packet
//! of a flow it has to end (`crate::tcp_reset`, RFC 9293 section 3.10.7.1).
//!
//! [RFC 9293 section 3.1]: https://www.rfc-editor.org/rfc/rfc9293#section-3.1

use super::{checksum, get_u16, get_u32, set_u16, set_u32, Error};

mod field {
    use crate::wire::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// Data offset in 4-byte words (high nibble); the low nibble is reserved.
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// Bytes that hold the two ports, at the start of the header: what a parser of the TCP
/// header quoted in an ICMP error reads (a view over `[u8; PORTS_LEN]` may call only
/// [`Packet::src_port`] and [`Packet::dst_port`]).
pub const PORTS_LEN: usize = field::DST_PORT.end;

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

/// The TCP flags byte (the low 6 bits of the 14th header byte; CWR and ECE, its top two
/// bits, are carried but not named).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;

    /// SYN set.
    #[inline]
    pub const fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    /// ACK set.
    #[inline]
    pub const fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
    /// RST set.
    #[inline]
    pub const fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    /// FIN set.
    #[inline]
    pub const fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    /// SYN without ACK: the only packet that may open a new TCP flow.
    #[inline]
    pub const fn is_initial_syn(self) -> bool {
        self.0 & (Self::SYN | Self::ACK | Self::RST) == Self::SYN
    }
}

impl core::fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const NAMES: [(u8, char); 6] = [
            (TcpFlags::SYN, 'S'),
            (TcpFlags::ACK, 'A'),
            (TcpFlags::FIN, 'F'),
            (TcpFlags::RST, 'R'),
            (TcpFlags::PSH, 'P'),
            (TcpFlags::URG, 'U'),
        ];
        for (bit, c) in NAMES {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        if self.0 == 0 {
            f.write_str(".")?;
        }
        Ok(())
    }
}

/// A read/write view of a TCP header (and what follows) at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it: accessors panic past its end. Over a
    /// `[u8; HEADER_LEN]` array no access is checked.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a received buffer after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// [`Error::Truncated`] if the buffer is shorter than the fixed header or than the data
    /// offset says; [`Error::Malformed`] for a data offset below 5.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            Err(Error::Malformed)
        } else if hl > len {
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

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ_NUM)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// Header length in bytes (data offset * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// Flags.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// Window.
    #[inline]
    pub fn window_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    /// Checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// Whether the checksum of the whole buffer as a segment verifies, given the sum of its
    /// pseudo-header (`checksum::pseudo_header_v4` / `_v6` with the buffer's length).
    pub fn verify_checksum(&self, pseudo_header: u32) -> bool {
        checksum::verifies(pseudo_header, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::SEQ_NUM, value);
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::ACK_NUM, value);
    }

    /// Sets the header length (bytes, a multiple of 4 up to 60); clears the reserved bits.
    #[inline]
    pub fn set_header_len(&mut self, value: usize) {
        self.buffer.as_mut()[field::DATA_OFF] = ((value / 4) as u8) << 4;
    }

    /// Sets the flags.
    #[inline]
    pub fn set_flags(&mut self, value: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = value.0;
    }

    /// Sets the window.
    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::WIN_SIZE, value);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// Computes the checksum over the whole buffer as the segment (header and payload) and
    /// its pseudo-header sum, and writes it.
    #[inline]
    pub fn fill_checksum(&mut self, pseudo_header: u32) {
        self.set_checksum(0);
        let c = checksum::finish(checksum::sum(pseudo_header, self.buffer.as_ref()));
        self.set_checksum(c);
    }
}

/// An option-less TCP header as gwlb emits it (urgent pointer 0; the checksum is written as
/// 0, see [`Packet::fill_checksum`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number (meaningful with ACK).
    pub ack_number: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Window.
    pub window_len: u16,
}

impl Repr {
    /// Reads a checked header (options are skipped, not kept).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, Error> {
        packet.check_len()?;
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header, checksum 0, into the first [`HEADER_LEN`] bytes.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_header_len(HEADER_LEN);
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_checksum(0);
        packet.set_urgent_at(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 443 -> 40000, seq 777, RST, window 0, checksum as for 10.0.0.2 -> 10.0.0.1.
    static PACKET_BYTES: [u8; 20] = [
        0x01, 0xbb, 0x9c, 0x40, 0x00, 0x00, 0x03, 0x09, 0x00, 0x00, 0x00, 0x00, 0x50, 0x04, 0x00,
        0x00, 0xfa, 0xd9, 0x00, 0x00,
    ];

    const SRC: [u8; 4] = [10, 0, 0, 2];
    const DST: [u8; 4] = [10, 0, 0, 1];

    fn repr() -> Repr {
        Repr {
            src_port: 443,
            dst_port: 40000,
            seq_number: 777,
            ack_number: 0,
            flags: TcpFlags(TcpFlags::RST),
            window_len: 0,
        }
    }

    fn pseudo() -> u32 {
        checksum::pseudo_header_v4(&SRC, &DST, crate::wire::proto::TCP, 20)
    }

    #[test]
    fn test_deconstruct() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(p.src_port(), 443);
        assert_eq!(p.dst_port(), 40000);
        assert_eq!(p.seq_number(), 777);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 20);
        assert!(p.flags().rst() && !p.flags().ack());
        assert_eq!(p.window_len(), 0);
        assert_eq!(p.urgent_at(), 0);
        assert!(p.verify_checksum(pseudo()));
    }

    #[test]
    fn test_construct() {
        let mut b = [0xa5u8; 20];
        let mut p = Packet::new_unchecked(&mut b);
        p.set_src_port(443);
        p.set_dst_port(40000);
        p.set_seq_number(777);
        p.set_ack_number(0);
        p.set_header_len(20);
        p.set_flags(TcpFlags(TcpFlags::RST));
        p.set_window_len(0);
        p.set_urgent_at(0);
        p.fill_checksum(pseudo());
        assert_eq!(b, PACKET_BYTES);
    }

    #[test]
    fn test_parse() {
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&PACKET_BYTES[..])),
            Ok(repr())
        );
    }

    #[test]
    // A slice of run-time length, as buffers are on the data path (no fixed-size view).
    #[allow(clippy::useless_vec)]
    fn test_emit() {
        let mut b = vec![0xa5u8; 24];
        let mut p = Packet::new_unchecked(&mut b[..20]);
        repr().emit(&mut p);
        p.fill_checksum(pseudo());
        assert_eq!(&b[..20], &PACKET_BYTES[..]);
        assert_eq!(&b[20..], &[0xa5; 4], "after the header untouched");
        assert_eq!(repr().buffer_len(), 20);
    }

    #[test]
    fn test_flags() {
        let f = TcpFlags(TcpFlags::SYN);
        assert!(f.syn() && f.is_initial_syn() && !f.ack());
        assert!(!TcpFlags(TcpFlags::SYN | TcpFlags::ACK).is_initial_syn());
        assert_eq!(
            format!("{:?}", TcpFlags(TcpFlags::SYN | TcpFlags::ACK)),
            "SA"
        );
        assert_eq!(format!("{:?}", TcpFlags(0)), ".");
    }

    #[test]
    fn test_truncated_and_malformed() {
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..19]).err(),
            Some(Error::Truncated)
        );
        let mut b = PACKET_BYTES;
        b[12] = 0x40;
        assert_eq!(Packet::new_checked(&b[..]).err(), Some(Error::Malformed));
        b[12] = 0x60;
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(Error::Truncated),
            "data offset 24 beyond 20 bytes"
        );
    }
}
