// Shared definitions of xdpipe's XDP programs. Layouts here are mirrored by
// the Go loader (the bpf2go generated types), keep them in step.

#ifndef XDPIPE_H
#define XDPIPE_H

#include <linux/types.h>

// XSKMAP size: the highest RX queue index a socket can be registered on, plus
// one. Frames on higher queues are passed to the kernel.
#define XDPIPE_MAX_QUEUES 256

// A packet and byte counter, one per CPU in a per-CPU map.
struct counter {
	__u64 packets;
	__u64 bytes;
};

#endif
