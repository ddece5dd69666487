// SPDX-License-Identifier: GPL-2.0
/* Loader test: counts openat(2) calls made from one cgroup, whose id userspace sets in .rodata
 * before load. The count lives in .bss, so loading exercises map-value relocations. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u64 target_cgroup_id = 0;

__u64 openat_calls = 0;

SEC("tracepoint/syscalls/sys_enter_openat")
int count_openat(void *ctx)
{
	if (bpf_get_current_cgroup_id() == target_cgroup_id)
		__sync_fetch_and_add(&openat_calls, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
