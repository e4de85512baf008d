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

// rx_stamp: N (a power of two) makes redirect_xsk stamp one frame in N it
// redirects, on each CPU, with the time, for the worker's rx delay
// histogram (pipeline.WorkerConfig.RxDelay); 1 stamps every frame. The
// clock read is most of what a stamp costs. Read-only data, frozen at
// load: the verifier drops the stamp when it is 0, so the setting off
// costs nothing. Set by the loader (RedirectOptions.RxStamp,
// SteerOptions.RxStamp).
volatile const __u32 rx_stamp = 0;

// rx_stamp_seen counts, per CPU, the frames that could be stamped: the
// one in rx_stamp whose count is a multiple of it is.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} rx_stamp_seen SEC(".maps");

// rx_stamp_key is rx_stamp_seen's key, in read-only data rather than on
// the stack, which the steering program's calls fill to the limit.
volatile const __u32 rx_stamp_key = 0;

// stamp_due reports whether this frame is the one in rx_stamp to stamp.
static __always_inline int stamp_due(void)
{
	if (rx_stamp <= 1)
		return rx_stamp;
	__u32 *n = bpf_map_lookup_elem(&rx_stamp_seen, (const void *)&rx_stamp_key);
	if (!n)
		return 0;
	return ((*n)++ & (rx_stamp - 1)) == 0;
}

// RX_STAMP_MAGIC: struct rx_stamp's check word is ns ^ RX_STAMP_MAGIC, so
// that the worker tells a stamp from whatever the headroom held before.
// pipeline/rxdelay.go: keep in step.
#define RX_STAMP_MAGIC 0x58445053544d5031ULL

// The stamp, in the frame's XDP metadata area: the 16 bytes just before
// the packet data. AF_XDP hands the metadata area to the socket with the
// frame (copy mode copies it, zero-copy leaves it in the UMEM headroom).
struct rx_stamp {
	__u64 ns; // bpf_ktime_get_ns: CLOCK_MONOTONIC
	__u64 check; // ns ^ RX_STAMP_MAGIC
};

#ifdef XDPIPE_RX_META
#define XDPIPE_RX_META_ON 1
// The device-bound variants (built with XDPIPE_RX_META, loaded bound to
// one interface) also put the driver's RX metadata in front of the stamp:
// 32 bytes, struct rx_meta then struct rx_stamp, whose check word is then
// ns ^ RX_META_MAGIC, ns being 0 when rx_stamp is not set.
#define RX_META_MAGIC 0x58445052584d4431ULL

enum xdp_rss_hash_type;
extern int bpf_xdp_metadata_rx_hash(const struct xdp_md *ctx, __u32 *hash, enum xdp_rss_hash_type *rss_type) __ksym;
extern int bpf_xdp_metadata_rx_timestamp(const struct xdp_md *ctx, __u64 *timestamp) __ksym;

#define RX_META_HASH 1 // rx_hash and the hash type are the driver's
#define RX_META_TIMESTAMP 2 // rx_timestamp is the driver's

struct rx_meta {
	__u64 rx_timestamp; // bpf_xdp_metadata_rx_timestamp: the NIC's clock, ns
	__u32 rx_hash; // bpf_xdp_metadata_rx_hash
	__u16 rx_hash_type; // enum xdp_rss_hash_type
	__u16 flags; // RX_META_*
};

// stamp writes the driver's RX metadata and, when rx_stamp is set, the
// time into the frame's metadata area. A driver's kfunc that has nothing
// for the frame (an error, or a timestamp of 0) leaves its flag clear.
static __always_inline void stamp(struct xdp_md *ctx)
{
	struct rx_meta m = {};
	__u32 type = 0;

	if (!bpf_xdp_metadata_rx_hash(ctx, &m.rx_hash, (enum xdp_rss_hash_type *)&type)) {
		m.rx_hash_type = type;
		m.flags |= RX_META_HASH;
	}
	if (!bpf_xdp_metadata_rx_timestamp(ctx, &m.rx_timestamp) && m.rx_timestamp)
		m.flags |= RX_META_TIMESTAMP;
	if (bpf_xdp_adjust_meta(ctx, -(int)(sizeof(struct rx_meta) + sizeof(struct rx_stamp))))
		return;
	struct rx_meta *mp = (void *)(long)ctx->data_meta;
	struct rx_stamp *s = (void *)(mp + 1);
	if ((void *)(s + 1) > (void *)(long)ctx->data)
		return;
	*mp = m;
	__u64 now = stamp_due() ? bpf_ktime_get_ns() : 0;
	s->ns = now;
	s->check = now ^ RX_META_MAGIC;
}
#else
#define XDPIPE_RX_META_ON 0
// stamp writes the metadata area of every frame it redirects: the time in
// the one frame in rx_stamp that is due, zeros in the others. The worker
// reads the stamp of one frame per burst, not of each: writing every
// frame's area keeps a stamp from an earlier use of the frame's buffer
// from being read as this use's, at the cost of a 16-byte write on the
// CPU that already holds the frame, not of a clock read. A driver without
// metadata support refuses bpf_xdp_adjust_meta: the frame then goes
// without a stamp, and the worker, finding no check word, records nothing
// for it.
static __always_inline void stamp(struct xdp_md *ctx)
{
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct rx_stamp)))
		return;
	struct rx_stamp *s = (void *)(long)ctx->data_meta;
	if ((void *)(s + 1) > (void *)(long)ctx->data)
		return;
	if (!stamp_due()) {
		s->ns = 0;
		s->check = 0;
		return;
	}
	__u64 now = bpf_ktime_get_ns();
	s->ns = now;
	s->check = now ^ RX_STAMP_MAGIC;
}
#endif

// redirect_xsk redirects the frame to the socket registered in xsks for its
// RX queue, stamped when rx_stamp is set; with none there it counts the
// frame in xsk_unbound and passes it to the kernel, unstamped. The count
// costs nothing on the redirect path.
static __always_inline int redirect_xsk(void *xsks, struct xdp_md *ctx)
{
	__u32 queue = ctx->rx_queue_index;
	int act = bpf_redirect_map(xsks, queue, XDP_PASS);

	if (act == XDP_PASS) {
		__u64 *n = bpf_map_lookup_elem(&xsk_unbound, &queue);
		if (n)
			(*n)++;
	} else if (rx_stamp || XDPIPE_RX_META_ON) {
		stamp(ctx);
	}
	return act;
}

#endif
