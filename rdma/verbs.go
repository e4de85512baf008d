//go:build rdma

package rdma

// This file is the only one that talks to C and the only one that imports
// unsafe: thin wrappers over libibverbs and librdmacm. The hot-path calls
// (post a chain of sends or receives, poll a completion queue) are one cgo
// call per burst, with the loop over packets in C.

/*
#cgo LDFLAGS: -lrdmacm -libverbs
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

struct xd_desc { uint64_t addr; uint32_t len; uint32_t flags; };
#define XD_MORE 1 // Desc.Flags More: the packet continues in the next desc
struct xd_wc { uint64_t wr_id; uint32_t status, opcode, byte_len, imm; };
struct xd_event {
	int type, status;
	struct rdma_cm_id *id;
	int priv_len;
	uint8_t priv[256];
};

#define XD_CHAIN 64

#define XD_SGES 256 // scatter-gather entries per chain: at least maxSegments

// xd_post_sends posts the packets of d[:n] as SENDs, one work request per
// packet with one SGE per segment (base+addr, len: the descs up to the first
// without XD_MORE), as chains of up to chain work requests. A request's
// wr_id is wrid0 + the index of its packet's last desc. The last request of
// each chain is signaled, and so is every request whose descs cross a
// multiple of sig_every. d[:n] must end with a whole packet of at most
// XD_SGES segments. It returns how many descs were posted, or -errno when
// none were.
static int xd_post_sends(struct ibv_qp *qp, uint32_t lkey, uint64_t base,
		const struct xd_desc *d, int n, uint64_t wrid0, int chain, int sig_every) {
	struct ibv_send_wr wr[XD_CHAIN], *bad = NULL;
	struct ibv_sge sge[XD_SGES];
	int first[XD_CHAIN]; // the first desc of each request
	int done = 0;
	if (chain <= 0 || chain > XD_CHAIN) chain = XD_CHAIN;
	while (done < n) {
		int k = 0, s = 0, i = done;
		while (i < n && k < chain) {
			int last = i;
			while (last < n - 1 && (d[last].flags & XD_MORE)) last++;
			int segs = last - i + 1;
			if (s + segs > XD_SGES) break;
			for (int j = 0; j < segs; j++) {
				sge[s + j].addr = base + d[i + j].addr;
				sge[s + j].length = d[i + j].len;
				sge[s + j].lkey = lkey;
			}
			uint64_t from = wrid0 + i, to = wrid0 + last + 1;
			memset(&wr[k], 0, sizeof wr[k]);
			wr[k].wr_id = to - 1;
			wr[k].sg_list = &sge[s];
			wr[k].num_sge = segs;
			wr[k].opcode = IBV_WR_SEND;
			if (sig_every > 0 && to / sig_every != from / sig_every)
				wr[k].send_flags = IBV_SEND_SIGNALED;
			wr[k].next = &wr[k + 1];
			first[k] = i;
			k++;
			s += segs;
			i = last + 1;
		}
		if (k == 0) return done > 0 ? done : -EINVAL;
		wr[k - 1].send_flags = IBV_SEND_SIGNALED;
		wr[k - 1].next = NULL;
		int rc = ibv_post_send(qp, wr, &bad);
		if (rc) {
			int ok = bad ? (int)(bad - wr) : 0;
			if (ok > 0) done = first[ok - 1] + wr[ok - 1].num_sge;
			return done > 0 ? done : -rc;
		}
		done = i;
	}
	return done;
}

// xd_post_imm posts one zero-length SEND-with-immediate (a credit update).
static int xd_post_imm(struct ibv_qp *qp, uint32_t imm, uint64_t wr_id) {
	struct ibv_send_wr wr, *bad = NULL;
	memset(&wr, 0, sizeof wr);
	wr.wr_id = wr_id;
	wr.opcode = IBV_WR_SEND_WITH_IMM;
	wr.imm_data = htonl(imm);
	wr.send_flags = IBV_SEND_SIGNALED;
	return ibv_post_send(qp, &wr, &bad);
}

// xd_post_recvs posts one receive per buffer index idx[i], each the buffer
// base + idx*size of size bytes (size 0: no SGE, for zero-length messages).
static int xd_post_recvs(struct ibv_qp *qp, uint32_t lkey, uint64_t base, uint32_t size,
		const uint32_t *idx, int n) {
	struct ibv_recv_wr wr[XD_CHAIN], *bad = NULL;
	struct ibv_sge sge[XD_CHAIN];
	int done = 0;
	while (done < n) {
		int k = n - done < XD_CHAIN ? n - done : XD_CHAIN;
		for (int i = 0; i < k; i++) {
			uint32_t b = idx[done + i];
			memset(&wr[i], 0, sizeof wr[i]);
			wr[i].wr_id = b;
			if (size) {
				sge[i].addr = base + (uint64_t)b * size;
				sge[i].length = size;
				sge[i].lkey = lkey;
				wr[i].sg_list = &sge[i];
				wr[i].num_sge = 1;
			}
			wr[i].next = i == k - 1 ? NULL : &wr[i + 1];
		}
		int rc = ibv_post_recv(qp, wr, &bad);
		if (rc) return -rc;
		done += k;
	}
	return done;
}

// xd_poll polls up to n (<= 64) completions into out.
static int xd_poll(struct ibv_cq *cq, struct xd_wc *out, int n) {
	struct ibv_wc wc[64];
	if (n > 64) n = 64;
	int got = ibv_poll_cq(cq, n, wc);
	for (int i = 0; i < got; i++) {
		out[i].wr_id = wc[i].wr_id;
		out[i].status = wc[i].status;
		out[i].opcode = wc[i].opcode;
		out[i].byte_len = wc[i].byte_len;
		out[i].imm = (wc[i].wc_flags & IBV_WC_WITH_IMM) ? ntohl(wc[i].imm_data) : 0;
	}
	return got;
}

// xd_get_event takes the next rdma_cm event off ch (non-blocking fd: -EAGAIN
// when there is none), copies what we need and acks it.
static int xd_get_event(struct rdma_event_channel *ch, struct xd_event *out) {
	struct rdma_cm_event *ev;
	if (rdma_get_cm_event(ch, &ev)) return -errno;
	out->type = ev->event;
	out->status = ev->status;
	out->id = ev->id;
	out->priv_len = 0;
	switch (ev->event) {
	case RDMA_CM_EVENT_CONNECT_REQUEST:
	case RDMA_CM_EVENT_ESTABLISHED:
	case RDMA_CM_EVENT_REJECTED:
	case RDMA_CM_EVENT_CONNECT_RESPONSE:
		if (ev->param.conn.private_data && ev->param.conn.private_data_len) {
			int l = ev->param.conn.private_data_len;
			if (l > (int)sizeof out->priv) l = sizeof out->priv;
			memcpy(out->priv, ev->param.conn.private_data, l);
			out->priv_len = l;
		}
		break;
	default:
		break;
	}
	rdma_ack_cm_event(ev);
	return 0;
}

static struct rdma_event_channel *xd_channel(int *err) {
	struct rdma_event_channel *ch = rdma_create_event_channel();
	if (!ch) { *err = errno; return NULL; }
	int fl = fcntl(ch->fd, F_GETFL);
	if (fl < 0 || fcntl(ch->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		*err = errno;
		rdma_destroy_event_channel(ch);
		return NULL;
	}
	return ch;
}

static int xd_channel_fd(struct rdma_event_channel *ch) { return ch->fd; }

static struct rdma_cm_id *xd_create_id(struct rdma_event_channel *ch, int *err) {
	struct rdma_cm_id *id = NULL;
	if (rdma_create_id(ch, &id, NULL, RDMA_PS_TCP)) { *err = errno; return NULL; }
	return id;
}

// xd_sockaddr fills ss from a 4- or 16-byte address and a port.
static socklen_t xd_sockaddr(struct sockaddr_storage *ss, const uint8_t *ip, int iplen, int port) {
	memset(ss, 0, sizeof *ss);
	if (iplen == 4) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;
		s->sin_family = AF_INET;
		s->sin_port = htons(port);
		memcpy(&s->sin_addr, ip, 4);
		return sizeof *s;
	}
	struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
	s->sin6_family = AF_INET6;
	s->sin6_port = htons(port);
	memcpy(&s->sin6_addr, ip, 16);
	return sizeof *s;
}

static int xd_resolve_addr(struct rdma_cm_id *id, const uint8_t *src, int srclen,
		const uint8_t *ip, int iplen, int port, int ms) {
	struct sockaddr_storage ss, sss;
	xd_sockaddr(&ss, ip, iplen, port);
	if (srclen) xd_sockaddr(&sss, src, srclen, 0);
	return rdma_resolve_addr(id, srclen ? (struct sockaddr *)&sss : NULL, (struct sockaddr *)&ss, ms) ? errno : 0;
}

static int xd_bind(struct rdma_cm_id *id, const uint8_t *ip, int iplen, int port) {
	struct sockaddr_storage ss;
	xd_sockaddr(&ss, ip, iplen, port);
	return rdma_bind_addr(id, (struct sockaddr *)&ss) ? errno : 0;
}

static int xd_local_port(struct rdma_cm_id *id) { return ntohs(rdma_get_src_port(id)); }

static int xd_set_ack_timeout(struct rdma_cm_id *id, int t) {
	uint8_t v = t;
	return rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_ACK_TIMEOUT, &v, sizeof v) ? errno : 0;
}

static int xd_connect(struct rdma_cm_id *id, const void *priv, int len, int accept) {
	struct rdma_conn_param p;
	memset(&p, 0, sizeof p);
	p.private_data = priv;
	p.private_data_len = len;
	p.retry_count = 7;
	p.rnr_retry_count = 6; // credits make RNR impossible; a bug fails instead of hanging
	int rc = accept ? rdma_accept(id, &p) : rdma_connect(id, &p);
	return rc ? errno : 0;
}

static int xd_reject(struct rdma_cm_id *id, const void *priv, int len) {
	return rdma_reject(id, priv, len) ? errno : 0;
}

static struct ibv_context *xd_verbs(struct rdma_cm_id *id) { return id->verbs; }

// xd_max_sge is the device's max_sge (scatter-gather entries per work
// request), or -errno.
static int xd_max_sge(struct ibv_context *c) {
	struct ibv_device_attr a;
	if (ibv_query_device(c, &a)) return -errno;
	return a.max_sge;
}
static const char *xd_dev_name(struct rdma_cm_id *id) {
	return id->verbs ? ibv_get_device_name(id->verbs->device) : "";
}

static struct ibv_qp *xd_create_qp(struct rdma_cm_id *id, struct ibv_pd *pd, struct ibv_cq *scq,
		struct ibv_cq *rcq, int sq, int rq, int sge, int *err) {
	struct ibv_qp_init_attr a;
	memset(&a, 0, sizeof a);
	a.send_cq = scq;
	a.recv_cq = rcq;
	a.qp_type = IBV_QPT_RC;
	a.cap.max_send_wr = sq;
	a.cap.max_recv_wr = rq;
	a.cap.max_send_sge = sge;
	a.cap.max_recv_sge = 1;
	if (rdma_create_qp(id, pd, &a)) { *err = errno; return NULL; }
	return id->qp;
}

static int xd_path_mtu(struct ibv_qp *qp) {
	struct ibv_qp_attr a;
	struct ibv_qp_init_attr ia;
	if (ibv_query_qp(qp, &a, IBV_QP_PATH_MTU, &ia)) return 0;
	return 128 << a.path_mtu;
}

static int xd_qp_error(struct ibv_qp *qp) {
	struct ibv_qp_attr a;
	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_ERR;
	return ibv_modify_qp(qp, &a, IBV_QP_STATE);
}

static struct ibv_mr *xd_reg_mr(struct ibv_pd *pd, void *addr, size_t len, int access, int *err) {
	struct ibv_mr *mr = ibv_reg_mr(pd, addr, len, access);
	if (!mr) *err = errno;
	return mr;
}

// xd_device_info opens device i of the list and fills the fields Devices
// reports. Returns errno or 0.
struct xd_port { int state, mtu, link; };
static int xd_device_info(struct ibv_device *d, uint64_t *guid, int *max_qp_wr, int *max_sge,
		int *nports, struct xd_port *ports, int maxports) {
	struct ibv_context *c = ibv_open_device(d);
	if (!c) return errno;
	struct ibv_device_attr a;
	if (ibv_query_device(c, &a)) { int e = errno; ibv_close_device(c); return e; }
	*guid = be64toh(a.node_guid);
	*max_qp_wr = a.max_qp_wr;
	*max_sge = a.max_sge;
	int n = a.phys_port_cnt < maxports ? a.phys_port_cnt : maxports;
	for (int p = 0; p < n; p++) {
		struct ibv_port_attr pa;
		memset(&pa, 0, sizeof pa);
		if (ibv_query_port(c, p + 1, &pa)) { ports[p].state = -1; continue; }
		ports[p].state = pa.state;
		ports[p].mtu = 128 << pa.active_mtu;
		ports[p].link = pa.link_layer;
	}
	*nports = n;
	ibv_close_device(c);
	return 0;
}
// xd_peer_addr formats the peer address of id as host:port into buf.
static void xd_peer_addr(struct rdma_cm_id *id, char *buf, int len) {
	struct sockaddr *sa = rdma_get_peer_addr(id);
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s->sin_addr, host, sizeof host);
		port = ntohs(s->sin_port);
		snprintf(buf, len, "%s:%d", host, port);
	} else if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof host);
		port = ntohs(s->sin6_port);
		snprintf(buf, len, "[%s]:%d", host, port);
	} else {
		snprintf(buf, len, "?");
	}
}
static struct ibv_device *xd_dev_at(struct ibv_device **l, int i) { return l[i]; }
*/
import "C"

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Supported: this build has verbs (rdma/stub.go's is false).
const Supported = true

// Devices lists the RDMA devices with their ports. No device at all is
// ErrNoDevice.
func Devices() ([]Device, error) {
	var n C.int
	list, err := C.ibv_get_device_list(&n)
	if list == nil {
		if err == nil || err == syscall.ENOSYS || err == syscall.ENOENT {
			return nil, ErrNoDevice
		}
		return nil, fmt.Errorf("ibv_get_device_list: %w", err)
	}
	defer C.ibv_free_device_list(list)
	if n == 0 {
		return nil, ErrNoDevice
	}
	devs := make([]Device, 0, int(n))
	for i := 0; i < int(n); i++ {
		d := C.xd_dev_at(list, C.int(i))
		var guid C.uint64_t
		var mqw, msge, np C.int
		var ports [8]C.struct_xd_port
		dev := Device{Name: C.GoString(C.ibv_get_device_name(d))}
		if rc := C.xd_device_info(d, &guid, &mqw, &msge, &np, &ports[0], 8); rc != 0 {
			return nil, fmt.Errorf("query device %s: %w", dev.Name, syscall.Errno(rc))
		}
		dev.GUID = fmt.Sprintf("%016x", uint64(guid))
		dev.MaxQPWR, dev.MaxSGE = int(mqw), int(msge)
		for p := 0; p < int(np); p++ {
			port := Port{Num: p + 1, ActiveMTU: int(ports[p].mtu), State: portState(int(ports[p].state))}
			switch ports[p].link {
			case C.IBV_LINK_LAYER_ETHERNET:
				port.LinkLayer = "Ethernet"
			case C.IBV_LINK_LAYER_INFINIBAND:
				port.LinkLayer = "InfiniBand"
			default:
				port.LinkLayer = "unspecified"
			}
			dev.Ports = append(dev.Ports, port)
		}
		devs = append(devs, dev)
	}
	return devs, nil
}

func portState(s int) string {
	switch s {
	case C.IBV_PORT_DOWN:
		return "DOWN"
	case C.IBV_PORT_INIT:
		return "INIT"
	case C.IBV_PORT_ARMED:
		return "ARMED"
	case C.IBV_PORT_ACTIVE:
		return "ACTIVE"
	case C.IBV_PORT_ACTIVE_DEFER:
		return "ACTIVE_DEFER"
	}
	return fmt.Sprintf("state(%d)", s)
}

// requireDevice fails fast, with ErrNoDevice, on a machine without RDMA
// devices, before librdmacm turns that into a less telling errno.
func requireDevice() error {
	var n C.int
	list := C.ibv_get_device_list(&n)
	if list == nil {
		return ErrNoDevice
	}
	C.ibv_free_device_list(list)
	if n == 0 {
		return ErrNoDevice
	}
	return nil
}

// event is an rdma_cm event, copied out of librdmacm and already acked.
type event struct {
	typ    int
	status int
	id     *C.struct_rdma_cm_id
	priv   []byte
}

func (e event) name() string { return C.GoString(C.rdma_event_str(C.enum_rdma_cm_event_type(e.typ))) }

const (
	evAddrResolved   = C.RDMA_CM_EVENT_ADDR_RESOLVED
	evAddrError      = C.RDMA_CM_EVENT_ADDR_ERROR
	evRouteResolved  = C.RDMA_CM_EVENT_ROUTE_RESOLVED
	evRouteError     = C.RDMA_CM_EVENT_ROUTE_ERROR
	evConnectRequest = C.RDMA_CM_EVENT_CONNECT_REQUEST
	evConnectError   = C.RDMA_CM_EVENT_CONNECT_ERROR
	evUnreachable    = C.RDMA_CM_EVENT_UNREACHABLE
	evRejected       = C.RDMA_CM_EVENT_REJECTED
	evEstablished    = C.RDMA_CM_EVENT_ESTABLISHED
	evDisconnected   = C.RDMA_CM_EVENT_DISCONNECTED
	evDeviceRemoval  = C.RDMA_CM_EVENT_DEVICE_REMOVAL
	evTimewaitExit   = C.RDMA_CM_EVENT_TIMEWAIT_EXIT
)

// channel is an rdma_cm event channel with a non-blocking fd.
type channel struct {
	ch *C.struct_rdma_event_channel
	fd int
	// ev receives poll's event: a local passed to C escapes, and poll runs
	// on the data path (Sender.events, Receiver.Receive when idle).
	ev C.struct_xd_event
}

func newChannel() (*channel, error) {
	var e C.int
	ch := C.xd_channel(&e)
	if ch == nil {
		errno := syscall.Errno(e)
		if errno == syscall.ENOENT || errno == syscall.ENODEV {
			return nil, fmt.Errorf("rdma_create_event_channel: %w (%v: is rdma_ucm loaded?)", ErrNoDevice, errno)
		}
		return nil, fmt.Errorf("rdma_create_event_channel: %w", errno)
	}
	return &channel{ch: ch, fd: int(C.xd_channel_fd(ch))}, nil
}

func (c *channel) close() {
	if c != nil && c.ch != nil {
		C.rdma_destroy_event_channel(c.ch)
		c.ch = nil
	}
}

// poll returns the next event if one is pending.
func (c *channel) poll() (event, bool, error) {
	ev := &c.ev
	rc := C.xd_get_event(c.ch, ev)
	if rc == -C.EAGAIN || rc == -C.EWOULDBLOCK {
		return event{}, false, nil
	}
	if rc < 0 {
		return event{}, false, fmt.Errorf("rdma_get_cm_event: %w", syscall.Errno(-rc))
	}
	e := event{typ: int(ev._type), status: int(ev.status), id: ev.id}
	if ev.priv_len > 0 {
		e.priv = C.GoBytes(unsafe.Pointer(&ev.priv[0]), ev.priv_len)
	}
	return e, true, nil
}

// wait returns the next event, waiting until deadline or ctx is done.
func (c *channel) wait(ctx context.Context, deadline time.Time) (event, error) {
	for {
		e, ok, err := c.poll()
		if ok || err != nil {
			return e, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return event{}, ErrTimeout
		}
		if err := ctx.Err(); err != nil {
			return event{}, err
		}
		ms := int(min(left, 100*time.Millisecond) / time.Millisecond)
		fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, max(ms, 1)); err != nil && err != unix.EINTR {
			return event{}, fmt.Errorf("poll rdma_cm channel: %w", err)
		}
	}
}

