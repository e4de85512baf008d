//go:build ignore

// xdp_drop_count: drops every frame, counting packets and bytes in a per-CPU
// array summed in Go. It is the benchmark ceiling (the most a receiver on this
// interface could see) and a receiving end that makes veth deliver redirected
// frames at all. Multi-buffer aware: bytes are the whole frame, all fragments.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "xdpipe.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counter);
} drop_counts SEC(".maps");

SEC("xdp.frags")
int xdp_drop_count(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct counter *c = bpf_map_lookup_elem(&drop_counts, &zero);

	if (c) {
		c->packets++;
		c->bytes += bpf_xdp_get_buff_len(ctx);
	}
	return XDP_DROP;
}

char _license[] SEC("license") = "Dual BSD/GPL";
