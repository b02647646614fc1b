//! Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam 2018).
//!
//! Nodes sit on a hash ring as virtual nodes (`vnodes` per unit of weight).
//! A key goes to the first node clockwise from its hash, unless that node
//! already carries `load_factor` times its fair share of the current load;
//! then it moves on to the next node clockwise. The load of a node counts
//! routed requests until they are released (or forever, if never released).
//! Hashes are fixed (see [`super::hash`]), so routing is the same in every
//! process that routes the same keys in the same order.

use std::sync::atomic::{AtomicU64, Ordering::*};

use parking_lot::RwLock;

use super::hash::{mix, Key};
use crate::error::{Error, Result};

/// Default virtual nodes per unit of weight.
pub const DEFAULT_VNODES: usize = 160;

#[derive(Debug)]
struct Node {
    hash: u64,
    weight: f64,
    alive: bool,
    load: AtomicU64,
    routes: AtomicU64,
}

#[derive(Debug, Default)]
struct Ring {
    nodes: Vec<Node>,
    /// (position, node index), sorted by position.
    points: Vec<(u64, u32)>,
    total_weight: f64,
}

impl Ring {
    /// Ring points of the live nodes.
    fn live_points(&self, vnodes: usize) -> u64 {
        self.nodes
            .iter()
            .filter(|n| n.alive)
            .fold(0, |acc, n| acc.saturating_add(points_for(n.weight, vnodes)))
    }

    /// Refuse a ring of more than [`MAX_RING_POINTS`] (the live nodes'
    /// points plus `extra`), before anything is allocated.
    fn check_points(&self, vnodes: usize, extra: u64) -> std::result::Result<(), String> {
        let total = self.live_points(vnodes).saturating_add(extra);
        if total > MAX_RING_POINTS {
            return Err(format!(
                "the ring would hold {total} points (weight * vnodes summed over the nodes, vnodes={vnodes}); at most {MAX_RING_POINTS}"
            ));
        }
        Ok(())
    }

    /// Place every live node's points (their count is checked by
    /// [`Ring::check_points`] first).
    fn rebuild(&mut self, vnodes: usize) {
        let count = usize::try_from(self.live_points(vnodes)).unwrap_or(0);
        let mut points = Vec::with_capacity(count);
        let mut total = 0.0;
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.alive {
                continue;
            }
            total += n.weight;
            for v in 0..points_for(n.weight, vnodes) {
                points.push((mix(n.hash ^ mix(v.wrapping_add(1))), i as u32));
            }
        }
        points.sort_unstable();
        self.points = points;
        self.total_weight = total;
    }

    #[inline]
    fn start(&self, h: u64) -> usize {
        let p = self.points.partition_point(|&(pos, _)| pos < h);
        if p == self.points.len() {
            0
        } else {
            p
        }
    }
}

/// A point-in-time copy of one node's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStats {
    /// The node's index.
    pub index: usize,
    /// Its weight.
    pub weight: f64,
    /// Whether it is on the ring.
    pub alive: bool,
    /// Routed and not yet released.
    pub load: u64,
    /// Times a key was routed to it.
    pub routes: u64,
}

/// The router. `Send + Sync`; routing takes a read lock and atomics only.
#[derive(Debug)]
pub struct Router {
    load_factor: f64,
    vnodes: usize,
    ring: RwLock<Ring>,
    total: AtomicU64,
    routes: AtomicU64,
    overflows: AtomicU64,
}

/// Most ring points one node may have (`vnodes * weight`).
const MAX_POINTS_PER_NODE: f64 = 1_000_000.0;

/// Most ring points in all (16 bytes each: 256 MiB), so a long node list
/// cannot make the ring's allocation fail.
pub const MAX_RING_POINTS: u64 = 1 << 24;

/// A node's points on the ring: `vnodes * weight`, at least one.
fn points_for(weight: f64, vnodes: usize) -> u64 {
    ((vnodes as f64) * weight).round().max(1.0) as u64
}