// cmID is an rdma_cm identifier.
type cmID struct{ id *C.struct_rdma_cm_id }

func createID(c *channel) (cmID, error) {
	var e C.int
	id := C.xd_create_id(c.ch, &e)
	if id == nil {
		return cmID{}, fmt.Errorf("rdma_create_id: %w", syscall.Errno(e))
	}
	return cmID{id}, nil
}

func ipBytes(ip net.IP) []byte {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip.To16()
}

func (m cmID) resolveAddr(src, ip net.IP, port int, timeout time.Duration) error {
	b := ipBytes(ip)
	sb := []byte{0}
	sl := 0
	if src != nil {
		sb = ipBytes(src)
		sl = len(sb)
	}
	if rc := C.xd_resolve_addr(m.id, (*C.uint8_t)(&sb[0]), C.int(sl), (*C.uint8_t)(&b[0]), C.int(len(b)), C.int(port), C.int(timeout/time.Millisecond)); rc != 0 {
		return syscall.Errno(rc)
	}
	return nil
}

func (m cmID) resolveRoute(timeout time.Duration) error {
	if rc, err := C.rdma_resolve_route(m.id, C.int(timeout/time.Millisecond)); rc != 0 {
		return err
	}
	return nil
}

func (m cmID) bind(ip net.IP, port int) error {
	if ip == nil {
		ip = net.IPv4zero
	}
	b := ipBytes(ip)
	if rc := C.xd_bind(m.id, (*C.uint8_t)(&b[0]), C.int(len(b)), C.int(port)); rc != 0 {
		return syscall.Errno(rc)
	}
	return nil
}

