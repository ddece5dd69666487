// SPDX-License-Identifier: GPL-2.0
/* Loader test: a program the verifier must reject (map value used without a NULL check). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} values SEC(".maps");

SEC("cgroup_skb/egress")
int unchecked_lookup(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&values, &key);

	*v += 1; /* no NULL check: rejected */
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
