//! Parses arbitrary bytes as a Geneve header, walks every option, and checks that whatever
//! parses re-emits to the same bytes (reserved bits aside) and parses back to the same value.
#![no_main]

use geneve::{AwsOptions, OptionRepr, Packet, Repr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Neither entry point may panic on any input.
    let _ = geneve::parse_aws_header(data);
    let _ = AwsOptions::from_options(data);

    let Ok(packet) = Packet::new_checked(data) else {
        return;
    };
    let _ = (
        packet.version(),
        packet.oam(),
        packet.critical(),
        packet.protocol_type(),
    );
    let _ = (
        packet.vni(),
        packet.payload().len(),
        packet.has_unknown_critical(),
    );

    // The iterator stops for good after its first error.
    let mut options = packet.options_iter();
    let mut parsed: Vec<OptionRepr<'_>> = Vec::new();
    for opt in options.by_ref() {
        match opt {
            Ok(opt) => {
                let _ = (opt.is_critical(), opt.class(), opt.type_());
                parsed.push(opt);
            }
            Err(_) => break,
        }
    }
    assert!(options.next().is_none(), "options iterator not fused");

    // The fast AWS reader agrees with the generic iterator.
    if let Ok(found) = AwsOptions::from_options(packet.options()) {
        let first = |want: fn(&OptionRepr<'_>) -> Option<u64>| parsed.iter().find_map(want);
        assert_eq!(
            found.endpoint_id,
            first(|o| match o {
                OptionRepr::AwsEndpointId(v) => Some(*v),
                _ => None,
            })
        );
        assert_eq!(
            found.attachment_id,
            first(|o| match o {
                OptionRepr::AwsAttachmentId(v) => Some(*v),
                _ => None,
            })
        );
        assert_eq!(
            found.flow_cookie.map(u64::from),
            first(|o| match o {
                OptionRepr::AwsFlowCookie(v) => Some(u64::from(*v)),
                _ => None,
            })
        );
        assert_eq!(
            found.unknown_critical,
            parsed.iter().any(|o| o.is_unknown() && o.is_critical())
        );
    }

    let Ok(repr) = Repr::parse(&packet) else {
        return;
    };
    let len = repr.buffer_len();
    let mut out = vec![0xa5; len + 1];
    assert_eq!(repr.emit(&mut out), Ok(len));
    assert_eq!(out[len], 0xa5, "emit wrote past buffer_len");
    out.truncate(len);

    // Byte-identical except the reserved bits of the fixed header, which emit zeroes.
    let mut want = data[..len].to_vec();
    want[1] &= 0xc0;
    want[7] = 0;
    assert_eq!(out, want);
    assert_eq!(
        Repr::parse(&Packet::new_checked(&out[..]).unwrap()),
        Ok(repr)
    );

    // Options re-emitted from their parsed form give the same option bytes, except each
    // option's three reserved bits, which emit zeroes.
    let mut want = repr.options.to_vec();
    let mut at = 0;
    while at < want.len() {
        want[at + 3] &= 0x1f;
        at += 4 + usize::from(want[at + 3]) * 4;
    }
    let mut area = vec![0u8; geneve::options_buffer_len(&parsed)];
    assert_eq!(geneve::emit_options(&parsed, &mut area), Ok(want.len()));
    assert_eq!(area, want);
});
