// SPDX-License-Identifier: GPL-2.0
/* Loader test: counts sockets created and released in a cgroup (key 0: created, key 1: released). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__uint(key_size, 4);
	__uint(value_size, 8);
} sock_counts SEC(".maps");

static __attribute__((noinline)) void bump(__u32 key)
{
	__u64 *v = bpf_map_lookup_elem(&sock_counts, &key);

	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("cgroup/sock_create")
int count_create(struct bpf_sock *sk)
{
	bump(0);
	return 1;
}

SEC("cgroup/sock_release")
int count_release(struct bpf_sock *sk)
{
	bump(1);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
