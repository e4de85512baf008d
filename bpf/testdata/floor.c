//go:build ignore

// floor: test-only programs that bound what steering can cost, for
// BenchmarkSteerVsRedirect.
//
// xdp_floor does what any steering program must: the steering program's
// header parse (parse.h, the same code), then the redirect program's one
// XSKMAP redirect, nothing else. A flow cache can only add to it.
//
// xdp_pass returns XDP_PASS: what BPF_PROG_RUN itself costs per run (its
// loop, the call into the program), included in every program's figure.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "../xdpipe.h"
#include "../parse.h"

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, XDPIPE_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} floor_xsks SEC(".maps");

SEC("xdp.frags")
int xdp_floor(struct xdp_md *ctx)
{
	struct tuple t = {};

	// The steering program acts on a malformed frame too; so that the
	// parse is not dead code, the floor passes it.
	if (parse(ctx, &t))
		return XDP_PASS;
	return bpf_redirect_map(&floor_xsks, ctx->rx_queue_index, XDP_PASS);
}

SEC("xdp.frags")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
