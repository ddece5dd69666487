// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0-only)
/*
 * The benchmark's floor (cli/benches/podnet/events.rs), never part of the podnet binary: two
 * cgroup_skb programs that only let the packet pass. Attached beside podnet's skb programs on the
 * same pod cgroups, they run on exactly the same packets, and their ns/run is what the cgroup hook
 * and the two clock reads of kernel.bpf_stats_enabled cost by themselves; podnet's ns/run minus
 * theirs is what podnet's own code costs per packet.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

SEC("cgroup_skb/egress")
int floor_egress(struct __sk_buff *skb)
{
	return 1;
}

SEC("cgroup_skb/ingress")
int floor_ingress(struct __sk_buff *skb)
{
	return 1;
}
