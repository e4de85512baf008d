//go:build ignore

// steer: the rule-driven XDP steering program.
//
// Each frame is parsed into a tuple (ingress ifindex, outer VLAN id, inner
// EtherType, IP protocol, source and destination address, ports). Frames that
// cannot be parsed take the generation's malformed action and are counted by
// reason in steer_stats. Others are matched against the active rule set; the
// first rule in priority order wins; with no match the default action applies.
//
// Lookup: bitmap intersection (Lakshman and Stiliadis' bit-vector scheme).
// Rules are numbered 0..n-1 in priority order. For each match field a
// lookup of the frame's value gives the id of the bitmap of the rules that
// accept that value (rules leaving the field unset included):
//   - ingress ifindex: a hash lookup; a miss means the field's wildcard;
//   - VLAN id, EtherType, IP protocol, source and destination port: one
//     entry of a 65536-entry table per field (an array lookup the JIT
//     inlines); a port's entry is the bitmap of its elementary interval (the
//     ranges' endpoints cut the port space into at most 2n+1 of them);
//   - source and destination prefix: for each of the (up to HASH_PLENS)
//     longest prefix lengths in use, longest first, a hash lookup of the
//     address masked to that length; if none hits, a longest-prefix-match
//     lookup in an LPM trie (IPv4 or IPv6) holding the shorter ones. The
//     bitmap of the longest stored prefix holds the rules whose prefix
//     contains it, which is exactly the rules containing the address, as
//     matching prefixes nest.
// A frame without the field (untagged, non-IP, no ports) takes the field's
// wildcard bitmap: the rules leaving it unset. Fields no rule of the
// generation uses are not looked up at all. The bitmaps (in one hash,
// deduplicated, so that the verifier sees one pointer type) are ANDed; the
// lowest set bit is the winning rule. Each bitmap carries a summary (bit j
// set when word j is non-zero), so the AND visits only words that can hold a
// match, lowest first, and stops at the first non-zero one.
//
// Cost per frame: per field in use, one id lookup and one bitmap hash lookup
// (none for a field whose bitmap is one already fetched); SUM_WORDS summary
// ANDs; usually one word AND. It does not grow with the number of rules; only
// the LPM trie's depth does (logarithmically, with the number of distinct
// prefixes that are not full-length). Memory: one bitmap (MAX_RULES/8 bytes
// plus summary) per distinct field value, interval and prefix, per generation,
// plus 2 x 5 tables of 256 KiB.
//
// Flow cache, two levels as in OVS: a direct-mapped first level
// (steer_emc, see there) holds the flows seen last on each CPU; behind it
// the decision for a tuple is kept in
// steer_cache4 (IPv4, non-IP) or steer_cache6 (IPv6), per-CPU LRU hashes keyed by the tuple with the fields no rule
// of the generation uses zeroed (so flows differing only there share an
// entry), holding the counter slot and action of the winning rule, or
// "no match", and the steer_active value it was decided under. A frame
// whose entry carries the live steer_active value costs one hash lookup
// instead of the tries; any other entry is a miss, decided as above and
// rewritten. steer_active counts rule changes (its bit 0 is the
// generation), so a change makes every entry stale at once and takes
// effect on the next frame. It wraps after 2^32 changes: Apply empties both
// levels before the store that wraps it. A hit costs what the program
// costs less the tries: parse, the key's hash and one array lookup (or,
// on a first-level miss, one hash lookup of a 24-byte key, 48 for IPv6),
// the rule's counter; flat in the number of rules. More flows than
// a cache's entries evict each other (LRU), and each frame then costs a miss.
//
// Live updates: every key carries a generation (0 or 1). The loader writes
// the inactive generation completely, then increments steer_active (the
// number of changes so far, the generation in bit 0), a single aligned u32
// the program reads once per frame; a frame therefore sees one whole rule
// set. Before it next rewrites a generation the loader waits for an RCU
// grace period (membarrier(MEMBARRIER_CMD_GLOBAL) runs
// synchronize_rcu), so no frame still in flight can read a half-rewritten
// generation.
//
// Verification: the verifier walks every path with its own state and prunes
// a path only when an equivalent state was seen, within a budget of one
// million instructions. So that the cost adds up rather than multiplies,
// parse, field_ids and match are global functions (each checked once,
// whatever its caller's state), the scan for the first common bit is
// a bpf_loop callback (checked until its states converge, not once per
// step), and the bitmaps match keeps are packed so that its states depend
// on how many fields are in use, not on which. TestSteerVerifierBudget holds
// the count well under the limit; internal/vmtest runs it on the VM's newer
// kernel too.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xdpipe.h"
#include "xsk.h"
#include "parse.h"

