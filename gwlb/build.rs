//! Records the commit gwlb is built from as `GWLB_BUILD_COMMIT` (see `src/build_info.rs`):
//! the environment variable of that name when set (package builds from a tarball), otherwise
//! `git rev-parse --short=12 HEAD` with `-dirty` when the tree has changes, otherwise
//! `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    // No index refresh: `git status` must not write .git/index.
    let out = Command::new("git")
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=GWLB_BUILD_COMMIT");
    let commit = match std::env::var("GWLB_BUILD_COMMIT") {
        Ok(c) if !c.is_empty() => c,
        _ => match git(&["rev-parse", "--short=12", "HEAD"]) {
            Some(head) if !head.is_empty() => {
                // Run again when HEAD moves (a commit, a checkout) and when this crate's
                // files change (then `-dirty` may change; gwlb is rebuilt anyway).
                for path in ["src", "build.rs", "Cargo.toml"] {
                    println!("cargo:rerun-if-changed={path}");
                }
                if let Some(path) = git(&["rev-parse", "--git-path", "HEAD"]) {
                    println!("cargo:rerun-if-changed={path}");
                }
                if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    if let Some(path) = git(&["rev-parse", "--git-path", &r]) {
                        println!("cargo:rerun-if-changed={path}");
                    }
                }
                let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                    .is_some_and(|s| !s.is_empty());
                if dirty {
                    format!("{head}-dirty")
                } else {
                    head
                }
            }
            _ => "unknown".to_owned(),
        },
    };
    println!("cargo:rustc-env=GWLB_BUILD_COMMIT={commit}");
}
