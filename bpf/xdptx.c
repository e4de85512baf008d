//go:build ignore

// xdp_tx: sends every frame back out of the interface it arrived on. Run with
// BPF_PROG_RUN and BPF_F_TEST_XDP_LIVE_FRAMES on the sending end of a veth
// pair, it turns one crafted frame into a stream of transmitted frames: the
// traffic generator. Live-frames mode does not take frames larger than a page,
// so this program has no frags variant.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}

char _license[] SEC("license") = "Dual BSD/GPL";