func (m cmID) listen(backlog int) error {
	if rc, err := C.rdma_listen(m.id, C.int(backlog)); rc != 0 {
		return err
	}
	return nil
}

func (m cmID) localPort() int { return int(C.xd_local_port(m.id)) }

func (m cmID) setAckTimeout(t int) error {
	if rc := C.xd_set_ack_timeout(m.id, C.int(t)); rc != 0 {
		return syscall.Errno(rc)
	}
	return nil
}

func (m cmID) connect(priv []byte, accept bool) error {
	a := C.int(0)
	if accept {
		a = 1
	}
	var p unsafe.Pointer
	if len(priv) > 0 {
		p = C.CBytes(priv)
		defer C.free(p)
	}
	if rc := C.xd_connect(m.id, p, C.int(len(priv)), a); rc != 0 {
		return syscall.Errno(rc)
	}
	return nil
}

func (m cmID) reject(priv []byte) error {
	var p unsafe.Pointer
	if len(priv) > 0 {
		p = C.CBytes(priv)
		defer C.free(p)
	}
	if rc := C.xd_reject(m.id, p, C.int(len(priv))); rc != 0 {
		return syscall.Errno(rc)
	}
	return nil
}

func (m cmID) disconnect() { C.rdma_disconnect(m.id) }

