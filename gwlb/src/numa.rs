//! NUMA placement of the data path's memory: the socket of each worker's CPU, and the one
//! mbuf pool per socket that the workers of that socket and the queues they poll share
//! (DPDK l3fwd's "pools per socket"). No DPDK here: `dataplane::run` creates the pools,
//! queues and handoff rings from a [`SocketPlan`].
//!
//! A socket id is what DPDK calls one (`rte_socket_id`, the `socket` argument of every
//! allocation): the kernel's NUMA node number.

use std::path::Path;

/// A NUMA socket (node) id as DPDK numbers them.
pub type SocketId = u32;

/// The socket of `cpu` as the kernel under `sys` (normally `/sys`) reports it: the lowest
/// node whose directory lists the CPU (`devices/system/node/node<N>/cpu<cpu>`), which is how
/// the EAL itself assigns sockets to lcores (`eal_cpu_socket_id`). 0 where the kernel reports
/// no NUMA topology (a single-node machine without `devices/system/node`), as the EAL does.
pub fn cpu_socket_in(sys: &Path, cpu: usize) -> SocketId {
    let nodes = sys.join("devices/system/node");
    let Ok(dir) = std::fs::read_dir(&nodes) else {
        return 0;
    };
    dir.filter_map(|e| {
        let name = e.ok()?.file_name();
        let n: SocketId = name.to_str()?.strip_prefix("node")?.parse().ok()?;
        nodes
            .join(format!("node{n}/cpu{cpu}"))
            .exists()
            .then_some(n)
    })
    .min()
    .unwrap_or(0)
}

/// The socket of `cpu` on this machine ([`cpu_socket_in`] of `/sys`).
pub fn cpu_socket(cpu: usize) -> SocketId {
    cpu_socket_in(Path::new("/sys"), cpu)
}

/// Which socket's memory each worker uses: one mbuf pool per socket that has workers, in
/// the order of each socket's first worker (so one socket gives exactly one pool, as
/// before NUMA placement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketPlan {
    /// Sockets with at least one worker, in order of their first worker; pool `i` is on
    /// `sockets[i]`.
    pub sockets: Vec<SocketId>,
    /// The pool (index into `sockets`) of each worker.
    pub pool_of_worker: Vec<usize>,
}

impl SocketPlan {
    /// The plan for workers on these sockets (`worker_sockets[w]`: worker `w`'s socket).
    pub fn new(worker_sockets: &[SocketId]) -> Self {
        let mut sockets: Vec<SocketId> = Vec::new();
        let pool_of_worker = worker_sockets
            .iter()
            .map(|s| match sockets.iter().position(|x| x == s) {
                Some(i) => i,
                None => {
                    sockets.push(*s);
                    sockets.len() - 1
                }
            })
            .collect();
        Self {
            sockets,
            pool_of_worker,
        }
    }

    /// Worker `w`'s socket.
    pub fn socket_of_worker(&self, w: usize) -> SocketId {
        self.sockets[self.pool_of_worker[w]]
    }

    /// How many workers use pool `pool`.
    pub fn workers_on(&self, pool: usize) -> usize {
        self.pool_of_worker.iter().filter(|&&p| p == pool).count()
    }

    /// Mbufs of pool `pool`: `per_worker` for each of its workers, at least 4096, plus 4096
    /// for the mempool caches and what sits in rings and TAP queues. With one socket this is
    /// the single pool's size before NUMA placement.
    pub fn mbufs(&self, pool: usize, per_worker: u32) -> u32 {
        let n = u32::try_from(self.workers_on(pool)).unwrap_or(u32::MAX);
        per_worker.saturating_mul(n).max(4096).saturating_add(4096)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_socket_is_one_pool_of_the_old_size() {
        let p = SocketPlan::new(&[0, 0, 0]);
        assert_eq!(p.sockets, [0]);
        assert_eq!(p.pool_of_worker, [0, 0, 0]);
        assert_eq!(p.workers_on(0), 3);
        // `mbufs_per_worker * workers, at least 4096, + 4096`, as `gwlb run` sized its pool.
        assert_eq!(p.mbufs(0, 8192), 3 * 8192 + 4096);
        assert_eq!(p.mbufs(0, 1000), 4096 + 4096);
    }

    #[test]
    fn two_sockets_get_a_pool_each_in_order_of_first_worker() {
        // Workers on CPUs of sockets 1, 0, 1, 1 (worker_cpus interleaved across sockets).
        let p = SocketPlan::new(&[1, 0, 1, 1]);
        assert_eq!(p.sockets, [1, 0]);
        assert_eq!(p.pool_of_worker, [0, 1, 0, 0]);
        assert_eq!(p.socket_of_worker(1), 0);
        assert_eq!(p.socket_of_worker(3), 1);
        assert_eq!((p.workers_on(0), p.workers_on(1)), (3, 1));
        assert_eq!(p.mbufs(0, 8192), 3 * 8192 + 4096);
        assert_eq!(p.mbufs(1, 8192), 8192 + 4096);
        // Sizes never overflow.
        assert_eq!(p.mbufs(0, u32::MAX), u32::MAX);
    }

    #[test]
    fn no_workers_no_pools() {
        let p = SocketPlan::new(&[]);
        assert!(p.sockets.is_empty() && p.pool_of_worker.is_empty());
    }

    #[test]
    fn cpu_socket_reads_the_node_directories() {
        let root = std::env::temp_dir().join(format!("gwlb-numa-{}", std::process::id()));
        let nodes = root.join("devices/system/node");
        for (node, cpus) in [(0, [0, 1]), (1, [2, 3])] {
            for c in cpus {
                std::fs::create_dir_all(nodes.join(format!("node{node}/cpu{c}"))).unwrap();
            }
        }
        // Not nodes: ignored.
        std::fs::create_dir_all(nodes.join("power")).unwrap();
        std::fs::write(nodes.join("possible"), "0-1\n").unwrap();
        assert_eq!(cpu_socket_in(&root, 0), 0);
        assert_eq!(cpu_socket_in(&root, 1), 0);
        assert_eq!(cpu_socket_in(&root, 2), 1);
        assert_eq!(cpu_socket_in(&root, 3), 1);
        // A CPU no node lists, and a machine without NUMA topology: socket 0, like the EAL.
        assert_eq!(cpu_socket_in(&root, 9), 0);
        assert_eq!(cpu_socket_in(&root.join("none"), 2), 0);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn cpu_socket_of_this_machine_is_a_node_it_has() {
        let s = cpu_socket(0);
        let has_nodes = Path::new("/sys/devices/system/node").exists();
        assert!(!has_nodes || Path::new(&format!("/sys/devices/system/node/node{s}")).exists());
    }
}
