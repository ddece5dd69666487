// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0-only)
/*
 * podnet's BPF programs: per-cgroup network, socket and file-open counters.
 *
 * Every counter lives in the per-CPU hash `counters`, keyed by a cgroup v2 id. Userspace registers
 * each tracked cgroup (pod directories and the container directories it knows) by inserting a
 * zeroed entry; the programs here only look entries up and never create them. An event is charged
 * to the *deepest registered cgroup* on its path to the root: the container when userspace knows
 * it, otherwise the pod (a container started after attach is thus counted from its first event, in
 * its pod's own entry, and userspace adds every entry of a pod together).
 *
 * Increments are atomic: a per-CPU slot can still be updated by two programs on one CPU when a
 * preemptible context (syscall tracepoint, sock_create) is interrupted by another program.
 */
#include <linux/bpf.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include "podnet.h"

/* Deepest cgroup nesting podnet walks. kind nodes put pods at depth ~9; real nodes at 3-4. */
#define MAX_DEPTH 24

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	/* Entries are only ever inserted by userspace, so they need not be preallocated: memory
	 * grows with the cgroups tracked, not with the capacity (resized from --max-pods). */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct podnet_counters);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct podnet_misses);
} misses SEC(".maps");

/*
 * For sockops callbacks that run in softirq context (passive establishment, retransmits) the
 * current task says nothing about the socket. The cgroup id that owns a TCP socket is stored with
 * the socket when it connects or listens (process context); BPF_F_CLONE hands a listener's owner to
 * every socket it accepts.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, __u64);
} sock_owner SEC(".maps");

/*
 * Kernel variants, set by userspace from its feature probes before load. They live in frozen
 * .rodata, so the verifier sees them as constants and skips the branches they turn off: a helper
 * the kernel lacks for a program type is then never looked at.
 *
 * sockops_current_cgroup: sockops may call bpf_get_current_cgroup_id (Linux 6.4). Without it, a
 * TCP socket's owner is the one sock_create recorded under the socket's cookie (below), else the
 * pod the program is attached to.
 * sock_create_cookie: cgroup/sock_create may call bpf_get_socket_cookie, so it records owners.
 * All default to off: the object as compiled loads on every supported kernel.
 */
const volatile __u8 sockops_current_cgroup = 0;
const volatile __u8 sock_create_cookie = 0;
/* Tracepoint programs may call bpf_get_current_ancestor_cgroup_id (not on 5.10): without it, an
 * open is counted only when the task's own cgroup is registered. */
const volatile __u8 tracepoint_ancestors = 0;
/* The same for kprobe programs (the file-open kprobes on do_sys_openat2). */
const volatile __u8 kprobe_ancestors = 0;
/* The same for the fexit program on do_sys_openat2. */
const volatile __u8 fexit_ancestors = 0;

/*
 * The shallowest and deepest level (root = 0) of the cgroups userspace registered, written by
 * userspace before it registers a cgroup (only ever widened while it runs). Walks up the cgroup
 * tree look at these levels only: a process whose cgroup is shallower than every registered one
 * (the node's system services) costs one lookup, whatever the depth of the pods. max == 0:
 * nothing registered yet.
 */
struct podnet_levels {
	__u32 min;
	__u32 max;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct podnet_levels);
} levels SEC(".maps");

/*
 * Which build of this object the maps and programs belong to: userspace writes a fingerprint of
 * the object file here when it loads it, and no program reads it. An agent that finds pins made by
 * another build replaces them instead of running its code against maps and programs whose layout
 * and meaning it does not know.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} build SEC(".maps");

/*
 * Owner (deepest registered cgroup of the creating task) of sockets created in tracked cgroups,
 * keyed by socket cookie: written by sock_create, removed by sock_release, read by sockops where
 * sockops cannot ask for the current cgroup. LRU: a lost entry costs container-level attribution
 * (the pod still counts), never a wrong pod. Userspace sizes it to 1 entry when unused.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, __u64);
} sock_cookie_owner SEC(".maps");

/*
 * The pod a cgroup program is attached to (its attach point): userspace writes the pod's cgroup id
 * here after attaching. It attributes TCP events of sockets that predate podnet (a server that was
 * listening before attach) to their pod.
 */
struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_STORAGE);
	__type(key, __u64);
	__type(value, __u64);
} attach_pod SEC(".maps");

static __always_inline void count_miss(void)
{
	__u32 zero = 0;
	struct podnet_misses *m = bpf_map_lookup_elem(&misses, &zero);

	if (m)
		__sync_fetch_and_add(&m->untracked_events, 1);
}

/*
 * The counters of the deepest registered cgroup on the current task's path, or NULL. With
 * `ancestors` false only the task's own cgroup is looked up (for program types that cannot call
 * bpf_get_current_ancestor_cgroup_id on this kernel; the constant drops the walk). The walk goes
 * from the deepest registered level up to the shallowest (`levels`) and stops at the first hit.
 */
static __always_inline struct podnet_counters *current_counters_walk(__u64 *owner, int ancestors)
{
	__u64 id = bpf_get_current_cgroup_id();
	struct podnet_counters *hit = bpf_map_lookup_elem(&counters, &id);
	struct podnet_levels *range;
	__u32 zero = 0;
	int lo, hi;

	if (hit) {
		*owner = id;
		return hit;
	}
	if (!ancestors)
		return 0;
	range = bpf_map_lookup_elem(&levels, &zero);
	if (!range || range->max == 0)
		return 0;
	lo = range->min < 1 ? 1 : range->min;
	hi = range->max >= MAX_DEPTH ? MAX_DEPTH - 1 : range->max;
	/* Shallower than every registered cgroup: none of them is an ancestor. */
	if (bpf_get_current_ancestor_cgroup_id(lo) == 0)
		return 0;
	for (int i = 0; i < MAX_DEPTH; i++) {
		int level = hi - i;
		__u64 up;
		struct podnet_counters *c;

		if (level < lo)
			break;
		up = bpf_get_current_ancestor_cgroup_id(level);
		/* 0: the task is shallower than this level; id: its own cgroup, looked up above. */
		if (up == 0 || up == id)
			continue;
		c = bpf_map_lookup_elem(&counters, &up);
		if (c) {
			*owner = up;
			return c;
		}
	}
	return 0;
}

/* cgroup/sock programs can walk up the tree on every supported kernel (5.7). */
static __always_inline struct podnet_counters *current_counters(__u64 *owner)
{
	return current_counters_walk(owner, 1);
}

/* The counters of the deepest registered cgroup on the path of the socket that owns skb. */
static __always_inline struct podnet_counters *skb_counters(struct __sk_buff *skb)
{
	__u64 id = bpf_skb_cgroup_id(skb);
	struct podnet_counters *hit = bpf_map_lookup_elem(&counters, &id);

	if (hit)
		return hit;
	for (int level = 1; level < MAX_DEPTH; level++) {
		__u64 up = bpf_skb_ancestor_cgroup_id(skb, level);
		struct podnet_counters *c;

		if (up == 0 || up == id)
			break;
		c = bpf_map_lookup_elem(&counters, &up);
		if (c)
			hit = c;
	}
	return hit;
}

/* Wire segments: a GSO skb stands for gso_segs packets on the wire. */
static __always_inline __u64 skb_packets(struct __sk_buff *skb)
{
	return skb->gso_segs > 1 ? skb->gso_segs : 1;
}

SEC("cgroup_skb/ingress")
int podnet_ingress(struct __sk_buff *skb)
{
	struct podnet_counters *c = skb_counters(skb);

	if (!c) {
		count_miss();
		return 1;
	}
	__sync_fetch_and_add(&c->rx_bytes, skb->len);
	__sync_fetch_and_add(&c->rx_packets, skb_packets(skb));
	return 1;
}

SEC("cgroup_skb/egress")
int podnet_egress(struct __sk_buff *skb)
{
	struct podnet_counters *c = skb_counters(skb);

	if (!c) {
		count_miss();
		return 1;
	}
	__sync_fetch_and_add(&c->tx_bytes, skb->len);
	__sync_fetch_and_add(&c->tx_packets, skb_packets(skb));
	return 1;
}

