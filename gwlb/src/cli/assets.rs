//! Files generated from the CLI definition for the package (scripts/package.sh): man pages
//! (`gwlb.1` and one per subcommand, `gwlb-run.1`, ...) and shell completions for bash, zsh
//! and fish. `gwlb generate-assets --out DIR` writes them.

use std::io;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// Writes the man pages and completions of `cmd` (the `gwlb` command) into `out`, creating
/// it; returns the files written.
pub fn write_assets(cmd: clap::Command, out: &Path) -> io::Result<Vec<PathBuf>> {
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    clap_mangen::generate_to(cmd.clone(), &man)?;
    let mut cmd = cmd;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "gwlb", &completions)?;
    }
    let mut written = Vec::new();
    for dir in [&man, &completions] {
        for entry in std::fs::read_dir(dir)? {
            written.push(entry?.path());
        }
    }
    written.sort();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    #[test]
    fn writes_a_page_per_subcommand_and_three_completions() {
        let cmd = Command::new("gwlb")
            .about("gateway")
            .subcommand(Command::new("run").arg(Arg::new("config").long("config")))
            .subcommand(Command::new("stats"));
        let dir = std::env::temp_dir().join(format!("gwlb-assets-{}", std::process::id()));
        let files = write_assets(cmd, &dir).expect("assets");
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "gwlb.1",
            "gwlb-run.1",
            "gwlb-stats.1",
            "gwlb.bash",
            "_gwlb",
            "gwlb.fish",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        let page = std::fs::read_to_string(dir.join("man/gwlb-run.1")).unwrap();
        assert!(page.contains("config"), "{page}");
        let bash = std::fs::read_to_string(dir.join("completions/gwlb.bash")).unwrap();
        assert!(
            bash.contains("stats") && bash.contains("--config"),
            "{bash}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
