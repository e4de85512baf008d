//go:build ignore

// redirect: the foundation XDP program. Every frame goes to the AF_XDP socket
// registered in xsks at the frame's RX queue; with no socket there,
// bpf_redirect_map returns its flags argument, XDP_PASS, the frame goes on to
// the kernel stack and xsk_unbound counts it (xsk.h).
//
// SEC("xdp.frags") makes the loader set BPF_F_XDP_HAS_FRAGS: the program
// declares it copes with multi-buffer frames (it never touches the payload),
// which the kernel requires to attach it to a device whose MTU does not fit a
// page (veth at MTU 9000) and to redirect such frames to a socket bound with
// XDP_USE_SG.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "xdpipe.h"
#include "xsk.h"
#include "xsks.h"

SEC("xdp.frags")
int xdp_redirect(struct xdp_md *ctx)
{
	return redirect_xsk(&xsks, ctx);
}

char _license[] SEC("license") = "Dual BSD/GPL";