func (m cmID) migrate(c *channel) error {
	if rc, err := C.rdma_migrate_id(m.id, c.ch); rc != 0 {
		return fmt.Errorf("rdma_migrate_id: %w", err)
	}
	return nil
}

func (m cmID) peerAddr() string {
	var buf [80]C.char
	C.xd_peer_addr(m.id, &buf[0], C.int(len(buf)))
	return C.GoString(&buf[0])
}

func (m cmID) deviceName() string { return C.GoString(C.xd_dev_name(m.id)) }

// deviceLimits returns the name and max_sge of the device the id is bound
// to (after address resolution).
func (m cmID) deviceLimits() (name string, maxSGE int, err error) {
	verbs := C.xd_verbs(m.id)
	if verbs == nil {
		return "", 0, fmt.Errorf("cm id has no device: %w", ErrNoDevice)
	}
	name = m.deviceName()
	rc := C.xd_max_sge(verbs)
	if rc < 0 {
		return name, 0, fmt.Errorf("query device %s: %w", name, syscall.Errno(-rc))
	}
	return name, int(rc), nil
}

func (m cmID) destroy() {
	if m.id != nil {
		C.rdma_destroy_id(m.id)
	}
}

// queues are the verbs objects of one connection: protection domain, send
// and receive completion queues, the RC queue pair, and memory regions.
type queues struct {
	id       cmID
	pd       *C.struct_ibv_pd
	scq, rcq *C.struct_ibv_cq
	qp       *C.struct_ibv_qp
	mrs      []*C.struct_ibv_mr
}

