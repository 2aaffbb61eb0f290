//! Tests of the whole load path that belong to no single part: the example files, errors that
//! name the file, and [`Config::revalidated`].

use std::path::Path;
use std::time::Duration;

use super::test_support::*;
use super::{Config, MacAddr, Target};

#[test]
fn test_examples_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                c.warnings().is_empty(),
                "{}: {:?}",
                path.display(),
                c.warnings()
            );
            n += 1;
        }
    }
    assert!(n >= 3, "expected the three example configs, found {n}");
}

#[test]
fn test_load_errors_name_file() {
    let e = Config::load("/nonexistent/gwlb.toml").unwrap_err();
    assert!(e.to_string().starts_with("/nonexistent/gwlb.toml: "), "{e}");
}

/// Expects `c.revalidated()` to fail naming `field`, with `needle` in the message.
fn expect_revalidate_err(c: &Config, field: &str, needle: &str) {
    match c.revalidated() {
        Ok(_) => panic!("expected an error at {field}"),
        Err(e) => {
            let shown = e.to_string();
            assert_eq!(e.field(), Some(field), "{shown}");
            assert!(shown.starts_with(&format!("{field}: ")), "{shown}");
            assert!(shown.contains(needle), "{shown:?} lacks {needle:?}");
        }
    }
}

#[test]
fn test_revalidated() {
    // Unchanged: the same configuration comes back, warnings included.
    for text in [MINIMAL, TWO_ARM] {
        let c = parse(text);
        assert_eq!(c.revalidated().unwrap_or_else(|e| panic!("{e}")), c);
    }
    let warned = parse(&group_with("maglev_table_size = 97"));
    assert!(!warned.warnings().is_empty());
    assert_eq!(warned.revalidated().unwrap(), warned);

    let c = parse(TWO_ARM);
    let target = |address: &str, weight: u16| Target {
        address: address.parse().unwrap(),
        weight,
        mac: Some(MacAddr([2, 0, 0, 0, 2, 0x13])),
        port: 1,
        via: None,
    };
    // Edits refused like the same edit in the file, naming the field.
    let mut heavy = c.clone();
    heavy.target_groups[0]
        .targets
        .push(target("10.0.2.13", 1001));
    expect_revalidate_err(
        &heavy,
        "target_groups[0].targets[2].weight",
        "1001 is out of range 0..=1000",
    );
    let mut dup = c.clone();
    dup.target_groups[0].targets.push(target("10.0.2.11", 1));
    expect_revalidate_err(
        &dup,
        "target_groups[0].targets[2].address",
        "10.0.2.11 is already target_groups[0].targets[0]",
    );
    let mut user_side = c.clone();
    user_side.target_groups[0].targets.push(Target {
        port: 0,
        ..target("10.0.2.13", 1)
    });
    expect_revalidate_err(
        &user_side,
        "target_groups[0].targets[2].port",
        "role \"user\"",
    );
    let mut small = c.clone();
    small.ports[0].mtu = 100;
    expect_revalidate_err(&small, "ports[0].mtu", "100 is out of range 576..=9600");
    // Port references are indices in a `Config`: one out of range names its field.
    let mut stray = c.clone();
    stray.target_groups[0].targets[1].port = 2;
    expect_revalidate_err(
        &stray,
        "target_groups[0].targets[1].port",
        "port index 2 is out of range: the configuration has 2 ports",
    );
    let mut stray = c.clone();
    stray.routes[0].port = 7;
    expect_revalidate_err(&stray, "routes[0].port", "port index 7 is out of range");
    let mut stray = c.clone();
    stray.target_groups[0].user_ports.push(9);
    expect_revalidate_err(
        &stray,
        "target_groups[0].user_ports[1]",
        "port index 9 is out of range",
    );

    // An edit that is valid: accepted as it is.
    let mut more = c.clone();
    more.target_groups[0].targets.push(target("10.0.2.13", 0));
    let again = more.revalidated().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, more);
    assert_eq!(again.target_groups[0].targets.len(), 3);
    // Warnings are those of the edited configuration, not carried over.
    let mut idle = c.clone();
    for t in &mut idle.target_groups[0].targets {
        t.weight = 0;
    }
    assert!(idle.warnings().is_empty());
    let again = idle.revalidated().unwrap();
    assert!(again
        .warnings()
        .iter()
        .any(|w| w.field == "target_groups[0].targets" && w.message.contains("weight 0")));
    // What the file cannot express is cut as in `to_toml_string`: the result differs.
    let mut fraction = c.clone();
    fraction.target_groups[0].deregistration_delay = Duration::from_millis(1500);
    let again = fraction.revalidated().unwrap();
    assert_eq!(
        again.target_groups[0].deregistration_delay,
        Duration::from_secs(1)
    );
    assert_ne!(again, fraction);
}

#[test]
fn test_examples_revalidate_equal() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            let again = c
                .revalidated()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(again, c, "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 3, "expected the three example configs, found {n}");
}
