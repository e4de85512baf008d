//go:build ignore

// steer: the rule-driven XDP steering program (issue 3).
//
// Each frame is parsed into a tuple (ingress ifindex, outer VLAN id, inner
// EtherType, IP protocol, source and destination address, ports). Frames that
// cannot be parsed take the generation's malformed action and are counted by
// reason in steer_stats. Others are matched against the active rule set; the
// first rule in priority order wins; with no match the default action applies.
//
// Lookup: bitmap intersection (Lakshman and Stiliadis' bit-vector scheme).
// Rules are numbered 0..n-1 in priority order. For each match field a map
// gives, for the frame's value, the bitmap of rules that accept that value
// (rules that leave the field unset included):
//   - ifindex, VLAN id, EtherType, IP protocol: a hash lookup of the exact
//     value, or the field's wildcard entry when the value is absent;
//   - source and destination prefix: a hash lookup of the address among the
//     full-length prefixes (/32, /128) when there are any, else a
//     longest-prefix-match lookup in an LPM trie (IPv4 or IPv6); the bitmap of the longest stored prefix is
//     the set of rules whose prefix contains it, which is exactly the set of
//     rules containing the address, because matching prefixes nest;
//   - source and destination port: a 65536-entry table maps the port to
//     its elementary interval (the ranges' endpoints cut the port space into
//     at most 2n+1 of them), whose bitmap is a hash lookup.
// Fields no rule of the generation uses are not looked up at all. The
// bitmaps are ANDed; the lowest set bit is the winning rule. Each bitmap
// carries a summary (bit j set when word j is non-zero), so the AND visits
// only the words that can hold a match, lowest first, and stops at the first
// non-zero one. Cost per frame: for each field some rule uses, a field
// lookup and a bitmap lookup (+1 for a missed exact value, +1 for a port
// table); SUM_WORDS summary ANDs; usually one word AND: it does not grow with the number of rules, only the LPM trie
// depth does (logarithmically). Memory: one bitmap (MAX_RULES/8 bytes plus
// summary) per distinct field value, interval and prefix, per generation.
//
// Live updates: every key carries a generation (0 or 1). The loader writes
// the inactive generation completely, then flips steer_active, a single
// aligned u32 the program reads once per frame; a frame therefore sees one
// whole rule set. Before it next rewrites a generation the loader waits for
// an RCU grace period (membarrier(MEMBARRIER_CMD_GLOBAL) runs
// synchronize_rcu), so no frame still in flight can read a half-rewritten
// generation.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xdpipe.h"

#define MAX_RULES 16384
#define BM_WORDS (MAX_RULES / 64)
#define SUM_WORDS (BM_WORDS / 64)
#define MAX_VLANS 2
#define MAX_EXT_HDRS 6
#define WILDCARD 0xffffffff

// Match fields, in the exact map's key and as bits of gen_info.used.
enum field {
	F_IFINDEX,
	F_VLAN,
	F_ETHERTYPE,
	F_PROTO,
	F_SRC,
	F_DST,
	F_SPORT,
	F_DPORT,
	F_COUNT,
};

enum action {
	ACT_PASS,
	ACT_DROP,
	ACT_REDIRECT,
};

// Indexes of steer_stats: STAT_NOMATCH, then one per malformed reason.
enum stat {
	STAT_NOMATCH,
	STAT_TRUNC_ETH,
	STAT_TRUNC_VLAN,
	STAT_TOO_MANY_VLANS,
	STAT_TRUNC_IPV4,
	STAT_BAD_IHL,
	STAT_BAD_VERSION,
	STAT_TRUNC_IPV6,
	STAT_TRUNC_EXT,
	STAT_TOO_MANY_EXT,
	STAT_TRUNC_L4,
	STAT_COUNT,
};

struct bitmap {
	__u64 summary[SUM_WORDS];
	__u64 words[BM_WORDS];
};

