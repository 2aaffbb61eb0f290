/* Out-of-line wrappers for DPDK `static inline` functions that are called once
 * per burst (never per packet). Per-packet mbuf accessors live in Rust. */
#ifndef DPDK_BINDINGS_SHIM_H
#define DPDK_BINDINGS_SHIM_H

#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;
struct rte_ring;

uint16_t dpdk_shim_rx_burst(uint16_t port_id, uint16_t queue_id,
                            struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t dpdk_shim_tx_burst(uint16_t port_id, uint16_t queue_id,
                            struct rte_mbuf **tx_pkts, uint16_t nb_pkts);
struct rte_mbuf *dpdk_shim_pktmbuf_alloc(struct rte_mempool *mp);
int dpdk_shim_pktmbuf_alloc_bulk(struct rte_mempool *mp,
                                 struct rte_mbuf **mbufs, unsigned int count);
void dpdk_shim_pktmbuf_free(struct rte_mbuf *m);
unsigned int dpdk_shim_ring_enqueue_burst(struct rte_ring *r,
                                          void *const *obj_table,
                                          unsigned int n,
                                          unsigned int *free_space);
unsigned int dpdk_shim_ring_dequeue_burst(struct rte_ring *r,
                                          void **obj_table, unsigned int n,
                                          unsigned int *available);
unsigned int dpdk_shim_ring_count(const struct rte_ring *r);
unsigned int dpdk_shim_lcore_id(void);
uint64_t dpdk_shim_rdtsc(void);
int dpdk_shim_errno(void);

#endif
