//go:build rdma

package rdma

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/undo"
)

// Private data carried by the rdma_cm connection handshake.
//
//	connect (sender):  magic u32, version u16, flags u16, max message u32
//	accept (sink):     magic u32, version u16, flags u16, credits u32, buffer size u32
//	reject (sink):     magic u32, version u16, flags u16, reason (text)
//
// All big-endian. The CM pads private data, so lengths are at least these.
const (
	protoMagic   uint32 = 0x58445052 // "XDPR"
	protoVersion uint16 = 1
	hdrLen              = 8

	// creditRecvs is how many receives the sender keeps posted for credit
	// updates. The sink sends one per Buffers/16 reposted buffers, and the
	// credits in flight never exceed Buffers, so at most 32 are ever
	// outstanding (16 for Buffers >= 256): twice that never runs dry.
	creditRecvs   = 64
	creditSQDepth = 64 // the sink's send queue: credit updates only
	eventEvery    = 64 // idle polls between looks at the rdma_cm channel
	maxSegments   = 64 // the most segments per packet (XD_SGES in verbs.go)
)

func putHdr(b []byte) {
	binary.BigEndian.PutUint32(b[0:], protoMagic)
	binary.BigEndian.PutUint16(b[4:], protoVersion)
}

func checkHdr(b []byte) error {
	if len(b) < hdrLen || binary.BigEndian.Uint32(b) != protoMagic {
		return errors.New("peer is not an xdpipe rdma endpoint (bad private data)")
	}
	if v := binary.BigEndian.Uint16(b[4:]); v != protoVersion {
		return fmt.Errorf("protocol version %d, want %d", v, protoVersion)
	}
	return nil
}

// splitAddr resolves host:port. An empty host is the wildcard address.
func splitAddr(ctx context.Context, addr string) (net.IP, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, fmt.Errorf("address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return nil, 0, fmt.Errorf("address %q: bad port %q", addr, ps)
	}
	if host == "" {
		return nil, port, nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip, port, nil
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, 0, fmt.Errorf("resolve %q: %w", host, err)
	}
	for _, a := range ips { // prefer IPv4: RoCE v2 GIDs of IPv4 addresses are the common case
		if a.IP.To4() != nil {
			return a.IP, port, nil
		}
	}
	return ips[0].IP, port, nil
}

// eventError turns an unexpected rdma_cm event during set-up into an error.
func eventError(what string, e event) error {
	errno := syscall.Errno(-e.status)
	switch e.typ {
	case evAddrError, evRouteError, evUnreachable:
		return fmt.Errorf("%w: %s: %s: %v", ErrUnreachable, what, e.name(), errno)
	case evRejected:
		if checkHdr(e.priv) == nil && len(e.priv) > hdrLen {
			return fmt.Errorf("%w: %s: sink said: %s", ErrRefused, what, cstr(e.priv[hdrLen:]))
		}
		if e.status == 8 { // IB_CM_REJ_INVALID_SERVICE_ID
			return fmt.Errorf("%w: %s: nothing listens on the port", ErrRefused, what)
		}
		return fmt.Errorf("%w: %s: rejected (reason %d)", ErrRefused, what, e.status)
	case evDisconnected, evTimewaitExit:
		return fmt.Errorf("%w: %s: %s", ErrDisconnected, what, e.name())
	case evDeviceRemoval:
		return fmt.Errorf("%w: %s: device removed", ErrNoDevice, what)
	}
	return fmt.Errorf("%s: unexpected %s (status %d)", what, e.name(), e.status)
}

