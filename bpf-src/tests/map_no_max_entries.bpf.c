// SPDX-License-Identifier: GPL-2.0
/* Loader test: a hash map definition without `max_entries`, which the parser must reject. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
} no_max SEC(".maps");

SEC("cgroup_skb/egress")
int use_map(struct __sk_buff *skb)
{
	__u32 key = 0;

	return bpf_map_lookup_elem(&no_max, &key) ? 1 : 1;
}

char LICENSE[] SEC("license") = "GPL";
