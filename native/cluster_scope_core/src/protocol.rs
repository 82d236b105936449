//! The protocol version spoken between ClusterScope agents on different
//! nodes.
//!
//! [`PROTOCOL_VERSION`] is part of `build_info`
//! (`ClusterScope.Native.build_info/0`, the `node_build_info` operation).
//! The BEAM side enforces it: `ClusterScope.Protocol` holds the same
//! numbers (a test checks they agree), every heartbeat carries them, and
//! every agent call goes through `ClusterScope.Fanout` in a version
//! envelope that the peer's door checks; a peer of a version neither side
//! understands is served only through the compatible subset (agentless
//! process reads, build info). [`compatible`] is the same range check as
//! the door's. What crosses nodes in the core's own formats is also checked
//! where it is read: process summaries and windows carry
//! [`procs::FORMAT_VERSION`](crate::procs::FORMAT_VERSION), and reading one
//! of another version fails with `invalid_summary` or `invalid_window`.
//!
//! Version 2: heartbeats carry `{version, min}` and every agent call the
//! caller's version (version 1 builds sent unversioned beats of another
//! format). Version 3: the node side of agent calls moved into the agent
//! room (`ClusterScope.Agent`, `ClusterScope.Agent.Processes`), names a
//! version 2 build does not have, so 3 understands only 3.

/// Current protocol version. Bump on any incompatible change of what agents
/// exchange.
pub const PROTOCOL_VERSION: u32 = 3;

/// The oldest peer protocol this build can still merge with.
pub const MIN_COMPATIBLE_PROTOCOL: u32 = 3;

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