#define MAX_RULES 16384
#define BM_WORDS (MAX_RULES / 64)
#define SUM_WORDS (BM_WORDS / 64)
#define HASH_PLENS 4

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

// Value -> bitmap id for the fields with small domains, indexed by the
// value: one array lookup (inlined by the JIT) instead of a hash lookup.
enum table {
	T_VLAN,
	T_ETHERTYPE,
	T_PROTO,
	T_SPORT,
	T_DPORT,
	T_COUNT,
};

struct id_table {
	__u32 id[65536];
};

struct gen_info {
	__u32 used; // bit per enum field some rule matches on
	__u32 nrules;
	__u32 default_action;
	__u32 malformed_action;
	__u32 wild[F_COUNT]; // per field: bitmap id of the rules leaving it unset
	// [dir][IPv6]: the prefix lengths kept in steer_prefixes, longest
	// first, 0 ending the list; other lengths are in the LPM tries.
	__u8 plens[2][2][HASH_PLENS];
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

// Prefixes of the (up to HASH_PLENS) longest lengths a generation uses, per
// direction and family: a hash lookup of the masked address per length,
// longest first, instead of a walk down the LPM trie, whose depth grows with
// the number of prefixes. Each entry's bitmap already includes the rules of
// every shorter prefix containing it, so the first hit is the answer.
struct prefix_key {
	__u8 gen;
	__u8 dir;
	__u8 family; // 4 or 6
	__u8 plen;
	__u8 addr[16]; // masked to plen bits
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 2 * 2 * MAX_RULES);
	__type(key, struct prefix_key);
	__type(value, __u32);
} steer_prefixes SEC(".maps");

// Key gen*T_COUNT + enum table. Ports map straight to the bitmap of their
// elementary interval.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * T_COUNT);
	__type(key, __u32);
	__type(value, struct id_table);
} steer_tables SEC(".maps");

// Per-rule counters by slot, COUNTER_SLOTS for each CPU one after the
// other (CPU-major: cpu * COUNTER_SLOTS + slot); the loader multiplies
// max_entries by the possible CPUs. Twice MAX_RULES slots: while a new set
// is written the running one keeps its slots, and a full set may replace
// a full set. A plain array rather than a per-CPU one: its lookup is an
// inlined index, where a per-CPU array's goes through a table of pointers
// to the values, a second cache line to miss. A frame that comes alone (a
// request in a ping-pong) finds both cold: on the veth bench the per-CPU
// counter was half of a hit's time. Mappable: the loader reads each CPU's
// counters straight from the array.
#define COUNTER_SLOTS (2 * MAX_RULES)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, struct counter);
} steer_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_COUNT);
	__type(key, __u32);
	__type(value, struct counter);
} steer_stats SEC(".maps");

// The flow cache's key: a tuple with the fields no rule uses zeroed. An
// IPv6 frame's addresses take addr[0..3] (source) and addr[4..7]; any
// other frame's, addr[0] and addr[1], and its key is the first 24 bytes
// (cache_key4): hashing a key of 24 bytes instead of 48 saved an IPv4 hit
// about 15 of its 67 ns.
struct cache_fields {
	__u32 ifindex;
	__u16 vlan; // 0xffff when untagged
	__u16 ethertype;
	__u8 proto; // 0xff for non-IP (family 0)
	__u8 family;
	__u8 has_ports;
	__u8 pad;
	__u16 sport, dport;
};

struct cache_key {
	struct cache_fields f;
	__u32 addr[8];
};

struct cache_key4 {
	struct cache_fields f;
	__u32 addr[2];
};

#define CACHE_VALID 1
#define CACHE_MATCHED 2

