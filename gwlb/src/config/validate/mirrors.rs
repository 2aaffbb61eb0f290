//! `[[mirror_sessions]]`: what is copied (ports, prefixes, protocols, L4 ports, direction,
//! sampling, snap length) and to which sensor pool (a target group without user ports).

use std::collections::HashSet;
use std::ops::RangeInclusive;

use super::{check_name, invalid, parse_field, ranged};
use crate::config::raw::RawMirrorSession;
use crate::config::{
    ConfigError, Endpoint, IpNet, MirrorDirection, MirrorSession, Port, TargetGroup,
};

/// Most mirror sessions (per-session counters are fixed arrays in every worker).
pub const MAX_MIRROR_SESSIONS: usize = 16;

pub(super) fn validate_mirror_sessions(
    raw: &[RawMirrorSession],
    ports: &[Port],
    groups: &[TargetGroup],
    port_ref: &dyn Fn(&str, &str) -> Result<usize, ConfigError>,
) -> Result<Vec<MirrorSession>, ConfigError> {
    if raw.len() > MAX_MIRROR_SESSIONS {
        return Err(invalid(
            "mirror_sessions",
            format!("{} sessions: at most {MAX_MIRROR_SESSIONS}", raw.len()),
        ));
    }
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let m = format!("mirror_sessions[{i}]");
        check_name(&format!("{m}.name"), &r.name, 64)?;
        if !names.insert(r.name.as_str()) {
            return Err(invalid(
                format!("{m}.name"),
                format!("{:?} is used by another session", r.name),
            ));
        }
        let field = format!("{m}.target_group");
        let Some(target_group) = groups.iter().position(|g| g.name == r.target_group) else {
            return Err(invalid(
                field,
                format!("{:?}: no target group has this name", r.target_group),
            ));
        };
        if !groups[target_group].user_ports.is_empty() {
            return Err(invalid(
                field,
                format!(
                    "{:?} takes user traffic (user_ports): a sensor pool must have user_ports = []",
                    r.target_group
                ),
            ));
        }
        let sample_one_in = ranged(&format!("{m}.sample_one_in"), r.sample_one_in, 1..=1 << 30)?;
        let snap_length = match r.snap_length {
            0 => None,
            n => Some(ranged(
                &format!("{m}.snap_length"),
                n,
                i64::from(MirrorSession::MIN_SNAP_LENGTH)..=65535,
            )?),
        };
        let mut user_ports = Vec::new();
        for (k, name) in r.user_ports.iter().enumerate() {
            let f = format!("{m}.user_ports[{k}]");
            let p = port_ref(&f, name)?;
            if !ports[p].role.faces_users() {
                return Err(invalid(f, format!("port {name:?} does not face users")));
            }
            user_ports.push(p);
        }
        let prefixes = r
            .prefixes
            .iter()
            .enumerate()
            .map(|(k, t)| parse_field::<IpNet>(&format!("{m}.prefixes[{k}]"), t))
            .collect::<Result<Vec<_>, _>>()?;
        let protocols = r
            .protocols
            .iter()
            .enumerate()
            .map(|(k, &p)| ranged(&format!("{m}.protocols[{k}]"), p, 0..=255))
            .collect::<Result<Vec<u8>, _>>()?;
        let l4_ports = r
            .l4_ports
            .iter()
            .enumerate()
            .map(|(k, t)| port_range(&format!("{m}.l4_ports[{k}]"), t))
            .collect::<Result<Vec<_>, _>>()?;
        if r.direction != MirrorDirection::Both && prefixes.is_empty() {
            return Err(invalid(
                format!("{m}.direction"),
                "a direction is relative to prefixes: give prefixes, or direction = \"both\"",
            ));
        }
        out.push(MirrorSession {
            name: r.name.clone(),
            target_group,
            format: r.format,
            vni: ranged(&format!("{m}.vni"), r.vni, 0..=(1 << 24) - 1)?,
            sample_one_in,
            snap_length,
            copy_point: r.copy_point,
            user_ports,
            prefixes,
            protocols,
            l4_ports,
            direction: r.direction,
            endpoints: Vec::new(),
            rules: Vec::new(),
        });
    }
    Ok(out)
}