SEC("cgroup/sock_create")
int podnet_sock_create(struct bpf_sock *sk)
{
	__u64 owner = 0;
	struct podnet_counters *c = current_counters(&owner);

	if (!c) {
		count_miss();
		return 1;
	}
	__sync_fetch_and_add(&c->sock_created, 1);
	if (sock_create_cookie && !sockops_current_cgroup) {
		__u64 cookie = bpf_get_socket_cookie(sk);

		bpf_map_update_elem(&sock_cookie_owner, &cookie, &owner, BPF_ANY);
	}
	return 1;
}

SEC("cgroup/sock_release")
int podnet_sock_release(struct bpf_sock *sk)
{
	__u64 owner = 0;
	struct podnet_counters *c = current_counters(&owner);

	if (c)
		__sync_fetch_and_add(&c->sock_closed, 1);
	else
		count_miss();
	if (sock_create_cookie && !sockops_current_cgroup) {
		__u64 cookie = bpf_get_socket_cookie(sk);

		bpf_map_delete_elem(&sock_cookie_owner, &cookie);
	}
	return 1;
}

/* The pod this sockops program runs for (its attach point), or 0 before userspace named it. */
static __always_inline __u64 attach_point_pod(void)
{
	__u64 *pod = bpf_get_local_storage(&attach_pod, 0);

	return pod ? *pod : 0;
}

/*
 * The counters of the tracked cgroup that owns a socket in process context (connect, listen):
 * the current task's deepest registered cgroup where sockops may ask (6.4), else the owner
 * sock_create recorded, else the pod.
 */
static __always_inline struct podnet_counters *process_socket_counters(struct bpf_sock_ops *ops,
									__u64 *owner)
{
	struct podnet_counters *c;
	__u64 cookie, *recorded;

	if (sockops_current_cgroup)
		return current_counters(owner);
	cookie = bpf_get_socket_cookie(ops);
	recorded = bpf_map_lookup_elem(&sock_cookie_owner, &cookie);
	if (recorded) {
		*owner = *recorded;
		c = bpf_map_lookup_elem(&counters, owner);
		if (c)
			return c;
	}
	*owner = attach_point_pod();
	if (*owner == 0)
		return 0;
	return bpf_map_lookup_elem(&counters, owner);
}