// A decision: what a hit does without the tries. Read whole as one u64
// (cache_word). The LRU may give an element to another key under a reader
// on another CPU; it then zeroes this CPU's value first (not valid).
struct cache_val {
	__u32 active; // the steer_active value it was decided under
	__u16 slot; // the rule's counter slot (steer_counters), when matched
	__u8 action;
	__u8 flags; // CACHE_VALID, CACHE_MATCHED; 0: never written on this CPU
};

_Static_assert(2 * MAX_RULES <= 65536, "a counter slot fits cache_val.slot");

union cache_word {
	struct cache_val v;
	__u64 raw;
};

// Each CPU keeps its own decisions (a new entry's values on the other CPUs
// are zero: not valid). IPv4 and non-IP flows: twice the 65,536 flows of
// the benchmark, as an LRU hash evicts before it is quite full and a
// working set of its size thrashes; IPv6 flows, whose keys are twice the
// size: 65,536. Memory, preallocated: per entry 80 (IPv4) or 104 (IPv6)
// bytes of element and key, a 16-byte bucket and 8 bytes per possible CPU.
#define CACHE4_ENTRIES 131072
#define CACHE6_ENTRIES 65536

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, CACHE4_ENTRIES);
	__type(key, struct cache_key4);
	__type(value, struct cache_val);
} steer_cache4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, CACHE6_ENTRIES);
	__type(key, struct cache_key);
	__type(value, struct cache_val);
} steer_cache6 SEC(".maps");

// The flow cache's first level (OVS's EMC, its exact-match cache, in front
// of the LRU as OVS's is in front of its megaflow cache): a direct-mapped
// table per CPU, indexed by a multiplicative hash of the whole tuple (the
// LRU's key has the fields no rule uses zeroed, pack_key and mask_key). A hit costs
// the hash (independent multiplies), one inlined array lookup and a
// compare of the key's six words: on the veth bench the LRU's lookup (its
// jhash, bucket walk and key compare) was 9% of the receiving CPU's time.
// A miss, a stale entry or a colliding flow goes on to the LRU, whose
// decision replaces the entry. Each CPU writes only its own entries, with
// XDP's softirq context keeping the program on it, so an entry is never
// read half-written. The tables are one plain array, EMC_ENTRIES for each
// CPU one after the other (the loader multiplies max_entries by the
// possible CPUs), of 64-byte entries: mappable, so the values start on a
// page and each entry is one cache line. 256 KiB per possible CPU.
#define EMC_ENTRIES 4096

struct emc_entry {
	union cache_word w; // flags 0: never written
	__u64 key[6]; // the cache_key it holds
	__u64 pad; // to a cache line
};

_Static_assert(sizeof(struct emc_entry) == 64, "an EMC entry is one cache line");

_Static_assert(sizeof(struct cache_key) == sizeof(((struct emc_entry *)0)->key), "an EMC entry holds a whole key");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, EMC_ENTRIES);
	__type(key, __u32);
	__type(value, struct emc_entry);
} steer_emc SEC(".maps");

// Frames (and bytes) the flow cache missed, decided by the tries. Hits are
// not counted (a counter costs a hit about 7% of its time): they are
// the frames the rules and STAT_NOMATCH counted, less these.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counter);
} steer_cache_misses SEC(".maps");

static __always_inline __u32 table_id(__u32 gen, __u32 table, __u32 value)
{
	__u32 key = gen * T_COUNT + table;
	struct id_table *tab = bpf_map_lookup_elem(&steer_tables, &key);

	return tab ? tab->id[value & 0xffff] : 0;
}

static __always_inline __u32 ifindex_id(__u32 gen, __u32 ifindex, __u32 wild)
{
	struct exact_key k = {.gen = gen, .field = F_IFINDEX, .value = ifindex};
	__u32 *id = bpf_map_lookup_elem(&steer_exact, &k);

	return id ? *id : wild;
}

