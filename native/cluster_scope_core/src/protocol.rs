//! The protocol version spoken between ClusterScope agents on different
//! nodes.
//!
//! Today it is reported, not enforced: [`PROTOCOL_VERSION`] is part of
//! `build_info` (`ClusterScope.Native.build_info/0`, the `node_build_info`
//! operation), and nothing calls [`compatible`] yet. `ClusterScope.Fanout`
//! checks no version: a node without ClusterScope's code shows up as a
//! `not_running` node error (and process reads fall back to agentless
//! collection). What crosses nodes in the core's own formats is checked
//! where it is read: process summaries and windows carry
//! [`procs::FORMAT_VERSION`](crate::procs::FORMAT_VERSION), and reading one
//! of another version fails with `invalid_summary` or `invalid_window`.
//! [`compatible`] is the rule the fan-out's version check (planned in the
//! blueprint) is to apply.

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