// newQueues makes the verbs objects of a connection: sq and rq work
// requests deep, sge scatter-gather entries per send.
func newQueues(id cmID, sq, rq, sge int) (*queues, error) {
	q := &queues{id: id}
	verbs := C.xd_verbs(id.id)
	if verbs == nil {
		return nil, fmt.Errorf("cm id has no device: %w", ErrNoDevice)
	}
	var err error
	if q.pd, err = C.ibv_alloc_pd(verbs); q.pd == nil {
		return nil, fmt.Errorf("ibv_alloc_pd: %w", err)
	}
	if q.scq, err = C.ibv_create_cq(verbs, C.int(sq), nil, nil, 0); q.scq == nil {
		q.close()
		return nil, fmt.Errorf("ibv_create_cq(%d): %w", sq, err)
	}
	if q.rcq, err = C.ibv_create_cq(verbs, C.int(rq), nil, nil, 0); q.rcq == nil {
		q.close()
		return nil, fmt.Errorf("ibv_create_cq(%d): %w", rq, err)
	}
	var e C.int
	if q.qp = C.xd_create_qp(id.id, q.pd, q.scq, q.rcq, C.int(sq), C.int(rq), C.int(sge), &e); q.qp == nil {
		q.close()
		return nil, fmt.Errorf("rdma_create_qp(send %d, recv %d, sge %d): %w", sq, rq, sge, syscall.Errno(e))
	}
	return q, nil
}