// prefix_id is the bitmap id of the longest stored prefix containing the
// source (dir 0) or destination (dir 1) address, 0 when none does.
static __always_inline __u32 prefix_id(struct tuple *t, struct gen_info *gi, __u32 gen, __u32 dir)
{
	__u32 *id = 0;
	__u32 *addr = dir ? t->dst : t->src;

	if (t->family != 4 && t->family != 6)
		return gi->wild[dir ? F_DST : F_SRC];
	__u32 v6 = t->family == 6;
	for (int k = 0; k < HASH_PLENS; k++) {
		__u32 l = gi->plens[dir & 1][v6][k];
		if (!l)
			break;
		struct prefix_key pk = {.gen = gen, .dir = dir, .family = t->family, .plen = l};
		__u32 a[4];
		__builtin_memcpy(a, addr, 16); // IPv4: the first 4 bytes, zeros after
#pragma unroll
		for (int w = 0; w < 4; w++) {
			int bits = (int)l - 32 * w;
			if (bits <= 0)
				a[w] = 0;
			else if (bits < 32)
				a[w] &= bpf_htonl(~((1U << (32 - bits)) - 1));
		}
		__builtin_memcpy(pk.addr, a, 16);
		id = bpf_map_lookup_elem(&steer_prefixes, &pk);
		if (id)
			return *id;
	}
	if (!v6) {
		struct lpm4_key k = {.prefixlen = 16 + 32, .gen = gen, .dir = dir};
		__builtin_memcpy(k.addr, addr, 4);
		id = bpf_map_lookup_elem(&steer_lpm4, &k);
	} else {
		struct lpm6_key k = {.prefixlen = 16 + 128, .gen = gen, .dir = dir};
		__builtin_memcpy(k.addr, addr, 16);
		id = bpf_map_lookup_elem(&steer_lpm6, &k);
	}
	return id ? *id : 0;
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
		return redirect_xsk(&steer_xsks, ctx);
	}
	return XDP_PASS;
}

// The bitmap id of each match field (0 for fields not in use).
struct field_ids {
	__u32 id[F_COUNT];
};

#define FIELD_ID(f, expr)                \
	if (used & (1 << (f))) {         \
		__u32 v = (expr);        \
		if (!v)                  \
			return -1;       \
		ids->id[f] = v;          \
	}

// field_ids fills ids with the bitmap id of each field in use for t and
// returns 0, or -1 when a lookup fails. A global function, verified once:
// the ids go to memory, so the paths through the fields in use and not in
// use do not multiply the verifier's states.
__attribute__((noinline)) int field_ids(struct tuple *t, struct gen_info *gi, __u32 gen, struct field_ids *ids)
{
	if (!t || !gi || !ids)
		return -1;
	__u32 used = gi->used;
	FIELD_ID(F_IFINDEX, ifindex_id(gen, t->ifindex, gi->wild[F_IFINDEX]));
	FIELD_ID(F_VLAN, t->vlan == WILDCARD ? gi->wild[F_VLAN] : table_id(gen, T_VLAN, t->vlan));
	FIELD_ID(F_ETHERTYPE, table_id(gen, T_ETHERTYPE, t->ethertype));
	FIELD_ID(F_PROTO, t->family ? table_id(gen, T_PROTO, t->proto) : gi->wild[F_PROTO]);
	FIELD_ID(F_SRC, prefix_id(t, gi, gen, 0));
	FIELD_ID(F_DST, prefix_id(t, gi, gen, 1));
	FIELD_ID(F_SPORT, t->has_ports ? table_id(gen, T_SPORT, t->sport) : gi->wild[F_SPORT]);
	FIELD_ID(F_DPORT, t->has_ports ? table_id(gen, T_DPORT, t->dport) : gi->wild[F_DPORT]);
	return 0;
}

// The state of the scan for the first common bit, on match's stack: the
// distinct bitmaps of the fields in use, b[0] the base, the slots after
// them repeating the base.
struct scan {
	struct bitmap *b[F_COUNT];
	__u64 s; // summary bits of word group k - 1 not visited yet
	__u32 k; // next summary word
	int rule;
};

#define AND_ALL(c, member)                                                                            \
	(c->b[0]->member & c->b[1]->member & c->b[2]->member & c->b[3]->member & c->b[4]->member & \
	 c->b[5]->member & c->b[6]->member & c->b[7]->member)

