// SPDX-License-Identifier: Apache-2.0
/*
 * xsk-c-peer: the benchmark's C AF_XDP reference on libxdp's <xdp/xsk.h>,
 * doing the same jobs as xdpipe's Go receivers so that a slow cell can be
 * told apart as "our code" or "the kernel's ceiling":
 *
 *   rxdrop  take every frame off the RX ring and give it straight back to
 *           the fill ring (xdpipe rxdrop)
 *   l2fwd   swap the source and destination MAC and send the frame back out
 *           of the socket it came in on (xdpipe run --stages macswap)
 *   reflect send each UDP datagram (over IPv4 or IPv6, in one frame) back
 *           to where it came from, Ethernet and IP addresses and UDP ports
 *           swapped, out of the socket it came in on, each burst as soon
 *           as it is processed (xdpipe run --stages reflect: the echo end
 *           of a latency measurement). A checksum that holds only the
 *           pseudo-header's sum (a veth hands over frames a local socket
 *           sent with checksum offload so) is completed over the datagram,
 *           so that the kernel on the other side accepts the reply; frames
 *           that are not UDP or whose checksum is neither valid nor that
 *           partial sum are refused: counted and given back to the fill
 *           ring. With --sockperf the reply is what sockperf's server
 *           sends: the client flag of sockperf's header cleared; a
 *           message without it is refused, one that asks for no reply
 *           (under-load's other messages) absorbed, both counted and
 *           given back to the fill ring (xdpipe run {reflect: {sockperf:
 *           true}})
 *
 * Fixed setup, as the bench compares it: one socket on one queue, copy mode
 * (XDP_COPY), need_wakeup, bursts of 64, a spinning loop (or, with --poll,
 * rxdrop blocks in poll(2) while the RX ring is empty, as xdpsock -p
 * does: the C reference for xdpipe's wakeup mode), 4096 frames of
 * 4096 bytes (so frames up to 3840 bytes: the kernel keeps 256 bytes of
 * headroom in each; no multi-buffer).
 *
 * The XDP program is libxdp's default (xsk_def_xdp_prog: redirect by RX
 * queue to the socket's XSKMAP entry), loaded by xsk_socket__create, since
 * that is the path a libxdp user takes and what this reference stands for.
 * Without a bpffs (as under `ip netns exec`, which mounts a fresh /sys)
 * libxdp attaches it alone, without its dispatcher, and says so on stderr.
 * libxdp 1.3 detaches it when the last socket is deleted; older versions
 * leave it, so on exit the peer removes whatever program is still there,
 * unless the interface had one before it started (then it is not ours). A
 * crash leaves it attached; the bench deletes the whole namespace anyway.
 *
 * Speaks xdpipe bench's child protocol: "ready" on stdout once set up, then
 * on SIGINT or SIGTERM one JSON line {"frames":N,"bytes":B,"note":"..."}
 * (frames and bytes received; for l2fwd and reflect the note says how many
 * frames the kernel completed on TX, for reflect also how many frames were
 * reflected, refused and absorbed) and exit 0. Errors: one line on stderr,
 * exit 1.
 *
 *   xsk-c-peer rxdrop|l2fwd|reflect --iface IF [--queue Q] [--poll] [--sockperf]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#define NUM_FRAMES 4096
#define FRAME_SIZE XSK_UMEM__DEFAULT_FRAME_SIZE
#define RING_SIZE 2048
#define BURST 64

static volatile sig_atomic_t stop;
/* A failure once the socket is up: the loop stops, the socket and the
 * program are released, and then this is reported. */
