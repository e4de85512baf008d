// parse: the steering program's frame parser, shared with the benchmark's
// floor program (testdata/floor.c), which measures what parsing costs.

#ifndef XDPIPE_PARSE_H
#define XDPIPE_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>

#define MAX_VLANS 2
#define MAX_EXT_HDRS 6
#define WILDCARD 0xffffffff

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

// The parsed frame.
struct tuple {
	__u32 ifindex;
	__u32 vlan; // outer VLAN id, or WILDCARD when untagged
	__u32 ethertype;
	__u32 proto; // IP protocol, or WILDCARD for non-IP
	__u32 family; // 0 non-IP, 4, 6
	__u32 has_ports;
	__u32 sport, dport;
	__u32 src[4], dst[4]; // network order; IPv4 in [0]
	__u32 l4; // offset of the UDP or TCP header, with has_ports
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
		// Word loads: the verifier (like the kernel, NET_IP_ALIGN)
		// takes the IP header as 4-byte aligned.
		t->src[0] = *(__u32 *)(ip + 12);
		t->dst[0] = *(__u32 *)(ip + 16);
		nonfirst = (bpf_ntohs(*(__u16 *)(ip + 6)) & 0x1fff) != 0;
		p += hl;
	} else if (proto == ETH_P_IPV6) {
		__u8 *ip6 = p;
		if (p + 40 > end)
			return STAT_TRUNC_IPV6;
		if ((ip6[0] >> 4) != 6)
			return STAT_BAD_VERSION;
		t->family = 6;
#pragma unroll
		for (i = 0; i < 4; i++) {
			t->src[i] = ((__u32 *)(ip6 + 8))[i];
			t->dst[i] = ((__u32 *)(ip6 + 24))[i];
		}
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
		t->l4 = p - data;
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

#endif