// scan_step is one step of the scan, a bpf_loop callback: it takes the
// next summary word when the current one is exhausted, else ANDs the
// words of the lowest remaining summary bit. It returns 1 (stop) when it
// found the rule or ran out of summary words. The verifier checks a
// callback's body until its states converge, not once per step.
static __always_inline long scan_step(__u32 n, void *ctx)
{
	struct scan *c = ctx;

	if (!c->s) {
		if (c->k >= SUM_WORDS)
			return 1;
		c->s = AND_ALL(c, summary[c->k & (SUM_WORDS - 1)]);
		c->k++;
		return 0;
	}
	__u32 j = ((c->k - 1) * 64 + ctz64(c->s)) & (BM_WORDS - 1);
	c->s &= c->s - 1;
	__u64 w = AND_ALL(c, words[j]);
	if (!w)
		return 0;
	c->rule = j * 64 + ctz64(w);
	return 1;
}

// match returns the index (priority order) of the first rule of generation
// gen matching t, or -1. gi is a copy of the generation's info. A global
// function, verified once.
__attribute__((noinline)) int match(struct tuple *t, struct gen_info *gi, __u32 gen)
{
	struct field_ids ids = {};

	if (!t || !gi)
		return -1;
	__u32 used = gi->used;
	if (!used)
		return 0; // no rule constrains anything: the first matches all
	if (field_ids(t, gi, gen, &ids))
		return -1;

	// The base is the bitmap of the first field in use. Only fields in
	// use whose bitmap is not the base's (ids are deduplicated) cost a
	// lookup. Their bitmaps are packed after the base, the other slots
	// repeat it, so that the verifier's state here depends only on how
	// many there are, not on which fields: Linux 7.3's verifier keeps a
	// map value pointer's id after the NULL check, so a slot that aliases
	// the base is another state than one holding a lookup of its own, and
	// one state per subset of the 8 fields, each carried through the
	// scan, exceeded its limit.
	__u32 base_id = used & (1 << F_IFINDEX) ? ids.id[F_IFINDEX] : used & (1 << F_VLAN) ? ids.id[F_VLAN]
		      : used & (1 << F_ETHERTYPE) ? ids.id[F_ETHERTYPE] : used & (1 << F_PROTO) ? ids.id[F_PROTO]
		      : used & (1 << F_SRC)	  ? ids.id[F_SRC] : used & (1 << F_DST) ? ids.id[F_DST]
		      : used & (1 << F_SPORT)	  ? ids.id[F_SPORT] : ids.id[F_DPORT];
	struct scan c = {.rule = -1};
	struct bitmap *base = bpf_map_lookup_elem(&steer_bitmaps, &base_id);
	if (!base)
		return -1;
#pragma unroll
	for (int f = 0; f < F_COUNT; f++)
		c.b[f] = base;
	__u32 n = 1;
#pragma unroll
	for (int f = 0; f < F_COUNT; f++) {
		if (!(used & (1 << f)) || ids.id[f] == base_id)
			continue;
		struct bitmap *b = bpf_map_lookup_elem(&steer_bitmaps, &ids.id[f]);
		if (!b)
			return -1;
		c.b[n & (F_COUNT - 1)] = b;
		n++;
	}
	// Each step takes a summary word or visits one of its bits. The
	// first two, which usually decide, run inline; bpf_loop runs the rest.
	if (scan_step(0, &c) || scan_step(1, &c))
		return c.rule;
	bpf_loop(SUM_WORDS + BM_WORDS - 2, scan_step, &c, 0);
	return c.rule;
}

// flow_cache: 1 puts the flow cache in front of the rule tables; the
// benchmarks that measure the tables alone load the program with 0.
// Read-only data is frozen at load, so the verifier drops the branches not
// taken: neither setting costs the other anything.
volatile const __u32 flow_cache = 1;

// keep is all ones when field f is in used, else 0.
static __always_inline __u32 keep(__u32 used, enum field f)
{
	return -((used >> f) & 1);
}

