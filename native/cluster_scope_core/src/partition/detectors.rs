//! A bounded set of phi-accrual detectors, one per peer.
//!
//! Peers are keyed by name (a node name, as text). A heartbeat from a peer
//! not seen before creates its detector, unless [`DetectorsConfig::max_peers`]
//! are already tracked: then it is refused with
//! [`PartitionError::TooManyPeers`], so a flood of bogus names costs a bounded
//! amount of memory. Names are at most [`MAX_PEER_NAME_BYTES`] long.

use std::collections::HashMap;

use super::phi::{PhiConfig, PhiDetector};
use super::PartitionError;

/// Default [`DetectorsConfig::max_peers`].
pub const DEFAULT_MAX_PEERS: usize = 10_000;
/// Most peers read by `all` on a normal scheduler: a snapshot and its maps
/// take about 0.25 ms per 1,000 peers, so past this the NIF wrapper answers
/// `:use_dirty` and its dirty CPU twin does the work.
pub const NORMAL_SCHEDULER_MAX_PEERS: usize = 2_000;
/// Largest [`DetectorsConfig::max_peers`] accepted.
pub const MAX_MAX_PEERS: usize = 1_000_000;
/// Longest peer name accepted, in bytes (an Erlang node name is at most 255
/// characters).
pub const MAX_PEER_NAME_BYTES: usize = 1024;

/// Settings of a [`Detectors`] set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorsConfig {
    /// Settings of every peer's detector.
    pub phi: PhiConfig,
    /// How many peers may be tracked at once, 1 to [`MAX_MAX_PEERS`].
    /// Default 10,000.
    pub max_peers: usize,
}

impl Default for DetectorsConfig {
    fn default() -> Self {
        DetectorsConfig {
            phi: PhiConfig::default(),
            max_peers: DEFAULT_MAX_PEERS,
        }
    }
}

impl DetectorsConfig {
    /// Checks every setting; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), PartitionError> {
        self.phi.validate()?;
        if self.max_peers == 0 || self.max_peers > MAX_MAX_PEERS {
            return Err(PartitionError::config(
                "max_peers",
                format!(
                    "is {}, must be between 1 and {MAX_MAX_PEERS}",
                    self.max_peers
                ),
            ));
        }
        Ok(())
    }
}

/// What one peer's detector says at a given time.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerPhi {
    pub peer: String,
    pub phi: f64,
    pub last_heartbeat_ms: f64,
    pub samples: usize,
    pub mean_ms: f64,
    pub std_dev_ms: f64,
}

/// One [`PhiDetector`] per peer, at most `max_peers` of them.
#[derive(Debug, Clone)]
pub struct Detectors {
    config: DetectorsConfig,
    peers: HashMap<String, PhiDetector>,
}

