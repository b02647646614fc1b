//! Balancing: a lock-free load balancer over N backends, an autoscaling
//! worker pool with a priority queue, and a consistent-hashing shard router
//! with bounded loads.

pub mod balancer;
pub mod config;
pub mod hash;
pub mod rng;
pub mod router;

pub use balancer::{
    BackendStats, Balancer, Config as BalancerConfig, State, Strategy, MAX_BACKENDS,
};
pub use hash::Key;
pub use router::{NodeStats, Router};

#[cfg(test)]
mod tests;