/// Check a node weight (and that its ring points stay bounded).
fn check_weight(w: f64, vnodes: usize) -> Result<f64> {
    if !(w.is_finite() && w > 0.0) {
        return Err(Error::invalid("weight", w, "must be a finite number > 0"));
    }
    if w * vnodes as f64 > MAX_POINTS_PER_NODE {
        return Err(Error::invalid(
            "weight",
            w,
            format!(
                "weight * vnodes must be <= {MAX_POINTS_PER_NODE} ring points (vnodes={vnodes})"
            ),
        ));
    }
    Ok(w)
}

impl Router {
    /// A router over nodes given as (key, weight).
    pub fn new(nodes: &[(Key<'_>, f64)], load_factor: f64, vnodes: usize) -> Result<Self> {
        if !(load_factor.is_finite() && load_factor >= 1.0) {
            return Err(Error::invalid(
                "load_factor",
                load_factor,
                "must be a finite number >= 1.0",
            ));
        }
        if !(1..=10_000).contains(&vnodes) {
            return Err(Error::invalid(
                "vnodes",
                vnodes,
                "must be between 1 and 10000",
            ));
        }
        if nodes.is_empty() {
            return Err(Error::invalid("nodes", "[]", "need at least one node"));
        }
        let r = Router {
            load_factor,
            vnodes,
            ring: RwLock::new(Ring::default()),
            total: AtomicU64::new(0),
            routes: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
        };
        {
            let mut ring = r.ring.write();
            for (k, w) in nodes {
                ring.nodes.push(Node {
                    hash: k.hash(),
                    weight: check_weight(*w, vnodes)?,
                    alive: true,
                    load: AtomicU64::new(0),
                    routes: AtomicU64::new(0),
                });
            }
            ring.check_points(vnodes, 0)
                .map_err(|why| Error::invalid("nodes", format!("<{} nodes>", nodes.len()), why))?;
            ring.rebuild(vnodes);
        }
        Ok(r)
    }

    /// The load factor.
    pub fn load_factor(&self) -> f64 {
        self.load_factor
    }

    /// Virtual nodes per unit of weight.
    pub fn vnodes(&self) -> usize {
        self.vnodes
    }

    /// Add a node; returns its index.
    pub fn add_node(&self, key: Key<'_>, weight: f64) -> Result<usize> {
        let weight = check_weight(weight, self.vnodes)?;
        let mut ring = self.ring.write();
        ring.check_points(self.vnodes, points_for(weight, self.vnodes))
            .map_err(|why| Error::invalid("weight", weight, why))?;
        ring.nodes.push(Node {
            hash: key.hash(),
            weight,
            alive: true,
            load: AtomicU64::new(0),
            routes: AtomicU64::new(0),
        });
        ring.rebuild(self.vnodes);
        Ok(ring.nodes.len() - 1)
    }

    /// Take a node off the ring (its index is not reused).
    pub fn remove_node(&self, index: usize) -> Result<()> {
        let mut ring = self.ring.write();
        let alive = ring.nodes.iter().filter(|n| n.alive).count();
        match ring.nodes.get_mut(index) {
            Some(n) if n.alive => {
                if alive <= 1 {
                    return Err(Error::invalid(
                        "index",
                        index,
                        "cannot remove the last node",
                    ));
                }
                n.alive = false;
            }
            _ => return Err(Error::invalid("index", index, "no such live node")),
        }
        ring.rebuild(self.vnodes);
        Ok(())
    }

    /// The first node clockwise from the key's hash, ignoring loads.
    pub fn lookup(&self, key: Key<'_>) -> usize {
        let ring = self.ring.read();
        let h = key.hash();
        ring.points
            .get(ring.start(h))
            .map_or(0, |&(_, n)| n as usize)
    }

    /// Route one key under the load bound and count it on its node.
    pub fn route(&self, key: Key<'_>) -> usize {
        let ring = self.ring.read();
        self.route_in(&ring, key.hash())
    }

    /// Route many keys under one lock.
    pub fn route_many<'a>(&self, keys: impl IntoIterator<Item = Key<'a>>) -> Vec<usize> {
        let ring = self.ring.read();
        keys.into_iter()
            .map(|k| self.route_in(&ring, k.hash()))
            .collect()
    }

    /// The most load node `n` may carry when the total is `total`.
    #[inline]
    fn cap(&self, ring: &Ring, n: &Node, total: u64) -> u64 {
        (self.load_factor * total as f64 * n.weight / ring.total_weight).ceil() as u64
    }

    fn route_in(&self, ring: &Ring, h: u64) -> usize {
        let total = self.total.fetch_add(1, Relaxed) + 1;
        self.routes.fetch_add(1, Relaxed);
        let len = ring.points.len();
        let start = ring.start(h);
        for k in 0..len {
            let mut j = start + k;
            if j >= len {
                j -= len;
            }
            let Some(&(_, idx)) = ring.points.get(j) else {
                continue;
            };
            let Some(node) = ring.nodes.get(idx as usize) else {
                continue;
            };
            let cap = self.cap(ring, node, total);
            let taken = node
                .load
                .fetch_update(Relaxed, Relaxed, |l| (l < cap).then_some(l + 1))
                .is_ok();
            if taken {
                node.routes.fetch_add(1, Relaxed);
                if k > 0 {
                    self.overflows.fetch_add(1, Relaxed);
                }
                return idx as usize;
            }
        }
        // Unreachable while load_factor >= 1 (the caps sum to more than the
        // total); kept as a safe fallback under races: the least loaded node.
        let best = ring
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.alive)
            .min_by_key(|(_, n)| n.load.load(Relaxed))
            .map_or(0, |(i, _)| i);
        if let Some(n) = ring.nodes.get(best) {
            n.load.fetch_add(1, Relaxed);
            n.routes.fetch_add(1, Relaxed);
        }
        self.overflows.fetch_add(1, Relaxed);
        best
    }

