/* Shared between the BPF programs (podnet.bpf.c) and userspace (cli/src/attach.rs mirrors it).
 * Every field is a __u64 so the layout has no padding and the Rust mirror is a plain [u64; N]. */
#ifndef PODNET_H
#define PODNET_H

/* Value of the `counters` per-CPU hash map, keyed by cgroup v2 id (__u64). */
struct podnet_counters {
	__u64 rx_bytes;
	__u64 rx_packets;
	__u64 tx_bytes;
	__u64 tx_packets;
	__u64 sock_created;
	__u64 sock_closed;
	__u64 tcp_active_opens;
	__u64 tcp_passive_opens;
	__u64 tcp_retransmits;
	__u64 file_opens;
	__u64 file_open_errors;
};

/* Value of the one-entry per-CPU array `misses`: events podnet saw but could not attribute. */
struct podnet_misses {
	/* An attached program ran for a cgroup none of whose ancestors is registered
	 * (the counters map was full when userspace tried to register it). */
	__u64 untracked_events;
	/* Socket events whose owner could not be stored (socket storage exhausted). */
	__u64 sock_storage_failures;
};

#endif