static char failed[256];

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("xsk-c-peer: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void fail(const char *fmt, ...)
{
	va_list ap;

	stop = 1;
	if (failed[0])
		return; /* keep the first */
	va_start(ap, fmt);
	vsnprintf(failed, sizeof(failed), fmt, ap);
	va_end(ap);
}

/* libxdp's and libbpf's warnings only (they prefix their own name); their
 * info lines (ELF sections skipped, ...) are noise here. */
static int print_libxdp(enum libxdp_print_level level, const char *fmt, va_list ap)
{
	return level == LIBXDP_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

static int print_libbpf(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

struct peer {
	struct xsk_ring_prod fill;
	struct xsk_ring_cons comp;
	struct xsk_ring_cons rx;
	struct xsk_ring_prod tx;
	struct xsk_umem *umem;
	struct xsk_socket *xsk;
	void *area;
	int fd;
	uint64_t frames, bytes;
	uint64_t transmitted; /* TX frames the kernel completed */
	uint64_t outstanding; /* submitted on TX, not yet completed */
	uint64_t kicks;   /* sendto calls */
	uint64_t partial; /* ... that sent a batch and left frames (EAGAIN) */
	uint64_t busy;    /* ... that sent nothing now (EBUSY, ENOBUFS, ENETDOWN) */
	uint64_t polls;   /* poll(2) calls (rxdrop --poll) */
	uint64_t reflected, refused; /* reflect: sent back, not answered */
	uint64_t absorbed; /* reflect --sockperf: messages that ask for no reply */
	bool sockperf;    /* reflect: answer as sockperf's server does */
	uint64_t unsent;  /* reflect: turned around, but stopped with no room on TX */
};

static void usage(void)
{
	fputs("usage: xsk-c-peer rxdrop|l2fwd|reflect --iface IF [--queue Q] [--poll] [--sockperf]\n", stderr);
	exit(2);
}

/* Kicks the kernel to transmit. In copy mode the kernel sends only inside
 * this call, at most 32 frames a call (the budget in xsk_generic_xmit),
 * and says EAGAIN when it stopped there with frames left. EBUSY, ENOBUFS
 * and ENETDOWN mean "not now"; none of them is a failure. */
static void kick_tx(struct peer *p)
{
	p->kicks++;
	if (sendto(p->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0)
		return;
	switch (errno) {
	case EAGAIN:
		p->partial++;
		return;
	case EBUSY:
	case ENOBUFS:
	case ENETDOWN:
	case EINTR:
		p->busy++;
		return;
	}
	fail("sendto (TX kick): %s", strerror(errno));
}

/* Kicks TX if the kernel asks for it (need_wakeup; always so in copy mode)
 * or frames are still on the TX ring, then moves completed frames back to
 * the fill ring (sized so that it always has room). */
static void complete_tx(struct peer *p)
{
	uint32_t n, idx_cq, idx_fq, i;

	if (!p->outstanding)
		return;
	if (xsk_ring_prod__needs_wakeup(&p->tx) || xsk_prod_nb_free(&p->tx, RING_SIZE) < RING_SIZE)
		kick_tx(p);
	n = xsk_ring_cons__peek(&p->comp, RING_SIZE, &idx_cq);
	if (!n)
		return;
	if (xsk_ring_prod__reserve(&p->fill, n, &idx_fq) != n) {
		fail("fill ring full with %u completions (frame accounting broken)", n);
		return;
	}
	for (i = 0; i < n; i++)
		*xsk_ring_prod__fill_addr(&p->fill, idx_fq + i) = *xsk_ring_cons__comp_addr(&p->comp, idx_cq + i);
	xsk_ring_prod__submit(&p->fill, n);
	xsk_ring_cons__release(&p->comp, n);
	p->outstanding -= n;
	p->transmitted += n;
}

/* When nothing arrived: wake the kernel's RX if the fill ring asks for it
 * (zero-copy drivers do; copy mode does not set the flag). */
static void rx_idle(struct peer *p)
{
	if (xsk_ring_prod__needs_wakeup(&p->fill))
		(void)recvfrom(p->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
}

/* Blocks in poll(2) until the RX ring has frames (or a second passes, or
 * a signal comes); poll also wakes the kernel's RX if the fill ring asks. */
static void rx_wait(struct peer *p)
{
	struct pollfd pfd = { .fd = p->fd, .events = POLLIN };

	p->polls++;
	if (poll(&pfd, 1, 1000) < 0 && errno != EINTR)
		fail("poll: %s", strerror(errno));
}

static void rxdrop(struct peer *p, bool wait)
{
	uint32_t n, idx_rx, idx_fq, i;

	while (!stop) {
		n = xsk_ring_cons__peek(&p->rx, BURST, &idx_rx);
		if (!n) {
			if (wait)
				rx_wait(p);
			else
				rx_idle(p);
			continue;
		}
		if (xsk_ring_prod__reserve(&p->fill, n, &idx_fq) != n) {
			fail("fill ring full with %u frames back (frame accounting broken)", n);
			return;
		}
		for (i = 0; i < n; i++) {
			const struct xdp_desc *d = xsk_ring_cons__rx_desc(&p->rx, idx_rx + i);

			p->bytes += d->len;
			*xsk_ring_prod__fill_addr(&p->fill, idx_fq + i) = xsk_umem__extract_addr(d->addr);
		}
		xsk_ring_prod__submit(&p->fill, n);
		xsk_ring_cons__release(&p->rx, n);
		p->frames += n;
	}
}

static inline void swap_mac(uint8_t *pkt)
{
	uint8_t tmp[6];

	memcpy(tmp, pkt, 6);
	memcpy(pkt, pkt + 6, 6);
	memcpy(pkt + 6, tmp, 6);
}

/* A pass of a loop that sends back: moves completed TX frames to the fill
 * ring, then takes up to a burst off the RX ring (at *idx), or wakes RX if
 * it is empty. Returns how many frames it took. */
static uint32_t tx_rx_burst(struct peer *p, uint32_t *idx)
{
	uint32_t n;

	complete_tx(p);
	n = xsk_ring_cons__peek(&p->rx, BURST, idx);
	if (!n)
		rx_idle(p);
	return n;
}

static void l2fwd(struct peer *p)
{
	uint32_t n, idx_rx, idx_tx, i;

	while (!stop) {
		n = tx_rx_burst(p, &idx_rx);
		if (!n)
			continue;
		while (xsk_ring_prod__reserve(&p->tx, n, &idx_tx) != n) {
			complete_tx(p);
			if (stop) {
				xsk_ring_cons__cancel(&p->rx, n);
				return;
			}
		}
		for (i = 0; i < n; i++) {
			const struct xdp_desc *d = xsk_ring_cons__rx_desc(&p->rx, idx_rx + i);
			struct xdp_desc *t = xsk_ring_prod__tx_desc(&p->tx, idx_tx + i);

			swap_mac(xsk_umem__get_data(p->area, d->addr));
			t->addr = d->addr;
			t->len = d->len;
			p->bytes += d->len;
		}
		xsk_ring_prod__submit(&p->tx, n);
		xsk_ring_cons__release(&p->rx, n);
		p->frames += n;
		p->outstanding += n;
	}
}

/* The one's complement sum of b as big-endian 16-bit words, added to s
 * and not yet folded (RFC 1071); a last odd byte is padded with zero. */
static uint64_t csum_add(uint64_t s, const uint8_t *b, size_t len)
{
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		s += (uint32_t)b[i] << 8 | b[i + 1];
	if (len & 1)
		s += (uint32_t)b[len - 1] << 8;
	return s;
}

/* Reduces a one's complement sum to 16 bits. */
static uint16_t csum_fold(uint64_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

static inline uint16_t get16(const uint8_t *b)
{
	return (uint16_t)(b[0] << 8 | b[1]);
}

static inline void swap_bytes(uint8_t *a, uint8_t *b, size_t n)
{
	uint8_t t;
	size_t i;

	for (i = 0; i < n; i++) {
		t = a[i];
		a[i] = b[i];
		b[i] = t;
	}
}

#define ETH_LEN 14
#define VLAN_LEN 4
#define MAX_VLANS 2
#define IPV4_MIN_LEN 20
#define IPV6_LEN 40
#define MAX_EXT_HEADERS 6
#define UDP_LEN 8
#define PROTO_UDP 17

/* The offset of the UDP header in the frame d of len bytes, read the way
 * xdpipe's parser (internal/frame) reads it: up to two VLAN tags, IPv4
 * with its options, IPv6 with up to six hop-by-hop, routing, fragment and
 * destination options headers. *l3 is the IP header's offset, *family 4
 * or 6. 0 if the frame is not UDP over IP, is cut short, or is a
 * non-first fragment. */
static size_t udp_offset(const uint8_t *d, size_t len, size_t *l3, int *family)
{
	size_t p = ETH_LEN, hl;
	uint16_t et;
	uint8_t nh;
	int i;

	if (len < ETH_LEN)
		return 0;
	et = get16(d + 12);
	for (i = 0; (et == 0x8100 || et == 0x88a8) && i < MAX_VLANS; i++) {
		if (len < p + VLAN_LEN)
			return 0;
		et = get16(d + p + 2);
		p += VLAN_LEN;
	}
	*l3 = p;
	switch (et) {
	case 0x0800:
		if (len < p + IPV4_MIN_LEN || d[p] >> 4 != 4)
			return 0;
		hl = (size_t)(d[p] & 0x0f) * 4;
		if (hl < IPV4_MIN_LEN || len < p + hl || get16(d + p + 6) & 0x1fff)
			return 0;
		*family = 4;
		nh = d[p + 9];
		p += hl;
		break;
	case 0x86dd:
		if (len < p + IPV6_LEN || d[p] >> 4 != 6)
			return 0;
		*family = 6;
		nh = d[p + 6];
		p += IPV6_LEN;
		for (i = 0; i < MAX_EXT_HEADERS && (nh == 0 || nh == 43 || nh == 44 || nh == 60); i++) {
			if (nh == 44) { /* fragment */
				if (len < p + 8 || get16(d + p + 2) & 0xfff8)
					return 0;
				hl = 8;
			} else {
				if (len < p + 2)
					return 0;
				hl = ((size_t)d[p + 1] + 1) * 8;
			}
			if (len < p + hl)
				return 0;
			nh = d[p];
			p += hl;
		}
		break;
	default:
		return 0;
	}
	if (nh != PROTO_UDP || len < p + UDP_LEN)
		return 0;
	return p;
}

/* sockperf's header, at the start of the UDP payload: a flags word at
 * offset 8, big-endian, whose client bit the server clears in its reply
 * and whose pong-request bit says whether the client wants one. */
#define SOCKPERF_HEADER_LEN 14
#define SOCKPERF_FLAGS_OFF 8
#define SOCKPERF_CLIENT 1
#define SOCKPERF_PONG 2

enum verdict { REFUSED, REFLECTED, ABSORBED };

/* Turns one UDP frame around (MACs, IP addresses and ports swapped), as
 * xdpipe's reflect stage does: the checksum stays valid through the swaps,
 * which only reorder the words it sums; a checksum that is only the
 * pseudo-header's sum (CHECKSUM_PARTIAL, as a veth hands over a local
 * socket's datagram) is completed over the datagram. With sockperf, the
 * reply's client flag is cleared and the checksum computed again. Returns
 * REFUSED, the frame untouched, for anything else: not UDP over IP in this
 * frame, or a checksum neither valid nor partial, or with sockperf not a
 * client's message; ABSORBED for a sockperf message that wants no reply. */
static enum verdict reflect_frame(uint8_t *d, size_t len, bool sockperf)
{
	size_t l3, l4, n, alen;
	uint8_t *u, *src, *dst;
	uint64_t pseudo;
	uint16_t check, c, flags;
	int family;
	bool full, sum;

	l4 = udp_offset(d, len, &l3, &family);
	if (!l4)
		return REFUSED;
	u = d + l4;
	n = get16(u + 4);
	if (n < UDP_LEN || n > len - l4)
		return REFUSED;
	alen = family == 4 ? 4 : 16;
	src = d + l3 + (family == 4 ? 12 : 8);
	dst = src + alen;
	/* The pseudo-header: addresses, protocol and UDP length. */
	pseudo = csum_add(csum_add(PROTO_UDP + n, src, alen), dst, alen);
	check = get16(u + 6);
	full = family == 4 && check == 0; /* IPv4 without a checksum */
	if (!full) {
		if (csum_fold(csum_add(pseudo, u, n)) == 0xffff)
			full = true;
		else if (check != csum_fold(pseudo))
			return REFUSED; /* neither complete nor the pseudo-header's sum */
	}
	sum = !full;
	if (sockperf) {
		if (n < UDP_LEN + SOCKPERF_HEADER_LEN)
			return REFUSED;
		flags = get16(u + UDP_LEN + SOCKPERF_FLAGS_OFF);
		if (!(flags & SOCKPERF_CLIENT))
			return REFUSED;
		if (!(flags & SOCKPERF_PONG))
			return ABSORBED;
		u[UDP_LEN + SOCKPERF_FLAGS_OFF + 1] &= (uint8_t)~SOCKPERF_CLIENT;
		sum = !(family == 4 && check == 0); /* IPv4 without a checksum keeps none */
	}
	if (sum) {
		u[6] = u[7] = 0;
		c = (uint16_t)~csum_fold(csum_add(pseudo, u, n));
		if (!c)
			c = 0xffff;
		u[6] = c >> 8;
		u[7] = c & 0xff;
	}
	swap_mac(d);
	swap_bytes(src, dst, alen);
	swap_bytes(u, u + 2, 2);
	return REFLECTED;
}

/* Sends every UDP frame back (reflect_frame) as soon as its burst is
 * processed, and gives the others back to the fill ring. */
static void reflect(struct peer *p)
{
	uint32_t n, k, r, a, idx_rx, idx_tx, idx_fq, i;
	struct xdp_desc out[BURST];
	uint64_t back[BURST];

	while (!stop) {
		n = tx_rx_burst(p, &idx_rx);
		if (!n)
			continue;
		for (i = k = r = a = 0; i < n; i++) {
			const struct xdp_desc *d = xsk_ring_cons__rx_desc(&p->rx, idx_rx + i);

			p->bytes += d->len;
			switch (reflect_frame(xsk_umem__get_data(p->area, d->addr), d->len, p->sockperf)) {
			case REFLECTED:
				out[k++] = *d;
				break;
			case ABSORBED:
				a++;
				/* fall through */
			case REFUSED:
				back[r++] = xsk_umem__extract_addr(d->addr);
			}
		}
		xsk_ring_cons__release(&p->rx, n);
		p->frames += n;
		p->refused += r - a;
		p->absorbed += a;
		while (k && xsk_ring_prod__reserve(&p->tx, k, &idx_tx) != k) {
			complete_tx(p);
			if (stop) { /* no room on TX: back to the fill ring, counted */
				for (i = 0; i < k; i++)
					back[r++] = xsk_umem__extract_addr(out[i].addr);
				p->unsent += k;
				k = 0;
			}
		}
		if (r) {
			if (xsk_ring_prod__reserve(&p->fill, r, &idx_fq) != r) {
				fail("fill ring full with %u frames back (frame accounting broken)", r);
				return;
			}
			for (i = 0; i < r; i++)
				*xsk_ring_prod__fill_addr(&p->fill, idx_fq + i) = back[i];
			xsk_ring_prod__submit(&p->fill, r);
		}
		if (!k)
			continue;
		for (i = 0; i < k; i++)
			*xsk_ring_prod__tx_desc(&p->tx, idx_tx + i) = out[i];
		xsk_ring_prod__submit(&p->tx, k);
		p->reflected += k;
		p->outstanding += k;
		/* Send now, with no wait for more: a reply waits for no other. */
		complete_tx(p);
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "iface", required_argument, NULL, 'i' },
		{ "queue", required_argument, NULL, 'q' },
		{ "poll", no_argument, NULL, 'p' },
		{ "sockperf", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	enum { RXDROP, L2FWD, REFLECT } mode;
	const char *iface = NULL;
	bool had_prog, wait = false;
	struct peer p = { .fd = -1 };
	struct xsk_umem_config ucfg = {
		/* Twice the frames: the kernel publishes its fill-ring consumer
		 * index only when it has used up what it last saw, so a ring
		 * of exactly NUM_FRAMES can look full while frames are out. */
		.fill_size = 2 * NUM_FRAMES,
		.comp_size = RING_SIZE,
		.frame_size = FRAME_SIZE,
		.frame_headroom = 0,
	};
	struct xsk_socket_config scfg = {
		.rx_size = RING_SIZE,
		.tx_size = RING_SIZE,
		.libxdp_flags = 0, /* load libxdp's default redirect program */
		.xdp_flags = XDP_FLAGS_DRV_MODE,
		.bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP,
	};
	struct sigaction sa = { .sa_handler = on_signal };
	struct xdp_statistics st;
	socklen_t stlen;
	char note[160];
	uint32_t idx, prog_id = 0, i;
	unsigned long queue = 0;
	int ifindex, err, c;
	char *end;

	if (argc < 2 || argv[1][0] == '-')
		usage();
	if (!strcmp(argv[1], "rxdrop"))
		mode = RXDROP;
	else if (!strcmp(argv[1], "l2fwd"))
		mode = L2FWD;
	else if (!strcmp(argv[1], "reflect"))
		mode = REFLECT;
	else
		die("unknown mode %s (rxdrop, l2fwd, reflect)", argv[1]);
	optind = 2;
	while ((c = getopt_long(argc, argv, "i:q:psh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			p.sockperf = true;
			break;
		case 'p':
			wait = true;
			break;
		case 'i':
			iface = optarg;
			break;
		case 'q':
			errno = 0;
			queue = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg || queue > UINT32_MAX)
				die("--queue %s: not a queue number", optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || !iface)
		usage();
	if (wait && mode != RXDROP)
		die("--poll is for rxdrop only");
	if (p.sockperf && mode != REFLECT)
		die("--sockperf is for reflect only");
	ifindex = if_nametoindex(iface);
	if (!ifindex)
		die("interface %s: %s", iface, strerror(errno));

	libxdp_set_print(print_libxdp);
	libbpf_set_print(print_libbpf);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	err = bpf_xdp_query_id(ifindex, 0, &prog_id);
	if (err)
		die("query XDP program on %s: %s", iface, strerror(-err));
	had_prog = prog_id != 0;

	p.area = mmap(NULL, (size_t)NUM_FRAMES * FRAME_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p.area == MAP_FAILED)
		die("mmap UMEM: %s", strerror(errno));
	err = xsk_umem__create(&p.umem, p.area, (uint64_t)NUM_FRAMES * FRAME_SIZE, &p.fill, &p.comp, &ucfg);
	if (err)
		die("create UMEM: %s", strerror(-err));
	/* The kernel releases a closed socket's hold on the queue from a work
	 * queue, so a peer started right after another can find the queue
	 * busy for a moment: retry EBUSY for up to 2 s, as xdpipe's xsk does. */
	for (i = 0; i < 200; i++) {
		err = xsk_socket__create(&p.xsk, iface, queue, p.umem, &p.rx, mode != RXDROP ? &p.tx : NULL, &scfg);
		if (err != -EBUSY)
			break;
		usleep(10000);
	}
	if (err)
		die("create socket on %s queue %lu (copy mode, libxdp's program): %s", iface, queue, strerror(-err));
	p.fd = xsk_socket__fd(p.xsk);

	if (xsk_ring_prod__reserve(&p.fill, NUM_FRAMES, &idx) == NUM_FRAMES) {
		for (i = 0; i < NUM_FRAMES; i++)
			*xsk_ring_prod__fill_addr(&p.fill, idx + i) = (uint64_t)i * FRAME_SIZE;
		xsk_ring_prod__submit(&p.fill, NUM_FRAMES);
		printf("ready\n");
		fflush(stdout);
		switch (mode) {
		case RXDROP:
			rxdrop(&p, wait);
			break;
		case L2FWD:
			l2fwd(&p);
			break;
		case REFLECT:
			reflect(&p);
			break;
		}
	} else {
		fail("fill ring has no room for %d frames", NUM_FRAMES);
	}

	/* What the kernel dropped or found wanting, for the note. */
	stlen = sizeof(st);
	if (getsockopt(p.fd, SOL_XDP, XDP_STATISTICS, &st, &stlen))
		memset(&st, 0, sizeof(st));
	snprintf(note, sizeof(note), "kernel: rx_dropped %llu, rx_ring_full %llu, fill_ring_empty %llu, tx_invalid %llu",
		 (unsigned long long)st.rx_dropped, (unsigned long long)st.rx_ring_full,
		 (unsigned long long)st.rx_fill_ring_empty_descs, (unsigned long long)st.tx_invalid_descs);
	xsk_socket__delete(p.xsk);
	err = xsk_umem__delete(p.umem);
	if (err)
		fail("delete UMEM: %s", strerror(-err));
	else
		munmap(p.area, (size_t)NUM_FRAMES * FRAME_SIZE);
	/* libxdp 1.3 detaches its default program with the last socket; older
	 * versions leave it attached. Whatever is still there and was not
	 * there before is ours to remove. */
	prog_id = 0;
	if (!had_prog && !bpf_xdp_query_id(ifindex, 0, &prog_id) && prog_id) {
		struct xdp_multiprog *mp = xdp_multiprog__get_from_ifindex(ifindex);

		err = libxdp_get_error(mp);
		if (err)
			die("find the XDP program to detach from %s: %s", iface, strerror(-err));
		err = xdp_multiprog__detach(mp);
		xdp_multiprog__close(mp);
		if (err)
			die("detach the XDP program from %s: %s", iface, strerror(-err));
	}

	if (failed[0])
		die("%s", failed);
	if (mode == REFLECT) {
		char unsent[64] = "";

		if (p.unsent)
			snprintf(unsent, sizeof(unsent), ", %" PRIu64 " not sent (stopped, TX ring full)", p.unsent);
		printf("{\"frames\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"note\":\"C libxdp reflect (UDP, addresses and ports swapped), copy mode, "
		       "need_wakeup, spinning%s; reflected %" PRIu64 ", refused %" PRIu64 ", absorbed %" PRIu64 "%s; transmitted back %" PRIu64
		       " (%" PRIu64 " sendto kicks: %" PRIu64 " left frames, %" PRIu64 " busy); %s\"}\n",
		       p.frames, p.bytes, p.sockperf ? ", as sockperf's server" : "", p.reflected, p.refused, p.absorbed, unsent,
		       p.transmitted, p.kicks, p.partial, p.busy, note);
	} else if (mode == L2FWD)
		printf("{\"frames\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"note\":\"C libxdp l2fwd (macswap), copy mode, need_wakeup, spinning; "
		       "transmitted back %" PRIu64 " (%" PRIu64 " sendto kicks: %" PRIu64 " left frames, %" PRIu64 " busy); %s\"}\n",
		       p.frames, p.bytes, p.transmitted, p.kicks, p.partial, p.busy, note);
	else if (wait)
		printf("{\"frames\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"note\":\"C libxdp rxdrop, copy mode, need_wakeup, poll(2) when idle (%" PRIu64
		       " polls); %s\"}\n",
		       p.frames, p.bytes, p.polls, note);
	else
		printf("{\"frames\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"note\":\"C libxdp rxdrop, copy mode, need_wakeup, spinning; %s\"}\n",
		       p.frames, p.bytes, note);
	return 0;
}
