// The redirect into AF_XDP sockets that every xdpipe program ends with, and
// the count of the frames it cannot make.

#ifndef XDPIPE_XSK_H
#define XDPIPE_XSK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "xdpipe.h"

// Frames bound for an AF_XDP socket that arrived on an RX queue where none
// is registered, per queue (per CPU, summed in Go). They go on to the kernel
// stack: a NIC whose RSS spreads flows over queues that have no socket
// hands them these, and without this count they would vanish from every
// xdpipe figure.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XDPIPE_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u64);
} xsk_unbound SEC(".maps");

// redirect_xsk redirects the frame to the socket registered in xsks for its
// RX queue; with none there it counts the frame in xsk_unbound and passes it
// to the kernel. The count costs nothing on the redirect path.
static __always_inline int redirect_xsk(void *xsks, struct xdp_md *ctx)
{
	__u32 queue = ctx->rx_queue_index;
	int act = bpf_redirect_map(xsks, queue, XDP_PASS);

	if (act == XDP_PASS) {
		__u64 *n = bpf_map_lookup_elem(&xsk_unbound, &queue);
		if (n)
			(*n)++;
	}
	return act;
}

#endif
