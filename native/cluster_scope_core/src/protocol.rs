//! The protocol version spoken between ClusterScope agents on different
//! nodes. The fan-out checks it before trusting a peer's summary: a peer that
//! speaks another major protocol is treated as agentless rather than merged.

/// Current protocol version. Bump on any incompatible change of what agents
/// exchange.
pub const PROTOCOL_VERSION: u32 = 1;

/// The oldest peer protocol this build can still merge with.
pub const MIN_COMPATIBLE_PROTOCOL: u32 = 1;

/// Whether a peer speaking `peer` can be merged with this build.
pub fn compatible(peer: u32) -> bool {
    (MIN_COMPATIBLE_PROTOCOL..=PROTOCOL_VERSION).contains(&peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_version_is_compatible() {
        assert!(compatible(PROTOCOL_VERSION));
    }

    #[test]
    fn older_and_newer_versions_are_not() {
        assert!(!compatible(MIN_COMPATIBLE_PROTOCOL - 1));
        assert!(!compatible(PROTOCOL_VERSION + 1));
    }
}