func cstr(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// expect waits for an event of type want.
func expect(ctx context.Context, ch *channel, deadline time.Time, want int, what string) (event, error) {
	e, err := ch.wait(ctx, deadline)
	if err != nil {
		return e, fmt.Errorf("%s: %w", what, err)
	}
	if e.typ != want {
		return e, eventError(what, e)
	}
	return e, nil
}

// Sender ships packets from a registered region to one sink over an RC
// queue pair. It belongs to one goroutine.
type Sender struct {
	opts    DialOptions
	ch      *channel
	id      cmID
	q       *queues
	region  mr
	size    uint64 // region length
	remote  string
	maxMsg  uint32
	maxSegs int
	pathMTU int
	credits int

	// ring holds the in-flight descriptors by sequence & mask, a sequence
	// number per Desc. A send's wr_id is the sequence of its packet's last
	// Desc, so its completion retires every Desc up to that one.
	ring    []Desc
	mask    uint64
	next    uint64 // sequence of the next Desc
	done    uint64 // Desc with sequence < done have completed
	handed  uint64 // Desc with sequence < handed were returned by Completed
	wcs     [64]wc
	zeros   [creditRecvs]uint32
	idle    int
	err     error
	closed  bool
	stats   SenderStats
	undo    undo.Stack
	started time.Time
}

// Dial connects to the sink listening at addr (host:port) and registers
// region, from which every Desc given to Send is read. region must stay
// mapped until Close and must not be Go heap memory (the UMEM is mmap'd).
// Every step is bounded by opts.Timeout and ctx.
func Dial(ctx context.Context, addr string, region []byte, opts DialOptions) (_ *Sender, err error) {
	opts = opts.withDefaults()
	if len(region) == 0 {
		return nil, errors.New("dial: empty region")
	}
	deadline := time.Now().Add(opts.Timeout)
	ip, port, err := splitAddr(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	if ip == nil {
		return nil, fmt.Errorf("dial %s: no host", addr)
	}
	if err := requireDevice(); err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	s := &Sender{opts: opts, remote: addr, size: uint64(len(region))}
	defer func() {
		if err != nil {
			s.undo.Run()
		}
	}()
	if s.ch, err = newChannel(); err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	s.undo.Push(s.ch.close)
	if s.id, err = createID(s.ch); err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	s.undo.Push(s.id.destroy)

	step := min(time.Until(deadline)/2, 2*time.Second)
	var src net.IP
	if opts.Source != "" {
		if src = net.ParseIP(opts.Source); src == nil {
			return nil, fmt.Errorf("dial %s: source %q is not an IP address", addr, opts.Source)
		}
	}
	if err := s.id.resolveAddr(src, ip, port, step); err != nil {
		return nil, fmt.Errorf("dial %s: %w: rdma_resolve_addr: %v", addr, ErrUnreachable, err)
	}
	if _, err := expect(ctx, s.ch, deadline, evAddrResolved, "resolve address"); err != nil {
		if errors.Is(err, ErrTimeout) {
			err = fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if err := s.id.resolveRoute(min(time.Until(deadline)/2, 2*time.Second)); err != nil {
		return nil, fmt.Errorf("dial %s: %w: rdma_resolve_route: %v", addr, ErrUnreachable, err)
	}
	if _, err := expect(ctx, s.ch, deadline, evRouteResolved, "resolve route"); err != nil {
		if errors.Is(err, ErrTimeout) {
			err = fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}

	dev, maxSGE, err := s.id.deviceLimits()
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if limit := min(maxSGE, maxSegments); opts.MaxSegments > limit {
		return nil, fmt.Errorf("dial %s: packets of %d segments, device %s sends at most %d per message (max_sge %d): lower the MTU or use larger UMEM frames",
			addr, opts.MaxSegments, dev, limit, maxSGE)
	}
	s.maxSegs = opts.MaxSegments
	if s.q, err = newQueues(s.id, opts.SendQueue, creditRecvs, opts.MaxSegments); err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	s.undo.Push(s.q.close)
	if s.region, err = s.q.register(region, accessLocalWrite); err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if err := s.q.postRecvs(mr{}, 0, s.zeros[:]); err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if err := s.id.setAckTimeout(opts.AckTimeout); err != nil {
		return nil, fmt.Errorf("dial %s: set ack timeout: %w", addr, err)
	}
	priv := make([]byte, 16)
	putHdr(priv)
	binary.BigEndian.PutUint32(priv[8:], uint32(opts.MaxMessage))
	if err := s.id.connect(priv, false); err != nil {
		return nil, fmt.Errorf("dial %s: rdma_connect: %w", addr, err)
	}
	e, err := expect(ctx, s.ch, deadline, evEstablished, "connect")
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if err := checkHdr(e.priv); err != nil || len(e.priv) < 16 {
		s.id.disconnect()
		return nil, fmt.Errorf("dial %s: %w: accept: %v", addr, ErrRefused, err)
	}
	// One credit stays in reserve for the FIN that ends a clean stream.
	s.credits = int(binary.BigEndian.Uint32(e.priv[8:])) - 1
	if s.credits < 1 {
		s.id.disconnect()
		return nil, fmt.Errorf("dial %s: %w: sink offers %d buffers, need 2", addr, ErrRefused, s.credits+1)
	}
	s.maxMsg = binary.BigEndian.Uint32(e.priv[12:])
	s.pathMTU = s.q.pathMTU()
	s.ring = make([]Desc, opts.SendQueue)
	s.mask = uint64(opts.SendQueue - 1)
	s.started = time.Now()
	return s, nil
}

// MaxMessage is the largest packet the sink accepts (its buffer size).
func (s *Sender) MaxMessage() int { return int(s.maxMsg) }

// PathMTU is the RoCE path MTU of the connection in bytes; longer messages
// are segmented by the RC transport.
func (s *Sender) PathMTU() int { return s.pathMTU }

// InFlight is the number of descriptors (segments) given to Send not yet
// handed back by Completed.
func (s *Sender) InFlight() int { return int(s.next - s.handed) }

// Stats returns the sender's counters.
func (s *Sender) Stats() SenderStats {
	st := s.stats
	st.Credits = s.credits
	return st
}

// fail records the first fatal error and moves the queue pair to the error
// state, so that every outstanding send completes (flushed).
func (s *Sender) fail(err error) {
	if s.err != nil {
		return
	}
	s.err = err
	s.id.disconnect() // moves the QP to error and tells the peer
	s.q.toError()
}

// events looks at the rdma_cm channel without waiting.
func (s *Sender) events() {
	for {
		e, ok, err := s.ch.poll()
		if err != nil {
			s.fail(fmt.Errorf("%w: %v", ErrDisconnected, err))
			return
		}
		if !ok {
			return
		}
		switch e.typ {
		case evDisconnected:
			s.fail(fmt.Errorf("%w: the sink closed the connection", ErrDisconnected))
		case evDeviceRemoval:
			s.fail(fmt.Errorf("%w: device removed", ErrDisconnected))
		}
	}
}

// reapCredits takes the sink's credit updates and reposts their receives.
func (s *Sender) reapCredits() {
	for {
		k := pollCQ(s.q.rcq, s.wcs[:])
		for _, w := range s.wcs[:k] {
			switch w.status {
			case wcSuccess:
				s.credits += int(w.imm)
			case wcFlushErr:
				s.fail(fmt.Errorf("%w: connection flushed", ErrDisconnected))
			default:
				s.fail(fmt.Errorf("%w: credit receive: %s", ErrDisconnected, w.statusString()))
			}
		}
		if k > 0 && s.err == nil {
			if err := s.q.postRecvs(mr{}, 0, s.zeros[:k]); err != nil {
				s.fail(fmt.Errorf("%w: repost credit receive: %v", ErrDisconnected, err))
			}
		}
		if k < len(s.wcs) {
			return
		}
	}
}

// Send queues up to len(descs) descriptors, whole packets only, and
// returns how many it queued: descs[:n] now belong to the device until
// Completed hands them back; descs[n:] are still the caller's (no credit or
// send queue space: retry or drop them). A packet of several segments (Desc
// flagged More, then its last one) is one message: one credit, one send.
// A packet longer than MaxMessage, with more segments than
// DialOptions.MaxSegments, outside the region or cut off by the end of
// descs stops the burst there with ErrTooLarge (the ones before it are
// queued). After a connection error Send queues nothing and returns the
// error.
func (s *Sender) Send(descs []Desc) (int, error) {
	if s.closed {
		return 0, ErrClosed
	}
	if s.err != nil {
		return 0, s.err
	}
	if s.credits < len(descs) {
		// Only when short (len(descs) is at least the packets): credit
		// updates wait harmlessly in their receive queue (at most 32 of
		// them, see creditRecvs), and this saves a completion queue poll
		// per burst.
		s.reapCredits()
		if s.err != nil {
			return 0, s.err
		}
	}
	room := len(s.ring) - int(s.next-s.handed)
	n, pkts, bytes, bad := 0, 0, uint64(0), error(nil)
	for n < len(descs) && pkts < s.credits {
		end, size, err := s.packet(descs, n)
		if err != nil {
			bad = err
			break
		}
		if end > room {
			break
		}
		n, bytes = end, bytes+size
		pkts++
	}
	if n == 0 {
		if bad == nil && len(descs) > 0 {
			if s.credits == 0 {
				s.stats.Stalls++
			} else {
				s.stats.QueueFull++
			}
			if s.idle++; s.idle%eventEvery == 0 {
				s.events()
				if s.err != nil {
					return 0, s.err
				}
			}
		}
		return 0, bad
	}
	s.idle = 0
	for i := 0; i < n; i++ {
		s.ring[(s.next+uint64(i))&s.mask] = descs[i]
	}
	posted, err := s.q.postSends(s.region, descs[:n], s.next, s.opts.Chain, s.opts.SignalEvery)
	if posted == n {
		s.next += uint64(n)
		s.credits -= pkts
		s.stats.Sent += uint64(pkts)
		s.stats.Segments += uint64(n)
		s.stats.Bytes += bytes
		return n, bad
	}
	// Partial post (the device refused a request): what was posted
	// completes or is flushed by fail, and is handed back by Completed.
	for _, d := range descs[:posted] {
		s.next++
		s.stats.Segments++
		s.stats.Bytes += uint64(d.Len)
		if d.Flags&More == 0 {
			s.credits--
			s.stats.Sent++
		}
	}
	if err == nil {
		err = errors.New("ibv_post_send: partial post")
	}
	s.fail(fmt.Errorf("%w: %v", ErrDisconnected, err))
	return posted, s.err
}

// packet checks the packet that starts at descs[i] and returns the index
// after its last Desc and its length.
func (s *Sender) packet(descs []Desc, i int) (end int, size uint64, err error) {
	for j := i; j < len(descs); j++ {
		d := descs[j]
		size += uint64(d.Len)
		if d.Addr+uint64(d.Len) > s.size || d.Addr+uint64(d.Len) < d.Addr {
			return 0, 0, fmt.Errorf("%w: packet at %d: segment of %d bytes at offset %d lies outside the region (%d bytes)",
				ErrTooLarge, i, d.Len, d.Addr, s.size)
		}
		if j-i >= s.maxSegs {
			return 0, 0, fmt.Errorf("%w: packet at %d has more than %d segments (DialOptions.MaxSegments)", ErrTooLarge, i, s.maxSegs)
		}
		if d.Flags&More == 0 {
			if size > uint64(s.maxMsg) {
				return 0, 0, fmt.Errorf("%w: packet at %d: %d bytes, the sink's buffers hold %d: raise its buffer size (xdpipe rdma-sink --buffer-size)",
					ErrTooLarge, i, size, s.maxMsg)
			}
			return j + 1, size, nil
		}
	}
	return 0, 0, fmt.Errorf("%w: packet at %d: its last segment (flagged More) ends the burst", ErrTooLarge, i)
}

// Completed hands back, in order, the descriptors whose sends have
// completed, every segment of a packet: done[:n] are the caller's again
// (return their frames to the free stack). When done is short a packet's
// descriptors may span two calls. After a connection error it keeps handing back every
// in-flight descriptor (their sends were flushed) and returns the error with
// them; call it until InFlight is 0 to get every frame back (Drain does).
func (s *Sender) Completed(done []Desc) (int, error) {
	if s.closed {
		return 0, ErrClosed
	}
	if s.next != s.handed { // nothing in flight: no completions to poll
		// A completion's wr_id is its packet's last sequence, and an RC
		// send queue completes in order: it retires everything before.
		for {
			k := pollCQ(s.q.scq, s.wcs[:])
			for _, w := range s.wcs[:k] {
				if w.status != wcSuccess && s.err == nil {
					s.fail(fmt.Errorf("%w: send completion: %s", ErrDisconnected, w.statusString()))
				}
				if w.wrID+1 > s.done {
					s.done = w.wrID + 1
				}
			}
			if k < len(s.wcs) {
				break
			}
		}
	}
	if s.err != nil {
		s.done = s.next // flushed: the device no longer reads these frames
	}
	n := 0
	for s.handed < s.done && n < len(done) {
		done[n] = s.ring[s.handed&s.mask]
		s.handed++
		n++
	}
	s.stats.Completed += uint64(n)
	if n == 0 && s.err == nil && s.next != s.handed {
		if s.idle++; s.idle%eventEvery == 0 {
			s.events()
		}
	}
	return n, s.err
}

// Drain waits until every in-flight send has completed, passing the
// completed descriptors to done (if not nil) as they come back. It returns
// the connection's error, if any, after every descriptor was handed back,
// and ErrTimeout or ctx's error if ctx ends first (a dead peer is detected
// within the RC retry budget, about 2s by default, so Drain ends).
func (s *Sender) Drain(ctx context.Context, done func([]Desc)) error {
	buf := make([]Desc, 256)
	deadline := time.Now().Add(s.opts.Timeout + 30*time.Second)
	for s.InFlight() > 0 {
		n, err := s.Completed(buf)
		if n > 0 && done != nil {
			done(buf[:n])
		}
		if err != nil && s.InFlight() == 0 {
			return err
		}
		if n == 0 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("drain: %w with %d sends in flight", ErrTimeout, s.InFlight())
			}
			s.reapCredits()
			time.Sleep(20 * time.Microsecond)
		}
	}
	return s.err
}

// Close ends the stream and releases the queue pair, completion queues,
// memory registration and the rdma_cm identifier. After Drain (nothing in
// flight) it first tells the sink the stream ended cleanly (a FIN message:
// the sink's Receive then returns io.EOF); sends still in flight are
// abandoned, and the sink then sees ErrDisconnected. It does not wait for
// the peer's disconnect reply. Idempotent.
func (s *Sender) Close() error {
	if s == nil || s.closed {
		return nil
	}
	s.closed = true
	if s.err == nil {
		s.sendFin()
		// Sends that were handed back have been acknowledged by the sink,
		// so nothing is lost by not waiting for its disconnect reply.
		s.id.disconnect()
	}
	s.undo.Run()
	return nil
}

// finImm is the immediate of the zero-length SEND that ends a stream
// cleanly (data SENDs carry no immediate).
const finImm = 0xFFFFFFFF

// sendFin tells the sink the stream ended cleanly, if nothing is in flight
// (Drain was called): a zero-length SEND-with-immediate finImm, on the
// credit kept in reserve for it. It waits at most 2s for the acknowledgement.
func (s *Sender) sendFin() {
	if s.InFlight() != 0 {
		return // not drained: the sink will see an unclean end, rightly
	}
	deadline := time.Now().Add(2 * time.Second)
	if s.q.postImm(finImm, s.next) != nil {
		return
	}
	for time.Now().Before(deadline) {
		k := pollCQ(s.q.scq, s.wcs[:])
		for _, w := range s.wcs[:k] {
			if w.wrID == s.next {
				return
			}
		}
		if k == 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// Listener accepts connections from Senders. Close may be called while
// another goroutine waits in Accept (which then returns ErrClosed).
type Listener struct {
	opts    ListenOptions
	ch      *channel
	id      cmID
	addr    string
	mu      sync.Mutex
	closed  bool
	closing atomic.Bool
	active  sync.WaitGroup // Accept calls in progress
}

// Listen binds addr (host:port; an empty host is every address, port 0
// picks one) and listens for connections. A port in use is an error
// wrapping syscall.EADDRINUSE.
func Listen(addr string, opts ListenOptions) (_ *Listener, err error) {
	opts = opts.withDefaults()
	ip, port, err := splitAddr(context.Background(), addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if err := requireDevice(); err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	l := &Listener{opts: opts}
	var undo undo.Stack
	defer func() {
		if err != nil {
			undo.Run()
		}
	}()
	if l.ch, err = newChannel(); err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	undo.Push(l.ch.close)
	if l.id, err = createID(l.ch); err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	undo.Push(l.id.destroy)
	if err := l.id.bind(ip, port); err != nil {
		return nil, fmt.Errorf("listen %s: rdma_bind_addr: %w", addr, err)
	}
	if err := l.id.listen(opts.Backlog); err != nil {
		return nil, fmt.Errorf("listen %s: rdma_listen: %w", addr, err)
	}
	host := ""
	if ip != nil {
		host = ip.String()
	}
	l.addr = net.JoinHostPort(host, strconv.Itoa(l.id.localPort()))
	return l, nil
}

// Addr is the bound address (with the port picked, if port 0 was asked).
func (l *Listener) Addr() string { return l.addr }

// Accept waits for the next connection request, sets up its queue pair and
// receive buffers and accepts it. Requests that ListenOptions.Accept refuses
// (or with bad private data, or from a sender announcing packets longer than
// BufferSize) are rejected, with the reason, and Accept keeps waiting. It
// returns ctx's error when ctx ends.
func (l *Listener) Accept(ctx context.Context) (*Receiver, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	l.active.Add(1)
	l.mu.Unlock()
	defer l.active.Done()
	for {
		if l.closing.Load() {
			return nil, ErrClosed
		}
		e, err := l.ch.wait(ctx, time.Now().Add(200*time.Millisecond))
		if errors.Is(err, ErrTimeout) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("accept: %w", err)
		}
		if e.typ != evConnectRequest {
			continue
		}
		child := cmID{e.id}
		if err := checkHdr(e.priv); err != nil {
			rejectWith(child, err.Error())
			continue
		}
		remote := child.peerAddr()
		if len(e.priv) >= 12 {
			if ask := binary.BigEndian.Uint32(e.priv[8:]); ask > uint32(l.opts.BufferSize) {
				rejectWith(child, fmt.Sprintf("receive buffers hold %d bytes, sender sends up to %d: raise --buffer-size", l.opts.BufferSize, ask))
				continue
			}
		}
		if l.opts.Accept != nil {
			if err := l.opts.Accept(remote); err != nil {
				rejectWith(child, err.Error())
				continue
			}
		}
		r, err := newReceiver(ctx, child, remote, l.opts)
		if err != nil { // newReceiver rejected and destroyed child
			return nil, fmt.Errorf("accept %s: %w", remote, err)
		}
		return r, nil
	}
}

func rejectWith(id cmID, reason string) {
	b := make([]byte, hdrLen, hdrLen+100)
	putHdr(b)
	if len(reason) > 100 {
		reason = reason[:100]
	}
	b = append(b, reason...)
	id.reject(b)
	id.destroy()
}

// Close stops listening, after any Accept in progress has returned (within
// 200ms). Accepted Receivers stay open. Idempotent.
func (l *Listener) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.closing.Store(true)
	l.mu.Unlock()
	l.active.Wait()
	l.id.destroy()
	l.ch.close()
	return nil
}

// Receiver is the sink side of one connection. It belongs to one goroutine.
type Receiver struct {
	opts       ListenOptions
	ch         *channel
	id         cmID
	q          *queues
	bufs       []byte
	m          mr
	remote     string
	held       []uint32 // buffers handed out by the last Receive
	pending    int      // reposted buffers not yet returned as credits
	threshold  int
	creditsOut int // credit sends not yet completed
	wcs        [64]wc
	idle       int
	fin        bool // the sender closed cleanly (its FIN arrived)
	gone       bool // the connection went down
	err        error
	closed     bool
	stats      ReceiverStats
	undo       undo.Stack
}

func newReceiver(ctx context.Context, id cmID, remote string, opts ListenOptions) (_ *Receiver, err error) {
	r := &Receiver{opts: opts, id: id, remote: remote, threshold: max(1, opts.Buffers/16)}
	deadline := time.Now().Add(opts.Timeout)
	defer func() {
		if err != nil {
			r.undo.Run()
		}
	}()
	if r.ch, err = newChannel(); err != nil {
		rejectWith(id, "sink failed to set up the connection")
		return nil, err
	}
	// Undone in reverse: queues (QP before the id), then the id, then its
	// channel.
	r.undo.Push(r.ch.close)
	accepted := false
	r.undo.Push(func() {
		if accepted || r.err != nil {
			id.destroy()
		} else {
			rejectWith(id, "sink failed to set up the connection")
		}
	})
	if err := id.migrate(r.ch); err != nil {
		return nil, err
	}
	if r.q, err = newQueues(id, creditSQDepth, opts.Buffers, 1); err != nil {
		return nil, err
	}
	r.undo.Push(r.q.close)
	size := opts.Buffers * opts.BufferSize
	if r.bufs, err = unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("mmap %d receive buffers: %w", opts.Buffers, err)
	}
	r.undo.Push(func() {
		r.q.close() // deregister before unmapping
		unix.Munmap(r.bufs)
	})
	if r.m, err = r.q.register(r.bufs, accessLocalWrite); err != nil {
		return nil, err
	}
	all := make([]uint32, opts.Buffers)
	for i := range all {
		all[i] = uint32(i)
	}
	if err := r.q.postRecvs(r.m, opts.BufferSize, all); err != nil {
		return nil, err
	}
	r.held = make([]uint32, 0, opts.Buffers)
	priv := make([]byte, 16)
	putHdr(priv)
	binary.BigEndian.PutUint32(priv[8:], uint32(opts.Buffers))
	binary.BigEndian.PutUint32(priv[12:], uint32(opts.BufferSize))
	if err := id.connect(priv, true); err != nil {
		return nil, fmt.Errorf("rdma_accept: %w", err)
	}
	accepted = true
	if _, err := expect(ctx, r.ch, deadline, evEstablished, "establish"); err != nil {
		return nil, err
	}
	return r, nil
}

// Remote is the sender's address.
func (r *Receiver) Remote() string { return r.remote }

// Stats returns the receiver's counters.
func (r *Receiver) Stats() ReceiverStats { return r.stats }

func (r *Receiver) fail(err error) {
	if r.err == nil {
		r.err = err
		r.id.disconnect()
	}
}

// Receive returns up to len(pkts) received packets as slices of the receive
// buffers, valid until the next Receive or Close (which repost them). It
// returns 0 and nil when nothing has arrived; io.EOF once the sender has
// closed the connection cleanly (Drain, then Close) and everything before
// was returned; an error wrapping ErrDisconnected if the sender went away
// without closing (killed, crashed, closed with sends in flight).
func (r *Receiver) Receive(pkts [][]byte) (int, error) {
	if r.closed {
		return 0, ErrClosed
	}
	if r.err != nil {
		return 0, r.err
	}
	size := r.opts.BufferSize
	live := !r.fin && !r.gone
	if len(r.held) > 0 && live {
		if err := r.q.postRecvs(r.m, size, r.held); err != nil {
			r.fail(fmt.Errorf("%w: repost receive: %v", ErrDisconnected, err))
			return 0, r.err
		}
		r.pending += len(r.held)
	}
	r.held = r.held[:0]
	// Completions of credit updates free their send queue slots.
	for k := pollCQ(r.q.scq, r.wcs[:]); k > 0; k = pollCQ(r.q.scq, r.wcs[:]) {
		r.creditsOut -= k
		for _, w := range r.wcs[:k] {
			if w.status != wcSuccess && w.status != wcFlushErr && live {
				r.fail(fmt.Errorf("%w: credit update: %s", ErrDisconnected, w.statusString()))
				return 0, r.err
			}
		}
	}
	if r.pending >= r.threshold && r.creditsOut < creditSQDepth && live {
		if err := r.q.postImm(uint32(r.pending), 0); err != nil {
			r.fail(fmt.Errorf("%w: %v", ErrDisconnected, err))
			return 0, r.err
		}
		r.creditsOut++
		r.stats.CreditMessages++
		r.stats.CreditsReturned += uint64(r.pending)
		r.pending = 0
	}
	n := 0
	for n < len(pkts) {
		want := min(len(r.wcs), len(pkts)-n)
		k := pollCQ(r.q.rcq, r.wcs[:want])
		for _, w := range r.wcs[:k] {
			switch w.status {
			case wcSuccess:
				if w.imm == finImm { // data never carries an immediate
					r.fin = true
					r.held = append(r.held, uint32(w.wrID))
					continue
				}
				off := int(w.wrID) * size
				pkts[n] = r.bufs[off : off+int(w.byteLen) : off+size]
				r.held = append(r.held, uint32(w.wrID))
				r.stats.Bytes += uint64(w.byteLen)
				n++
			case wcFlushErr:
				r.gone = true // the connection is going down; the rest are flushed buffers
			default:
				r.fail(fmt.Errorf("%w: receive completion: %s", ErrDisconnected, w.statusString()))
			}
		}
		if k < want {
			break
		}
	}
	r.stats.Received += uint64(n)
	if n > 0 {
		r.idle = 0
		return n, nil
	}
	if r.err != nil {
		return 0, r.err
	}
	if r.fin {
		return 0, io.EOF
	}
	if r.gone {
		r.err = fmt.Errorf("%w: the sender went away without closing", ErrDisconnected)
		return 0, r.err
	}
	if r.idle++; r.idle%eventEvery == 0 {
		for {
			e, ok, err := r.ch.poll()
			if err != nil || !ok {
				break
			}
			if e.typ == evDisconnected || e.typ == evDeviceRemoval {
				// Everything the sender saw acknowledged, its FIN
				// included, is in the completion queue already: the
				// next Receive drains it, then reports EOF after a FIN
				// and ErrDisconnected without one.
				r.gone = true
			}
		}
	}
	return 0, nil
}

// Close disconnects and releases the queue pair, buffers and registration.
// Packets returned by Receive are invalid afterwards. Idempotent.
func (r *Receiver) Close() error {
	if r == nil || r.closed {
		return nil
	}
	r.closed = true
	// Also after the peer's disconnect request: this sends the reply.
	r.id.disconnect()
	r.undo.Run()
	return nil
}

// withDefaults fills in the zero fields of o.
func (o DialOptions) withDefaults() DialOptions {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.SendQueue <= 0 {
		o.SendQueue = 512
	}
	o.MaxSegments = max(o.MaxSegments, 1)
	// Room for SendQueue packets of MaxSegments: the ring and the queue
	// count segments (work requests never outnumber them).
	q := 1
	for q < o.SendQueue*o.MaxSegments {
		q <<= 1
	}
	o.SendQueue = q
	if o.Chain <= 0 || o.Chain > 64 {
		o.Chain = 64
	}
	if o.SignalEvery <= 0 {
		o.SignalEvery = max(1, o.SendQueue/2)
	}
	if o.AckTimeout <= 0 || o.AckTimeout > 31 {
		o.AckTimeout = 16
	}
	return o
}

func (o ListenOptions) withDefaults() ListenOptions {
	if o.Buffers <= 0 {
		o.Buffers = 512
	}
	o.Buffers = max(o.Buffers, 2) // one credit is the sender's reserve for its FIN
	if o.BufferSize <= 0 {
		o.BufferSize = 2048
	}
	if o.Backlog <= 0 {
		o.Backlog = 16
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	return o
}