// mr is a registered memory region.
type mr struct {
	mr   *C.struct_ibv_mr
	base uint64 // address of the first byte
	lkey uint32
}

const (
	accessLocalWrite = C.IBV_ACCESS_LOCAL_WRITE
)

// register registers buf, which must not be Go heap memory: the device
// keeps its address after the call.
func (q *queues) register(buf []byte, access int) (mr, error) {
	if len(buf) == 0 {
		return mr{}, fmt.Errorf("register: empty region")
	}
	var e C.int
	m := C.xd_reg_mr(q.pd, unsafe.Pointer(&buf[0]), C.size_t(len(buf)), C.int(access), &e)
	if m == nil {
		return mr{}, fmt.Errorf("ibv_reg_mr(%d bytes): %w", len(buf), syscall.Errno(e))
	}
	q.mrs = append(q.mrs, m)
	return mr{mr: m, base: uint64(uintptr(unsafe.Pointer(&buf[0]))), lkey: uint32(m.lkey)}, nil
}

// postSends posts the packets of descs as SENDs from m and returns how many
// descs it posted; see xd_post_sends.
func (q *queues) postSends(m mr, descs []Desc, wrid0 uint64, chain, sigEvery int) (int, error) {
	if len(descs) == 0 {
		return 0, nil
	}
	rc := C.xd_post_sends(q.qp, C.uint32_t(m.lkey), C.uint64_t(m.base),
		(*C.struct_xd_desc)(unsafe.Pointer(&descs[0])), C.int(len(descs)),
		C.uint64_t(wrid0), C.int(chain), C.int(sigEvery))
	if rc < 0 {
		return 0, fmt.Errorf("ibv_post_send: %w", syscall.Errno(-rc))
	}
	return int(rc), nil
}