/* Remember which tracked cgroup owns this TCP socket (process context only). */
static __always_inline struct podnet_counters *claim_socket(struct bpf_sock_ops *ops)
{
	__u64 owner = 0;
	struct podnet_counters *c = process_socket_counters(ops, &owner);
	struct bpf_sock *sk = ops->sk;
	__u64 *slot;

	if (!c || !sk)
		return c;
	slot = bpf_sk_storage_get(&sock_owner, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (slot) {
		*slot = owner;
	} else {
		__u32 zero = 0;
		struct podnet_misses *m = bpf_map_lookup_elem(&misses, &zero);

		if (m)
			__sync_fetch_and_add(&m->sock_storage_failures, 1);
	}
	return c;
}

/* The counters of the tracked cgroup that owns this socket; in softirq context too. */
static __always_inline struct podnet_counters *socket_counters(struct bpf_sock_ops *ops)
{
	struct bpf_sock *sk = ops->sk;
	__u64 *stored = 0, owner;

	if (sk)
		stored = bpf_sk_storage_get(&sock_owner, sk, 0, 0);
	owner = stored ? *stored : attach_point_pod();
	if (owner == 0)
		return 0;
	return bpf_map_lookup_elem(&counters, &owner);
}

SEC("sockops")
int podnet_sockops(struct bpf_sock_ops *ops)
{
	struct podnet_counters *c;

	switch (ops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		/* What the kernel counts as TcpActiveOpens: a connect() that sends a SYN. */
		c = claim_socket(ops);
		if (c)
			__sync_fetch_and_add(&c->tcp_active_opens, 1);
		else
			count_miss();
		break;
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		claim_socket(ops);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		bpf_sock_ops_cb_flags_set(ops, ops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_RETRANS_CB_FLAG);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		bpf_sock_ops_cb_flags_set(ops, ops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_RETRANS_CB_FLAG);
		c = socket_counters(ops);
		if (c) {
			__sync_fetch_and_add(&c->tcp_passive_opens, 1);
			/* An accepted connection is a socket of the pod that never passed through
			 * sock_create; it will pass through sock_release when closed. */
			__sync_fetch_and_add(&c->sock_created, 1);
		} else {
			count_miss();
		}
		break;
	case BPF_SOCK_OPS_RETRANS_CB:
		/* args: seq, segments, error. The kernel's RetransSegs counts successful ones. */
		if (ops->args[2] == 0) {
			c = socket_counters(ops);
			if (c)
				__sync_fetch_and_add(&c->tcp_retransmits, ops->args[1]);
			else
				count_miss();
		}
		break;
	}
	return 1;
}

/*
 * File opens through the syscall tracepoints, where the kernel allows neither fexit nor kprobes.
 * One program, attached to the exit event of every open-family syscall this architecture has
 * (openat, openat2, open, creat), counts each open and, when it failed, its error as the syscall
 * returns, as the fexit program below does. Only exits: half the attachments of an enter/exit pair,
 * so half the links to close when podnet detaches (each close waits for the kernel's tracepoint
 * grace periods), and one program run per open instead of two.
 * Processes outside tracked cgroups are not misses: the tracepoints see the whole node.
 */

/* Layout of every syscalls/sys_exit_* event (tracefs .../format): common header, nr, ret. */
struct sys_exit_args {
	__u64 common;
	long nr;
	long ret;
};

SEC("tracepoint/syscalls/sys_exit_openat")
int podnet_open_exit(struct sys_exit_args *ctx)
{
	__u64 owner = 0;
	struct podnet_counters *c = current_counters_walk(&owner, tracepoint_ancestors);

	if (c) {
		__sync_fetch_and_add(&c->file_opens, 1);
		if (ctx->ret < 0)
			__sync_fetch_and_add(&c->file_open_errors, 1);
	}
	return 0;
}

/*
 * File opens at the open path itself: every open-family syscall (open, openat, openat2, creat) goes
 * through do_sys_openat2 (Linux 5.6). Unlike a syscall tracepoint, which sends every syscall of
 * every task on the node down the kernel's slow syscall path while attached, a kprobe costs only
 * the opens. Userspace attaches these where the kernel can, else the tracepoints above.
 */
SEC("kprobe/do_sys_openat2")
int podnet_open_kprobe(void *ctx)
{
	__u64 owner = 0;
	struct podnet_counters *c = current_counters_walk(&owner, kprobe_ancestors);

	if (c)
		__sync_fetch_and_add(&c->file_opens, 1);
	return 0;
}

/* do_sys_openat2's return value (a file descriptor or -errno) in the saved registers. */
static __always_inline long return_value(struct pt_regs *regs)
{
#if defined(__TARGET_ARCH_x86)
	return (long)regs->rax;
#elif defined(__TARGET_ARCH_arm64)
	return (long)((struct user_pt_regs *)regs)->regs[0];
#else
#error "podnet's kretprobe reads the return register: add this architecture"
#endif
}

SEC("kretprobe/do_sys_openat2")
int podnet_open_kretprobe(struct pt_regs *regs)
{
	__u64 owner = 0;
	struct podnet_counters *c;

	if (return_value(regs) >= 0)
		return 0;
	c = current_counters_walk(&owner, kprobe_ancestors);
	if (c)
		__sync_fetch_and_add(&c->file_open_errors, 1);
	return 0;
}

/*
 * File opens at the open path through a BPF trampoline: one fexit program sees each open's result,
 * so an open and, when it failed, its error are counted together as it returns. Cheaper than a
 * kprobe pair and with no limit on opens in flight (a kretprobe has a fixed pool of instances), but
 * it needs the kernel's BTF. Userspace prefers it, then the kprobes, then the tracepoints.
 */
SEC("fexit/do_sys_openat2")
int podnet_open_fexit(__u64 *ctx)
{
	/* long do_sys_openat2(int dfd, const char __user *filename, struct open_how *how): the return
	 * value follows the three arguments. */
	long ret = (long)ctx[3];
	__u64 owner = 0;
	struct podnet_counters *c = current_counters_walk(&owner, fexit_ancestors);

	if (c) {
		__sync_fetch_and_add(&c->file_opens, 1);
		if (ret < 0)
			__sync_fetch_and_add(&c->file_open_errors, 1);
	}
	return 0;
}
