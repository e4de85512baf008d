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
	__u64 window[TRACK_WORDS]; // bit s%TRACK_WINDOW: s seen, for s in (max_seq-TRACK_WINDOW, max_seq]
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct track_state);
} track SEC(".maps");

static __always_inline void set_seen(struct track_state *st, __u64 s)
{
	st->window[(s % TRACK_WINDOW) / 64 & (TRACK_WORDS - 1)] |= 1ULL << (s % 64);
}

// forget clears the window's bits of the sequence numbers in (st->max_seq,
// s), which the window moves over: at most TRACK_WORDS+1 words.
static __always_inline void forget(struct track_state *st, __u64 s)
{
	__u64 lo = st->max_seq + 1;
	int i;

	// A jump of a whole window or more clears every bit but s's own.
	if (s - st->max_seq >= TRACK_WINDOW)
		lo = s - TRACK_WINDOW + 1;
	for (i = 0; i <= TRACK_WORDS; i++) {
		if (lo >= s)
			break;
		__u64 bit = lo % 64, n = 64 - bit, mask = ~0ULL << bit;
		if (s - lo < n) {
			n = s - lo;
			mask = ((1ULL << n) - 1) << bit;
		}
		st->window[(lo % TRACK_WINDOW) / 64 & (TRACK_WORDS - 1)] &= ~mask;
		lo += n;
	}
}

// observe counts one frame with gen's payload (gen.Tracker.ObservePayload
// without the latency).
static __always_inline void observe(struct track_state *st, __u64 seq, __u64 size)
{
	st->received++;
	st->bytes += size;
	if (!st->any_seen) {
		st->any_seen = 1;
		st->max_seq = seq;
		set_seen(st, seq);
		st->unique++;
	} else if (seq > st->max_seq) {
		forget(st, seq);
		st->max_seq = seq;
		set_seen(st, seq);
		st->unique++;
	} else if (st->max_seq - seq >= TRACK_WINDOW) {
		st->late++;
		st->reordered++;
		st->unique++;
	} else {
		__u64 *w = &st->window[(seq % TRACK_WINDOW) / 64 & (TRACK_WORDS - 1)];
		__u64 b = 1ULL << (seq % 64);
		if (*w & b) {
			st->dups++;
			return;
		}
		*w |= b;
		st->unique++;
		if (seq != st->max_seq)
			st->reordered++;
	}
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

// track_frame finds gen's payload as gen.Parse does and accounts the frame.
static __always_inline void track_frame(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct track_state *st = bpf_map_lookup_elem(&track, &zero);
	struct tuple t = {};

	if (!st)
		return;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *fast = udp4_payload(data, end);
	if (fast) {
		if (bpf_ntohl(*(__u32 *)fast) != GEN_MAGIC) {
			st->others++;
			return;
		}
		observe(st, *(__u64 *)(fast + 4), end - data);
		return;
	}
	if (parse(ctx, &t) || !t.has_ports) {
		st->others++;
		return;
	}
	// Packet pointers are read again after the call.
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	__u32 off = t.l4;
	if (off > MAX_PAYLOAD_OFF) {
		st->others++;
		return;
	}
	if (t.proto == IPPROTO_TCP) {
		__u8 *th = data + off;
		if ((void *)(th + 13) > end) {
			st->others++;
			return;
		}
		__u32 doff = (th[12] >> 4) * 4;
		if (doff < 20) {
			st->others++;
			return;
		}
		off += doff;
	} else {
		off += 8;
	}
	__u8 *p = data + (off & (2 * MAX_PAYLOAD_OFF - 1));
	if ((void *)(p + GEN_PAYLOAD_LEN) > end || bpf_ntohl(*(__u32 *)p) != GEN_MAGIC) {
		st->others++;
		return;
	}
	observe(st, *(__u64 *)(p + 4), end - data);
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