struct exact_key {
	__u8 gen;
	__u8 field;
	__u16 pad;
	__u32 value;
};

struct lpm4_key {
	__u32 prefixlen; // 16 + prefix length: gen and dir always match
	__u8 gen;
	__u8 dir; // 0 source, 1 destination
	__u8 addr[4];
	__u8 pad[2];
};

struct lpm6_key {
	__u32 prefixlen;
	__u8 gen;
	__u8 dir;
	__u8 addr[16];
	__u8 pad[2];
};

struct port_table {
	__u16 interval[65536];
};

struct gen_info {
	__u32 used; // bit per enum field some rule matches on
	__u32 nrules;
	__u32 default_action;
	__u32 malformed_action;
	__u32 all_id; // bitmap of all the generation's rules
	__u32 hosts; // bit dir*2 + (IPv6): full-length prefixes in steer_hosts
};

// A rule as stored: the program reads action and slot; the rest is the
// rule itself, so that `xdpipe rules` can rebuild the set from the maps.
struct rule {
	__u32 action;
	__u32 slot; // index into steer_counters, stable while the rule lives
	__u32 priority;
	__u32 fields;
	__u32 ifindex;
	__u16 vlan;
	__u16 ethertype;
	__u8 proto;
	__u8 src_len;
	__u8 dst_len;
	__u8 family; // bit 0: src is IPv6, bit 1: dst is IPv6
	__u16 sport_lo, sport_hi, dport_lo, dport_hi;
	__u8 src[16];
	__u8 dst[16];
	__u8 name[32];
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, XDPIPE_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} steer_xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} steer_active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct gen_info);
} steer_gens SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * MAX_RULES);
	__type(key, __u32);
	__type(value, struct rule);
} steer_rules SEC(".maps");

// Bitmaps by id; ids of generation g have bit 31 == g.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 2 * (10 * MAX_RULES + 32));
	__type(key, __u32);
	__type(value, struct bitmap);
} steer_bitmaps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 2 * (6 * MAX_RULES + 16));
	__type(key, struct exact_key);
	__type(value, __u32);
} steer_exact SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 2 * (2 * MAX_RULES + 2));
	__type(key, struct lpm4_key);
	__type(value, __u32);
} steer_lpm4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 2 * (2 * MAX_RULES + 2));
	__type(key, struct lpm6_key);
	__type(value, __u32);
} steer_lpm6 SEC(".maps");

// Full-length prefixes (/32, /128): one hash lookup instead of a walk down
// the LPM trie, whose depth grows with the number of prefixes. A host entry's
// bitmap already includes the rules of every shorter prefix containing it.
struct host_key {
	__u8 gen;
	__u8 dir;
	__u8 family; // 4 or 6
	__u8 pad;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 2 * 2 * MAX_RULES);
	__type(key, struct host_key);
	__type(value, __u32);
} steer_hosts SEC(".maps");

// Key gen*2 + dir (0 source, 1 destination).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct port_table);
} steer_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_RULES);
	__type(key, __u32);
	__type(value, struct counter);
} steer_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_COUNT);
	__type(key, __u32);
	__type(value, struct counter);
} steer_stats SEC(".maps");

// The parsed frame.
struct tuple {
	__u32 ifindex;
	__u32 vlan; // outer VLAN id, or WILDCARD when untagged
	__u32 ethertype;
	__u32 proto; // IP protocol, or WILDCARD for non-IP
	__u32 family; // 0 non-IP, 4, 6
	__u32 has_ports;
	__u32 sport, dport;
	__u8 src[16], dst[16];
};

#define IPPROTO_ICMPV6_ 58
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60

static __always_inline int is_ext(__u32 nh)
{
	return nh == NEXTHDR_HOP || nh == NEXTHDR_ROUTING || nh == NEXTHDR_FRAGMENT || nh == NEXTHDR_DEST;
}