func (q *queues) postImm(imm uint32, wrid uint64) error {
	if rc := C.xd_post_imm(q.qp, C.uint32_t(imm), C.uint64_t(wrid)); rc != 0 {
		return fmt.Errorf("ibv_post_send(credit): %w", syscall.Errno(rc))
	}
	return nil
}

// postRecvs posts a receive for each buffer index; size 0 posts receives
// without a buffer (for zero-length credit messages).
func (q *queues) postRecvs(m mr, size int, idx []uint32) error {
	if len(idx) == 0 {
		return nil
	}
	rc := C.xd_post_recvs(q.qp, C.uint32_t(m.lkey), C.uint64_t(m.base), C.uint32_t(size),
		(*C.uint32_t)(unsafe.Pointer(&idx[0])), C.int(len(idx)))
	if rc < 0 {
		return fmt.Errorf("ibv_post_recv: %w", syscall.Errno(-rc))
	}
	return nil
}

// wc is one work completion (struct xd_wc).
type wc struct {
	wrID    uint64
	status  uint32
	opcode  uint32
	byteLen uint32
	imm     uint32
}

func (w wc) statusString() string {
	return fmt.Sprintf("%s (status %d)", C.GoString(C.ibv_wc_status_str(C.enum_ibv_wc_status(w.status))), w.status)
}

