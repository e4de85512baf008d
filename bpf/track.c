//go:build ignore

// track: the redirect program (redirect.c) that also counts the frames it
// redirects which xdpipe gen made (gen/payload.go), as gen.Tracker does:
// loss, duplicates and reordering. It reads the payload where the frame is
// hot, on the CPU that runs the hook, so the receiver need not: in copy
// mode reading it in user space pulls each frame's cache line to the
// receiver's CPU, and the kernel's next copy into that UMEM frame, on the
// sender's CPU, pays for taking it back.
//
// It reads no clock: bpf_ktime_get_ns costs more than all the rest per
// frame under kvm-clock. Latency is the receiver's to sample.
//
// One struct track_state per CPU; the Go side merges them as gen.Tracker's
// Merge does (duplicates across CPUs are not seen: exact while one CPU runs
// the hook for a flow, as one NAPI instance per queue does). Frames dropped
// after the hook (the socket's RX ring full) are counted here and by the
// kernel's socket statistics.
//
// Loading it needs CAP_PERFMON, as the steering program does: its parser
// moves packet pointers by offsets it reads from the frame, which the
// verifier refuses "for !root" without it. rxdrop without CAP_PERFMON
// counts in its receive loop instead.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xdpipe.h"
#include "xsk.h"
#include "xsks.h"
#include "parse.h"

// gen/payload.go and gen/tracker.go: keep in step.
#define GEN_MAGIC 0x58445031
#define GEN_PAYLOAD_LEN 20
#define TRACK_WINDOW 65536
#define TRACK_WORDS (TRACK_WINDOW / 64)
// The furthest a payload may start (MAX_VLANS tags, IPv6 with
// MAX_EXT_HDRS headers of at most 2048 bytes each fit well below).
#define MAX_PAYLOAD_OFF 16384

// One CPU's accounting: gen.Tracker's fields.
struct track_state {
	__u64 received; // generated frames, duplicates included
	__u64 unique;
	__u64 dups;
	__u64 reordered;
	__u64 late;
	__u64 others; // redirected frames that were not generated ones
	__u64 bytes;
	__u64 max_seq;
	__u64 any_seen;
	__u64 window[TRACK_WORDS]; // bit s%64 of word (s/64)%TRACK_WORDS: s seen, if epoch says that block
	__u64 epoch[TRACK_WORDS]; // s/64+1 of the block a window word holds, 0: none
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct track_state);
} track SEC(".maps");

// set_seen marks s seen, first emptying the word of its block if the word
// held an older one (gen.Tracker.set).
static __always_inline void set_seen(struct track_state *st, __u64 s)
{
	__u32 w = (s / 64) & (TRACK_WORDS - 1);

	if (st->epoch[w] != s / 64 + 1) {
		st->epoch[w] = s / 64 + 1;
		st->window[w] = 0;
	}
	st->window[w] |= 1ULL << (s % 64);
}

// seen says s was marked, for s within the window (gen.Tracker.seen).
static __always_inline int seen(struct track_state *st, __u64 s)
{
	__u32 w = (s / 64) & (TRACK_WORDS - 1);

	return st->epoch[w] == s / 64 + 1 && (st->window[w] & (1ULL << (s % 64)));
}

// observe counts one frame with gen's payload (gen.Tracker.ObservePayload
// without the latency), in the same window: no loop for the verifier to
// follow, as no word is cleared when the window moves.
static __always_inline void observe(struct track_state *st, __u64 seq, __u64 size)
{
	__u64 unique = 1, dups = 0, reordered = 0, late = 0;

	if (!st->any_seen || seq > st->max_seq) {
		st->any_seen = 1;
		st->max_seq = seq;
		set_seen(st, seq);
	} else if (st->max_seq / 64 - seq / 64 >= TRACK_WORDS) {
		late = 1;
		reordered = 1;
	} else if (seen(st, seq)) {
		unique = 0;
		dups = 1;
	} else {
		set_seen(st, seq);
		reordered = seq != st->max_seq;
	}
	st->received++;
	st->bytes += size;
	st->unique += unique;
	st->dups += dups;
	st->reordered += reordered;
	st->late += late;
}

// udp4_payload is where gen's payload starts in the frame gen makes by
// default, Ethernet, IPv4 without options, UDP, not a later fragment, or NULL
// for any other frame. It finds what parse would, in a few loads: a
// frame it declines goes through parse.
static __always_inline __u8 *udp4_payload(void *data, void *end)
{
	__u8 *f = data;

	if ((void *)(f + 42 + GEN_PAYLOAD_LEN) > end)
		return NULL;
	if (*(__u16 *)(f + 12) != bpf_htons(ETH_P_IP) || f[14] != 0x45 || f[23] != IPPROTO_UDP ||
	    (*(__u16 *)(f + 20) & bpf_htons(0x1fff)))
		return NULL;
	return f + 42;
}

// gen_seq finds gen's payload as gen.Parse does and returns 1 with its
// sequence number in *seq, or 0 for a frame that is not a generated one.
static __always_inline int gen_seq(struct xdp_md *ctx, __u64 *seq)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *fast = udp4_payload(data, end);
	struct tuple t = {};

	if (fast) {
		if (bpf_ntohl(*(__u32 *)fast) != GEN_MAGIC)
			return 0;
		*seq = *(__u64 *)(fast + 4);
		return 1;
	}
	if (parse(ctx, &t) || !t.has_ports)
		return 0;
	// The L4 header's offset differs by path: read through the helper.
	__u32 off = t.l4;
	if (off > MAX_PAYLOAD_OFF)
		return 0;
	if (t.proto == IPPROTO_TCP) {
		__u8 doff;
		if (bpf_xdp_load_bytes(ctx, off + 12, &doff, 1) || (doff >> 4) < 5)
			return 0;
		off += (doff >> 4) * 4;
	} else {
		off += 8;
	}
	struct {
		__be32 magic;
		__u64 seq;
		__u8 rest[GEN_PAYLOAD_LEN - 12];
	} __attribute__((packed)) pl;
	if (bpf_xdp_load_bytes(ctx, off, &pl, sizeof(pl)) || bpf_ntohl(pl.magic) != GEN_MAGIC)
		return 0;
	*seq = pl.seq;
	return 1;
}

// track_frame accounts one redirected frame.
static __always_inline void track_frame(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct track_state *st = bpf_map_lookup_elem(&track, &zero);
	__u64 seq = 0;

	if (!st)
		return;
	if (gen_seq(ctx, &seq))
		observe(st, seq, bpf_xdp_get_buff_len(ctx));
	else
		st->others++;
}

SEC("xdp.frags")
int xdp_track(struct xdp_md *ctx)
{
	int act = redirect_xsk(&xsks, ctx);

	if (act == XDP_REDIRECT)
		track_frame(ctx);
	return act;
}

char _license[] SEC("license") = "Dual BSD/GPL";