// pack_key fills k from t, the whole tuple: the first level's key. It
// writes the key as six whole words, built in registers: written field by
// field, each word read back whole (the hash, the compare) would wait for
// its bytes to leave the store buffer, a store-forwarding stall per word
// (on the veth bench they took more of the hit path's time than the hash).
static __always_inline void pack_key(struct cache_key *k, struct tuple *t)
{
	__u64 *w = (__u64 *)k;

	w[0] = (__u64)t->ifindex | (__u64)(__u16)t->vlan << 32 | (__u64)(__u16)t->ethertype << 48;
	w[1] = (__u64)(__u8)t->proto | (__u64)(__u8)t->family << 8 | (__u64)(__u8)t->has_ports << 16 |
	       (__u64)(__u16)t->sport << 32 | (__u64)(__u16)t->dport << 48;
	if (t->family != 6) {
		w[2] = t->src[0] | (__u64)t->dst[0] << 32;
		w[3] = w[4] = w[5] = 0;
		return;
	}
	w[2] = t->src[0] | (__u64)t->src[1] << 32;
	w[3] = t->src[2] | (__u64)t->src[3] << 32;
	w[4] = t->dst[0] | (__u64)t->dst[1] << 32;
	w[5] = t->dst[2] | (__u64)t->dst[3] << 32;
}

// mask_key zeroes in k, packed from a tuple of family, the fields not in
// used: the LRU's key. The decision depends on those in used, on the
// family and on whether there are ports, nothing else.
static __always_inline void mask_key(struct cache_key *k, __u32 family, __u32 used)
{
	__u64 *w = (__u64 *)k;
	__u64 src = -(__u64)((used >> F_SRC) & 1), dst = -(__u64)((used >> F_DST) & 1); // all 64 bits

	w[0] &= (__u64)keep(used, F_IFINDEX) | (__u64)(__u16)keep(used, F_VLAN) << 32 |
		(__u64)(__u16)keep(used, F_ETHERTYPE) << 48;
	w[1] &= (__u64)(__u8)keep(used, F_PROTO) | 0xffff00ULL | (__u64)(__u16)keep(used, F_SPORT) << 32 |
		(__u64)(__u16)keep(used, F_DPORT) << 48;
	w[2] &= family == 6 ? src : (src & 0xffffffff) | dst << 32;
	w[3] &= src;
	w[4] &= dst;
	w[5] &= dst;
}

// pack_key's and mask_key's words follow struct cache_key's layout on a
// little-endian target (bpf2go builds bpfel only).
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "pack_key assumes little-endian words");
_Static_assert(__builtin_offsetof(struct cache_key, f.vlan) == 4 && __builtin_offsetof(struct cache_key, f.ethertype) == 6 &&
		       __builtin_offsetof(struct cache_key, f.proto) == 8 && __builtin_offsetof(struct cache_key, f.family) == 9 &&
		       __builtin_offsetof(struct cache_key, f.has_ports) == 10 && __builtin_offsetof(struct cache_key, f.sport) == 12 &&
		       __builtin_offsetof(struct cache_key, f.dport) == 14 && __builtin_offsetof(struct cache_key, addr) == 16,
	       "pack_key's word layout");

// emc_index is key k's EMC slot: the key's words, each times its own odd
// constant, summed (independent multiplies), then Fibonacci hashing's
// multiply, the top bits of which depend on every bit of the sum. An IPv4
// key's last three words are zero.
static __always_inline __u32 emc_index(const __u64 *k)
{
	__u64 h = k[0] * 0x9e3779b97f4a7c15ULL + k[1] * 0xc2b2ae3d27d4eb4fULL + k[2] * 0x165667b19e3779f9ULL +
		  k[3] * 0x85ebca77c2b2ae63ULL + k[4] * 0x27d4eb2f165667c5ULL + k[5] * 0xff51afd7ed558ccdULL;

	return (h * 0x9e3779b97f4a7c15ULL) >> (64 - 12);
}

_Static_assert(EMC_ENTRIES == 1 << 12, "emc_index yields 12 bits");

// emc_holds reports whether e holds key k (all six words, branch-free).
static __always_inline int emc_holds(const struct emc_entry *e, const __u64 *k)
{
	return !((e->key[0] ^ k[0]) | (e->key[1] ^ k[1]) | (e->key[2] ^ k[2]) | (e->key[3] ^ k[3]) |
		 (e->key[4] ^ k[4]) | (e->key[5] ^ k[5]));
}

