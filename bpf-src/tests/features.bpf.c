// SPDX-License-Identifier: GPL-2.0
/* Loader test: every ELF/BTF shape the parser must handle, in one object (parsed, and loaded by
 * the batch/pin tests): several programs in one section, static and global subprograms in .text,
 * .rodata/.data/.bss globals, typedef'd and __uint-sized map definitions, sockops and tp/ sections. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

typedef __u64 counter_t;
typedef const volatile counter_t cv_counter_t;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10000);
	__type(key, __u64);
	__type(value, counter_t);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} big_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 64);
	__uint(key_size, 8);
	__uint(value_size, 12);
} percpu_hash SEC(".maps");

const volatile __u32 config_a = 7;
const volatile __u64 config_b = 9;
__u64 data_counter = 3;
__u64 bss_counter;

static __attribute__((noinline)) __u64 add_static(__u64 a)
{
	return a + config_a;
}

__attribute__((noinline)) int add_global(int a)
{
	return a + (int)add_static(a);
}

SEC("sockops")
int ops_one(struct bpf_sock_ops *ops)
{
	__u64 key = ops->op;
	counter_t *v = bpf_map_lookup_elem(&big_hash, &key);

	if (v)
		__sync_fetch_and_add(v, 1);
	return 1;
}

SEC("sockops")
int ops_two(struct bpf_sock_ops *ops)
{
	bss_counter += add_global(ops->op);
	return 1;
}

SEC("tp/sched/sched_process_exec")
int on_exec(void *ctx)
{
	data_counter += add_static(config_b);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
