//! Tests of the whole load path that belong to no single part: the example files and errors
//! that name the file.

use std::path::Path;

use super::Config;

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