// parse fills t and returns 0, or the malformed reason (enum stat). A
// global function: the verifier checks it once, not once per caller path.
__attribute__((noinline)) int parse(struct xdp_md *ctx, struct tuple *t)
{
	if (!t)
		return STAT_TRUNC_ETH;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *p;
	__u32 proto;
	int i;

	t->ifindex = ctx->ingress_ifindex;
	t->vlan = WILDCARD;
	t->proto = WILDCARD;
	if ((void *)(eth + 1) > end)
		return STAT_TRUNC_ETH;
	proto = bpf_ntohs(eth->h_proto);
	p = eth + 1;
#pragma unroll
	for (i = 0; i < MAX_VLANS; i++) {
		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		__u16 *tag = p;
		if (p + 4 > end)
			return STAT_TRUNC_VLAN;
		if (i == 0)
			t->vlan = bpf_ntohs(tag[0]) & 0x0fff;
		proto = bpf_ntohs(tag[1]);
		p += 4;
	}
	if (proto == ETH_P_8021Q || proto == ETH_P_8021AD)
		return STAT_TOO_MANY_VLANS;
	t->ethertype = proto;

	int nonfirst = 0;
	if (proto == ETH_P_IP) {
		__u8 *ip = p;
		if (p + 20 > end)
			return STAT_TRUNC_IPV4;
		if ((ip[0] >> 4) != 4)
			return STAT_BAD_VERSION;
		__u32 hl = (ip[0] & 0x0f) * 4;
		if (hl < 20)
			return STAT_BAD_IHL;
		if (p + hl > end)
			return STAT_TRUNC_IPV4;
		t->family = 4;
		t->proto = ip[9];
		__builtin_memcpy(t->src, ip + 12, 4);
		__builtin_memcpy(t->dst, ip + 16, 4);
		nonfirst = (bpf_ntohs(*(__u16 *)(ip + 6)) & 0x1fff) != 0;
		p += hl;
	} else if (proto == ETH_P_IPV6) {
		__u8 *ip6 = p;
		if (p + 40 > end)
			return STAT_TRUNC_IPV6;
		if ((ip6[0] >> 4) != 6)
			return STAT_BAD_VERSION;
		t->family = 6;
		__builtin_memcpy(t->src, ip6 + 8, 16);
		__builtin_memcpy(t->dst, ip6 + 24, 16);
		__u32 nh = ip6[6];
		p += 40;
		for (i = 0; i < MAX_EXT_HDRS; i++) {
			__u8 *h = p;
			if (!is_ext(nh))
				break;
			if (nh == NEXTHDR_FRAGMENT) {
				if (p + 8 > end)
					return STAT_TRUNC_EXT;
				nh = h[0];
				p += 8;
				if (bpf_ntohs(*(__u16 *)(h + 2)) & 0xfff8) {
					nonfirst = 1;
					break;
				}
				continue;
			}
			if (p + 2 > end)
				return STAT_TRUNC_EXT;
			__u32 len = ((__u32)h[1] + 1) * 8;
			if (p + len > end)
				return STAT_TRUNC_EXT;
			nh = h[0];
			p += len;
		}
		if (!nonfirst && is_ext(nh))
			return STAT_TOO_MANY_EXT;
		t->proto = nh;
	} else {
		return 0;
	}
	if (nonfirst)
		return 0;

	switch (t->proto) {
	case IPPROTO_UDP:
	case IPPROTO_TCP: {
		__u16 *ports = p;
		if (p + (t->proto == IPPROTO_UDP ? 8 : 20) > end)
			return STAT_TRUNC_L4;
		t->has_ports = 1;
		t->sport = bpf_ntohs(ports[0]);
		t->dport = bpf_ntohs(ports[1]);
		break;
	}
	case IPPROTO_ICMP:
		if (t->family == 4 && p + 8 > end)
			return STAT_TRUNC_L4;
		break;
	case IPPROTO_ICMPV6_:
		if (t->family == 6 && p + 8 > end)
			return STAT_TRUNC_L4;
		break;
	}
	return 0;
}