/// The endpoints and rules sessions select by (`endpoints`, `rules`), once the endpoints are
/// validated: each endpoint named must exist, and each rule must be one of theirs (or
/// `"default"`, an endpoint's default action); rules without endpoints are refused.
pub(super) fn resolve_mirror_selection(
    raw: &[RawMirrorSession],
    sessions: &mut [MirrorSession],
    endpoints: &[Endpoint],
) -> Result<(), ConfigError> {
    for (i, (r, s)) in raw.iter().zip(sessions.iter_mut()).enumerate() {
        let m = format!("mirror_sessions[{i}]");
        for (k, name) in r.endpoints.iter().enumerate() {
            let Some(e) = endpoints.iter().position(|e| &e.name == name) else {
                return Err(invalid(
                    format!("{m}.endpoints[{k}]"),
                    format!("{name:?}: no endpoint has this name"),
                ));
            };
            if s.endpoints.contains(&e) {
                return Err(invalid(
                    format!("{m}.endpoints[{k}]"),
                    format!("{name:?} is named twice"),
                ));
            }
            s.endpoints.push(e);
        }
        if !r.rules.is_empty() && s.endpoints.is_empty() {
            return Err(invalid(
                format!("{m}.rules"),
                "rules are an endpoint's: name the endpoints too (endpoints = [...])",
            ));
        }
        for (k, name) in r.rules.iter().enumerate() {
            let known = name == "default"
                || s.endpoints
                    .iter()
                    .any(|&e| endpoints[e].rules.iter().any(|x| &x.name == name));
            if !known {
                return Err(invalid(
                    format!("{m}.rules[{k}]"),
                    format!("{name:?}: none of the session's endpoints has a rule of this name"),
                ));
            }
        }
        s.rules = r.rules.clone();
    }
    Ok(())
}

/// `"80"` or `"1000-2000"`.
pub(super) fn port_range(field: &str, text: &str) -> Result<RangeInclusive<u16>, ConfigError> {
    let bad = || {
        invalid(
            field,
            format!(
                "{text:?}: expected a port (\"443\") or a range (\"1000-2000\") within 0-65535"
            ),
        )
    };
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    if a > b {
        return Err(bad());
    }
    Ok(a..=b)
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;
    use crate::config::{CopyPoint, MirrorDirection, MirrorFormat};

    fn session(lines: &str) -> String {
        format!(
            "{MINIMAL}\n[[target_groups]]\nname = \"sensors\"\nuser_ports = []\n[[mirror_sessions]]\nname = \"ids\"\ntarget_group = \"sensors\"\n{lines}\n"
        )
    }

    #[test]
    fn test_mirror_session_rules() {
        let f = |k: &str| format!("mirror_sessions[0].{k}");
        expect_err(
            &session("sample_one_in = 0"),
            &f("sample_one_in"),
            "out of range 1..=",
        );
        expect_err(
            &session("snap_length = 40"),
            &f("snap_length"),
            "out of range 74..=65535",
        );
        expect_err(
            &session("").replace("target_group = \"sensors\"", "target_group = \"nope\""),
            &f("target_group"),
            "\"nope\": no target group has this name",
        );
        expect_err(
            &session("").replace("target_group = \"sensors\"", "target_group = \"fw\""),
            &f("target_group"),
            "a sensor pool must have user_ports = []",
        );
        expect_err(&session("vni = 16777216"), &f("vni"), "out of range");
        expect_err(
            &session("l4_ports = [\"90-80\"]"),
            "mirror_sessions[0].l4_ports[0]",
            "expected a port",
        );
        expect_err(
            &session("prefixes = [\"10.0.0.0/33\"]"),
            "mirror_sessions[0].prefixes[0]",
            "",
        );
        expect_err(
            &session("protocols = [256]"),
            "mirror_sessions[0].protocols[0]",
            "out of range 0..=255",
        );
        expect_err(
            &session("direction = \"to_prefixes\""),
            &f("direction"),
            "relative to prefixes",
        );
        expect_err(
            &session("format = \"erspan\""),
            &f("format"),
            "unknown variant",
        );
        expect_err(
            &format!(
                "{}[[mirror_sessions]]\nname = \"ids\"\ntarget_group = \"sensors\"\n",
                session("")
            ),
            "mirror_sessions[1].name",
            "used by another session",
        );
        let c = parse(&session(
            "format = \"geneve\"\nvni = 7\nsample_one_in = 10\nsnap_length = 128\ncopy_point = \"after_inspection\"\nprefixes = [\"10.1.0.0/16\"]\nprotocols = [6]\nl4_ports = [\"80\", \"8000-8080\"]\ndirection = \"to_prefixes\"",
        ));
        assert!(
            !c.warnings()
                .iter()
                .any(|w| w.field == "target_groups[1].user_ports"),
            "a sensor pool takes copies: {:?}",
            c.warnings()
        );
        let m = &c.mirror_sessions[0];
        assert_eq!(
            (
                m.format,
                m.vni,
                m.sample_one_in,
                m.snap_length,
                m.copy_point,
                m.direction
            ),
            (
                MirrorFormat::Geneve,
                7,
                10,
                Some(128),
                CopyPoint::AfterInspection,
                MirrorDirection::ToPrefixes
            )
        );
        assert_eq!(m.target_group, 1);
        assert_eq!(m.l4_ports, vec![80..=80, 8000..=8080]);
        let again = crate::config::Config::from_toml_str(&c.to_toml_string()).unwrap();
        assert_eq!(again.mirror_sessions, c.mirror_sessions, "round trip");
    }

    #[test]
    fn test_names_are_the_file_names() {
        for f in [MirrorFormat::Vxlan, MirrorFormat::Geneve] {
            assert_eq!(
                serde_json::to_string(&f).unwrap(),
                format!("\"{}\"", f.as_str())
            );
        }
        for p in [CopyPoint::BeforeInspection, CopyPoint::AfterInspection] {
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
    }
}