const (
	wcSuccess  = C.IBV_WC_SUCCESS
	wcFlushErr = C.IBV_WC_WR_FLUSH_ERR
	wcRecvImm  = C.IBV_WC_RECV_RDMA_WITH_IMM
)

// poll polls up to len(out) (at most 64) completions of cq.
func pollCQ(cq *C.struct_ibv_cq, out []wc) int {
	if len(out) == 0 {
		return 0
	}
	return int(C.xd_poll(cq, (*C.struct_xd_wc)(unsafe.Pointer(&out[0])), C.int(len(out))))
}

func (q *queues) pathMTU() int { return int(C.xd_path_mtu(q.qp)) }

// toError moves the queue pair to the error state, which flushes every
// outstanding work request with a completion.
func (q *queues) toError() {
	if q.qp != nil {
		C.xd_qp_error(q.qp)
	}
}

// close destroys the queue pair, deregisters the regions and frees the
// completion queues and protection domain, in that order. Idempotent.
func (q *queues) close() {
	if q == nil {
		return
	}
	if q.qp != nil {
		C.rdma_destroy_qp(q.id.id)
		q.qp = nil
	}
	for _, m := range q.mrs {
		C.ibv_dereg_mr(m)
	}
	q.mrs = nil
	if q.scq != nil {
		C.ibv_destroy_cq(q.scq)
		q.scq = nil
	}
	if q.rcq != nil {
		C.ibv_destroy_cq(q.rcq)
		q.rcq = nil
	}
	if q.pd != nil {
		C.ibv_dealloc_pd(q.pd)
		q.pd = nil
	}
}