// exact_id returns the bitmap id for value of field, or of the field's
// wildcard entry when value has none; 0 when neither exists.
static __always_inline __u32 exact_id(__u32 gen, __u32 field, __u32 value)
{
	struct exact_key k = {.gen = gen, .field = field, .value = value};
	__u32 *id = bpf_map_lookup_elem(&steer_exact, &k);

	if (!id && value != WILDCARD) {
		k.value = WILDCARD;
		id = bpf_map_lookup_elem(&steer_exact, &k);
	}
	return id ? *id : 0;
}

static __always_inline __u32 prefix_id(__u32 gen, __u32 dir, struct tuple *t, __u32 hosts)
{
	__u32 *id = 0;

	if ((t->family == 4 || t->family == 6) && (hosts & (1 << (dir * 2 + (t->family == 6))))) {
		struct host_key hk = {.gen = gen, .dir = dir, .family = t->family};
		if (t->family == 4)
			__builtin_memcpy(hk.addr, dir ? t->dst : t->src, 4);
		else
			__builtin_memcpy(hk.addr, dir ? t->dst : t->src, 16);
		id = bpf_map_lookup_elem(&steer_hosts, &hk);
		if (id)
			return *id;
	}
	if (t->family == 4) {
		struct lpm4_key k = {.prefixlen = 16 + 32, .gen = gen, .dir = dir};
		__builtin_memcpy(k.addr, dir ? t->dst : t->src, 4);
		id = bpf_map_lookup_elem(&steer_lpm4, &k);
	} else if (t->family == 6) {
		struct lpm6_key k = {.prefixlen = 16 + 128, .gen = gen, .dir = dir};
		__builtin_memcpy(k.addr, dir ? t->dst : t->src, 16);
		id = bpf_map_lookup_elem(&steer_lpm6, &k);
	} else {
		return exact_id(gen, dir ? F_DST : F_SRC, WILDCARD);
	}
	return id ? *id : 0;
}

static __always_inline __u32 port_id(__u32 gen, __u32 dir, struct tuple *t)
{
	if (!t->has_ports)
		return exact_id(gen, dir ? F_DPORT : F_SPORT, WILDCARD);
	__u32 key = gen * 2 + dir;
	struct port_table *tab = bpf_map_lookup_elem(&steer_ports, &key);
	if (!tab)
		return 0;
	__u32 iv = tab->interval[(dir ? t->dport : t->sport) & 0xffff];
	return exact_id(gen, dir ? F_DPORT : F_SPORT, iv);
}

// ctz64 counts trailing zeros of x != 0 without branches (BPF has no such
// instruction, and branches would make the verifier walk every outcome).
static __always_inline __u64 ctz64(__u64 x)
{
	x = (x & -x) - 1;
	x = x - ((x >> 1) & 0x5555555555555555ULL);
	x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (x * 0x0101010101010101ULL) >> 56;
}