impl Detectors {
    /// An empty set.
    pub fn new(config: DetectorsConfig) -> Result<Self, PartitionError> {
        config.validate()?;
        Ok(Detectors {
            config,
            peers: HashMap::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &DetectorsConfig {
        &self.config
    }

    /// Records a heartbeat from `peer` at `now_ms`, creating its detector on
    /// the first one. O(1) (expected, for the hash lookup).
    ///
    /// Errors: `now_ms` not finite or `peer` too long
    /// ([`PartitionError::InvalidArgument`]), or a new peer past `max_peers`
    /// ([`PartitionError::TooManyPeers`]). A refused heartbeat changes
    /// nothing.
    pub fn heartbeat(&mut self, peer: &str, now_ms: f64) -> Result<(), PartitionError> {
        if !now_ms.is_finite() {
            return Err(PartitionError::argument(
                "now_ms",
                format!("is {now_ms}, must be a finite number of milliseconds"),
            ));
        }
        if let Some(detector) = self.peers.get_mut(peer) {
            detector.heartbeat(now_ms);
            return Ok(());
        }
        check_peer_name(peer)?;
        if self.peers.len() >= self.config.max_peers {
            return Err(PartitionError::TooManyPeers {
                limit: self.config.max_peers,
            });
        }
        // The configuration was validated in `new`: this cannot fail.
        let mut detector = PhiDetector::new(self.config.phi)?;
        detector.heartbeat(now_ms);
        self.peers.insert(peer.to_owned(), detector);
        Ok(())
    }

    /// The suspicion level of `peer` at `now_ms`, or `None` for a peer never
    /// heard (or removed).
    pub fn phi(&self, peer: &str, now_ms: f64) -> Option<f64> {
        self.peers.get(peer).map(|d| d.phi(now_ms))
    }

    /// The detector of `peer`, if tracked.
    pub fn get(&self, peer: &str) -> Option<&PhiDetector> {
        self.peers.get(peer)
    }

    /// Every tracked peer at `now_ms`, sorted by name.
    pub fn all(&self, now_ms: f64) -> Vec<PeerPhi> {
        let mut all: Vec<PeerPhi> = self
            .peers
            .iter()
            .map(|(peer, d)| PeerPhi {
                peer: peer.clone(),
                phi: d.phi(now_ms),
                // Every tracked detector has had a heartbeat.
                last_heartbeat_ms: d.last_heartbeat_ms().unwrap_or(0.0),
                samples: d.samples(),
                mean_ms: d.mean_ms(),
                std_dev_ms: d.std_dev_ms(),
            })
            .collect();
        all.sort_unstable_by(|a, b| a.peer.cmp(&b.peer));
        all
    }

    /// Forgets `peer`; whether it was tracked.
    pub fn remove(&mut self, peer: &str) -> bool {
        self.peers.remove(peer).is_some()
    }

    /// How many peers are tracked.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

fn check_peer_name(peer: &str) -> Result<(), PartitionError> {
    if peer.len() > MAX_PEER_NAME_BYTES {
        return Err(PartitionError::argument(
            "peer",
            format!(
                "name is {} bytes, over the limit of {MAX_PEER_NAME_BYTES}",
                peer.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn detectors(max_peers: usize) -> Detectors {
        Detectors::new(DetectorsConfig {
            max_peers,
            ..DetectorsConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn defaults_and_validation() {
        let c = DetectorsConfig::default();
        assert_eq!(c.max_peers, 10_000);
        assert_eq!(c.phi, PhiConfig::default());
        for max_peers in [0, MAX_MAX_PEERS + 1] {
            let err = Detectors::new(DetectorsConfig {
                max_peers,
                ..DetectorsConfig::default()
            })
            .unwrap_err();
            assert!(err.to_string().contains("max_peers"), "{err}");
        }
        let err = Detectors::new(DetectorsConfig {
            phi: PhiConfig {
                window: 0,
                ..PhiConfig::default()
            },
            ..DetectorsConfig::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("window"), "{err}");
    }

    #[test]
    fn tracks_each_peer_apart() {
        let mut d = detectors(10);
        assert!(d.is_empty());
        assert_eq!(d.phi("a@h", 0.0), None);
        let mut t = 0.0;
        for _ in 0..50 {
            d.heartbeat("a@h", t).unwrap();
            d.heartbeat("b@h", t).unwrap();
            t += 100.0;
        }
        // b goes silent, a keeps beating.
        for _ in 0..20 {
            d.heartbeat("a@h", t).unwrap();
            t += 100.0;
        }
        assert_eq!(d.len(), 2);
        let a = d.phi("a@h", t).unwrap();
        let b = d.phi("b@h", t).unwrap();
        assert!(a < 1.0 && b > 8.0, "a {a}, b {b}");

        let all = d.all(t);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].peer, "a@h");
        assert_eq!(all[1].peer, "b@h");
        assert_eq!(all[0].phi, a);
        assert_eq!(all[1].last_heartbeat_ms, 4_900.0);
        assert_eq!(all[0].samples, 71);
        // The two seeds (112.5 and 187.5 ms) and 69 intervals of 100 ms.
        assert!((all[0].mean_ms - 7_200.0 / 71.0).abs() < 1e-9);
        assert!(all[0].std_dev_ms < 15.0);
        assert_eq!(d.get("b@h").unwrap().last_heartbeat_ms(), Some(4_900.0));
    }

    #[test]
    fn refuses_new_peers_past_the_limit() {
        let mut d = detectors(2);
        d.heartbeat("a", 0.0).unwrap();
        d.heartbeat("b", 0.0).unwrap();
        let err = d.heartbeat("c", 0.0).unwrap_err();
        assert_eq!(err, PartitionError::TooManyPeers { limit: 2 });
        assert_eq!(err.code(), "too_many_peers");
        assert_eq!(d.len(), 2);
        assert_eq!(d.phi("c", 0.0), None);
        // Known peers still beat; a removal makes room.
        d.heartbeat("a", 100.0).unwrap();
        assert!(d.remove("b"));
        assert!(!d.remove("b"));
        d.heartbeat("c", 100.0).unwrap();
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn refuses_bad_arguments_without_a_trace() {
        let mut d = detectors(10);
        let err = d.heartbeat("a", f64::NAN).unwrap_err();
        assert_eq!(err.code(), "invalid_argument");
        assert!(err.to_string().starts_with("now_ms:"), "{err}");
        let long = "x".repeat(MAX_PEER_NAME_BYTES + 1);
        let err = d.heartbeat(&long, 0.0).unwrap_err();
        assert!(err.to_string().starts_with("peer:"), "{err}");
        assert!(d.is_empty());
        d.heartbeat(&long[..MAX_PEER_NAME_BYTES], 0.0).unwrap();
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn removed_peers_start_over() {
        let mut d = detectors(10);
        for i in 0..10 {
            d.heartbeat("a", f64::from(i) * 100.0).unwrap();
        }
        assert!(d.remove("a"));
        d.heartbeat("a", 5_000.0).unwrap();
        assert_eq!(d.get("a").unwrap().samples(), 2);
    }

    proptest! {
        #[test]
        fn never_more_than_max_peers(
            beats in prop::collection::vec((0u8..40, 0.0f64..1e6), 0..300),
            max_peers in 1usize..20,
        ) {
            let mut d = detectors(max_peers);
            for (peer, t) in beats {
                let name = format!("n{peer}");
                let known = d.get(&name).is_some();
                match d.heartbeat(&name, t) {
                    Ok(()) => prop_assert!(known || d.len() <= max_peers),
                    Err(e) => {
                        prop_assert!(!known);
                        prop_assert_eq!(e, PartitionError::TooManyPeers { limit: max_peers });
                    }
                }
                prop_assert!(d.len() <= max_peers);
            }
            let all = d.all(1e6);
            prop_assert_eq!(all.len(), d.len());
            prop_assert!(all.windows(2).all(|w| w[0].peer < w[1].peer));
        }
    }
}
