// SPDX-License-Identifier: GPL-2.0
/* Loader test: counts UDP/IPv4 packets and bytes leaving and entering a cgroup.
 * Exercises a per-CPU array map, a .text subprogram reached by a bpf-to-bpf call,
 * and two program sections. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct skb_count {
	__u64 packets;
	__u64 bytes;
};

/* key 0: ingress, key 1: egress */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct skb_count);
} skb_counts SEC(".maps");

static __attribute__((noinline)) int count_udp(struct __sk_buff *skb, __u32 dir)
{
	struct skb_count *c;
	__u8 proto = 0;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return 0;
	if (bpf_skb_load_bytes(skb, 9, &proto, 1) < 0 || proto != IPPROTO_UDP)
		return 0;
	c = bpf_map_lookup_elem(&skb_counts, &dir);
	if (!c)
		return 0;
	c->packets += skb->gso_segs ? skb->gso_segs : 1;
	c->bytes += skb->len;
	return 0;
}

SEC("cgroup_skb/ingress")
int count_ingress(struct __sk_buff *skb)
{
	count_udp(skb, 0);
	return 1;
}

SEC("cgroup_skb/egress")
int count_egress(struct __sk_buff *skb)
{
	count_udp(skb, 1);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