static __always_inline void count(void *map, __u32 idx, __u64 bytes)
{
	struct counter *c = bpf_map_lookup_elem(map, &idx);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

static __always_inline int verdict(struct xdp_md *ctx, __u32 action)
{
	switch (action) {
	case ACT_DROP:
		return XDP_DROP;
	case ACT_REDIRECT:
		return bpf_redirect_map(&steer_xsks, ctx->rx_queue_index, XDP_PASS);
	}
	return XDP_PASS;
}

#define FIELD_ID(bit, var, expr)       \
	if (used & (1 << (bit))) {     \
		var = (expr);          \
		if (!var)              \
			return -1;     \
	}

// Only fields in use cost a bitmap lookup; the others alias all (one map,
// one pointer type, so the verifier's states still merge).
#define BITMAP(bit, var, id)                                        \
	struct bitmap *var = all;                                   \
	if (used & (1 << (bit))) {                                  \
		var = bpf_map_lookup_elem(&steer_bitmaps, &id);     \
		if (!var)                                           \
			return -1;                                  \
	}

#define AND_ALL(member) \
	(all->member & b0->member & b1->member & b2->member & b3->member & b4->member & b5->member & b6->member & b7->member)

// match returns the index (priority order) of the first rule of generation
// gen matching t, or -1. A global function, verified once.
__attribute__((noinline)) int match(struct tuple *t, __u32 gen, __u32 used, __u32 all_id, __u32 hosts)
{
	if (!t)
		return -1;
	__u32 i0 = all_id, i1 = all_id, i2 = all_id, i3 = all_id, i4 = all_id, i5 = all_id, i6 = all_id, i7 = all_id;
	FIELD_ID(F_IFINDEX, i0, exact_id(gen, F_IFINDEX, t->ifindex));
	FIELD_ID(F_VLAN, i1, exact_id(gen, F_VLAN, t->vlan));
	FIELD_ID(F_ETHERTYPE, i2, exact_id(gen, F_ETHERTYPE, t->ethertype));
	FIELD_ID(F_PROTO, i3, exact_id(gen, F_PROTO, t->proto));
	FIELD_ID(F_SRC, i4, prefix_id(gen, 0, t, hosts));
	FIELD_ID(F_DST, i5, prefix_id(gen, 1, t, hosts));
	FIELD_ID(F_SPORT, i6, port_id(gen, 0, t));
	FIELD_ID(F_DPORT, i7, port_id(gen, 1, t));
	struct bitmap *all = bpf_map_lookup_elem(&steer_bitmaps, &all_id);
	if (!all)
		return -1;
	BITMAP(F_IFINDEX, b0, i0);
	BITMAP(F_VLAN, b1, i1);
	BITMAP(F_ETHERTYPE, b2, i2);
	BITMAP(F_PROTO, b3, i3);
	BITMAP(F_SRC, b4, i4);
	BITMAP(F_DST, b5, i5);
	BITMAP(F_SPORT, b6, i6);
	BITMAP(F_DPORT, b7, i7);

	for (__u32 k = 0; k < SUM_WORDS; k++) {
		__u64 s = AND_ALL(summary[k & (SUM_WORDS - 1)]);
		for (__u32 i = 0; i < 64 && s; i++) {
			__u32 j = (k * 64 + ctz64(s)) & (BM_WORDS - 1);
			s &= s - 1;
			__u64 w = AND_ALL(words[j]);
			if (w)
				return j * 64 + ctz64(w);
		}
	}
	return -1;
}

SEC("xdp.frags")
int xdp_steer(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u32 *activep = bpf_map_lookup_elem(&steer_active, &zero);
	if (!activep)
		return XDP_PASS;
	__u32 gen = *activep & 1;
	struct gen_info *gi = bpf_map_lookup_elem(&steer_gens, &gen);
	if (!gi)
		return XDP_PASS;
	__u64 bytes = bpf_xdp_get_buff_len(ctx);

	struct tuple t = {};
	int reason = parse(ctx, &t);
	if (reason) {
		count(&steer_stats, reason & 0xff, bytes);
		return verdict(ctx, gi->malformed_action);
	}
	if (gi->nrules) {
		int idx = match(&t, gen, gi->used, gi->all_id, gi->hosts);
		if (idx >= 0) {
			__u32 key = gen * MAX_RULES + (idx & (MAX_RULES - 1));
			struct rule *r = bpf_map_lookup_elem(&steer_rules, &key);
			if (r) {
				count(&steer_counters, r->slot, bytes);
				return verdict(ctx, r->action);
			}
		}
	}
	count(&steer_stats, STAT_NOMATCH, bytes);
	return verdict(ctx, gi->default_action);
}

char _license[] SEC("license") = "Dual BSD/GPL";