    /// A request routed to `index` finished: lower its load by one.
    pub fn release(&self, index: usize) -> Result<()> {
        let ring = self.ring.read();
        let Some(node) = ring.nodes.get(index) else {
            return Err(Error::invalid("node", index, "no such node"));
        };
        node.load
            .fetch_update(Relaxed, Relaxed, |l| l.checked_sub(1))
            .map_err(|_| Error::invalid("node", index, "release without a routed request"))?;
        let _ = self
            .total
            .fetch_update(Relaxed, Relaxed, |t| t.checked_sub(1));
        Ok(())
    }

    /// Forget every load (routing continues from an empty state).
    pub fn reset_loads(&self) {
        let ring = self.ring.write();
        for n in &ring.nodes {
            n.load.store(0, Relaxed);
        }
        self.total.store(0, Relaxed);
    }

    /// The current bound for each node: `ceil(load_factor * total * w / W)`.
    pub fn caps(&self) -> Vec<u64> {
        let ring = self.ring.read();
        let total = self.total.load(Relaxed);
        ring.nodes
            .iter()
            .map(|n| {
                if n.alive {
                    self.cap(&ring, n, total)
                } else {
                    0
                }
            })
            .collect()
    }

    /// Keys routed, and how many went past their first node.
    pub fn counters(&self) -> (u64, u64, u64) {
        (
            self.routes.load(Relaxed),
            self.overflows.load(Relaxed),
            self.total.load(Relaxed),
        )
    }

    /// Counters of every node (removed ones included).
    pub fn stats(&self) -> Vec<NodeStats> {
        let ring = self.ring.read();
        ring.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeStats {
                index: i,
                weight: n.weight,
                alive: n.alive,
                load: n.load.load(Relaxed),
                routes: n.routes.load(Relaxed),
            })
            .collect()
    }
}
