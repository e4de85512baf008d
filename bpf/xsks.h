// The XSKMAP of the programs that redirect every frame (redirect.c,
// track.c): one AF_XDP socket per RX queue, registered from Go.

#ifndef XDPIPE_XSKS_H
#define XDPIPE_XSKS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "xdpipe.h"

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, XDPIPE_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

#endif