// decide runs the tries for t and returns the decision under active.
static __always_inline struct cache_val decide(struct tuple *t, struct gen_info *gi, __u32 active)
{
	__u32 gen = active & 1;
	struct cache_val v = {.active = active, .action = gi->default_action, .flags = CACHE_VALID};
	int idx = match(t, gi, gen);

	if (idx >= 0) {
		__u32 key = gen * MAX_RULES + (idx & (MAX_RULES - 1));
		struct rule *r = bpf_map_lookup_elem(&steer_rules, &key);
		if (r) {
			v.slot = r->slot;
			v.action = r->action;
			v.flags |= CACHE_MATCHED;
		}
	}
	return v;
}

// lookup is the flow cache's miss path: the decision for t (whose whole
// key is k) from the LRU or, failing that, the tries, written back to both
// levels (e is t's first-level entry, NULL without the flow cache). A
// global function, verified once: xdp_steer's hit path is what remains,
// and reads nothing of the generation but steer_active. A generation
// without rules is decided without the cache, "no match".
__attribute__((noinline)) __u64 lookup(struct tuple *t, struct cache_key *k, struct emc_entry *e, __u32 active, __u64 bytes)
{
	__u32 gen = active & 1;
	struct gen_info *gi = bpf_map_lookup_elem(&steer_gens, &gen);
	union cache_word w = {};

	if (!t || !k || !gi)
		return w.raw; // not valid: the default verdict (pass)
	if (!gi->nrules) {
		w.v.action = gi->default_action;
		return w.raw;
	}
	if (e) {
		// The entry is this flow's from here on, not yet decided.
		__builtin_memcpy(e->key, k, sizeof(e->key));
		e->w.raw = 0;
	}
	mask_key(k, t->family, gi->used);
	void *cache = t->family == 6 ? (void *)&steer_cache6 : (void *)&steer_cache4;
	__u64 *hit = 0;
	if (flow_cache)
		hit = bpf_map_lookup_elem(cache, k);
	if (hit)
		w.raw = *(volatile __u64 *)hit;
	if (!(w.v.flags & CACHE_VALID) || w.v.active != active) {
		w.v = decide(t, gi, active);
		if (!flow_cache)
			return w.raw;
		// An update, not a store through hit: the LRU may have given
		// that element to another key since the lookup. BPF_EXIST
		// rewrites the entry in place; without it the LRU would take a
		// free element first, evicting one when full (each stale entry
		// refreshed after a rule change would evict another flow's).
		if (!hit || bpf_map_update_elem(cache, k, &w, BPF_EXIST))
			bpf_map_update_elem(cache, k, &w, BPF_ANY);
		count(&steer_cache_misses, 0, bytes);
	}
	if (e)
		e->w.raw = w.raw;
	return w.raw;
}

SEC("xdp.frags")
int xdp_steer(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u32 *activep = bpf_map_lookup_elem(&steer_active, &zero);
	if (!activep)
		return XDP_PASS;
	__u32 active = *(volatile __u32 *)activep;
	__u64 bytes = bpf_xdp_get_buff_len(ctx);

	struct tuple t = {};
	int reason = parse(ctx, &t);
	if (reason) {
		__u32 gen = active & 1;
		struct gen_info *gi = bpf_map_lookup_elem(&steer_gens, &gen);
		count(&steer_stats, reason & 0xff, bytes);
		return verdict(ctx, gi ? gi->malformed_action : ACT_PASS);
	}

	struct cache_key k; // pack_key writes all of it
	pack_key(&k, &t);
	const __u64 *kw = (const __u64 *)&k;
	union cache_word w = {};
	struct emc_entry *e = 0;
	__u32 cpu = bpf_get_smp_processor_id(); // this CPU's part of the per-CPU tables
	if (flow_cache) {
		__u32 slot = cpu * EMC_ENTRIES + emc_index(kw);
		e = bpf_map_lookup_elem(&steer_emc, &slot);
	}
	if (e && emc_holds(e, kw))
		w.raw = e->w.raw;
	if (!(w.v.flags & CACHE_VALID) || w.v.active != active)
		w.raw = lookup(&t, &k, e, active, bytes);
	if (w.v.flags & CACHE_MATCHED)
		count(&steer_counters, cpu * COUNTER_SLOTS + w.v.slot, bytes);
	else
		count(&steer_stats, STAT_NOMATCH, bytes);
	return verdict(ctx, w.v.action);
}

char _license[] SEC("license") = "Dual BSD/GPL";
