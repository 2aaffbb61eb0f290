//! What this binary is: gwlb's version, the commit it was built from and the DPDK release it
//! runs on. Shown by `gwlb --version`, `GET /v1/version` and the `gwlb_build_info` metric.

use serde::Serialize;

/// gwlb's version (the workspace's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit built (`build.rs`): a short hash, `-dirty` when the tree had changes, or
/// `unknown` outside a git checkout.
pub const COMMIT: &str = env!("GWLB_BUILD_COMMIT");

/// The build, as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildInfo {
    pub version: &'static str,
    pub commit: &'static str,
    /// `rte_version()` of the linked DPDK ("DPDK 22.11.4"); `None` in a build without DPDK.
    pub dpdk: Option<String>,
}

impl BuildInfo {
    /// This process's build.
    pub fn current() -> BuildInfo {
        BuildInfo {
            version: VERSION,
            commit: COMMIT,
            dpdk: dpdk_version(),
        }
    }

    /// One line: `0.1.0 (commit 0123456789ab, DPDK 22.11.4)`.
    pub fn line(&self) -> String {
        let dpdk = self.dpdk.as_deref().unwrap_or("without DPDK");
        format!("{} (commit {}, {dpdk})", self.version, self.commit)
    }
}

#[cfg(feature = "dpdk")]
fn dpdk_version() -> Option<String> {
    Some(dpdk_bindings::eal::version())
}

#[cfg(not(feature = "dpdk"))]
fn dpdk_version() -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_names_version_commit_and_dpdk() {
        let b = BuildInfo::current();
        let line = b.line();
        assert!(line.starts_with(VERSION), "{line}");
        assert!(line.contains(&format!("commit {COMMIT}")), "{line}");
        assert!(!COMMIT.is_empty());
        match &b.dpdk {
            Some(v) => {
                assert!(v.starts_with("DPDK "), "{v}");
                assert!(line.contains(v.as_str()), "{line}");
            }
            None => assert!(line.ends_with("without DPDK)"), "{line}"),
        }
    }
}
