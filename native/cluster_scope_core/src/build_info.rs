//! What was compiled: reported by `ClusterScope.Native.build_info/0` so a
//! node's operator can tell which core a node runs without shell access.

/// Facts about this build of the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// The core crate's version (Cargo.toml), e.g. `"0.1.0"`.
    pub core_version: &'static str,
    /// The target triple the core was compiled for.
    pub target: &'static str,
    /// Cargo profile: `"release"` or `"debug"`.
    pub profile: &'static str,
    /// The wire protocol version spoken between nodes' agents.
    pub protocol_version: u32,
}

/// Returns the facts of this build. Cheap: every field is a constant.
pub fn build_info() -> BuildInfo {
    BuildInfo {
        core_version: env!("CARGO_PKG_VERSION"),
        target: env!("CLUSTER_SCOPE_TARGET"),
        profile: env!("CLUSTER_SCOPE_PROFILE"),
        protocol_version: crate::protocol::PROTOCOL_VERSION,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_matches_the_crate_manifest() {
        let info = build_info();
        assert_eq!(info.core_version, env!("CARGO_PKG_VERSION"));
        let parts: Vec<u32> = info
            .core_version
            .split('.')
            .map(|p| p.parse().expect("numeric version part"))
            .collect();
        assert_eq!(parts.len(), 3, "semver major.minor.patch");
    }

    #[test]
    fn target_is_a_real_triple() {
        let info = build_info();
        assert_ne!(info.target, "unknown");
        assert!(
            info.target.contains(std::env::consts::ARCH),
            "{} should name {}",
            info.target,
            std::env::consts::ARCH
        );
        assert!(info.profile == "debug" || info.profile == "release");
    }
}
