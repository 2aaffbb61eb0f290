//! Every ```toml block in the docs is a complete configuration that loads without warnings,
//! so the reference cannot drift from the code. (`gwlb/examples/*.toml` are checked in
//! `config/tests.rs`.)

use std::path::Path;

use gwlb::config::Config;

/// The ```toml blocks of `file`, with the line each starts on.
fn toml_blocks(file: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == "```toml" => current = Some((i + 1, String::new())),
            None => {}
            Some(_) if line.trim_start() == "```" => blocks.extend(current.take()),
            Some((_, block)) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(
        current.is_none(),
        "{}: unterminated ```toml block",
        file.display()
    );
    blocks
}

#[test]
fn test_doc_toml_blocks_load() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let mut checked = 0;
    for name in ["configuration.md", "api.md"] {
        let file = docs.join(name);
        for (line, block) in toml_blocks(&file) {
            let c = Config::from_toml_str(&block)
                .unwrap_or_else(|e| panic!("{}:{line}: {e}\n{block}", file.display()));
            assert!(
                c.warnings().is_empty(),
                "{}:{line}: {:?}",
                file.display(),
                c.warnings()
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected ```toml blocks in configuration.md and api.md"
    );
}
