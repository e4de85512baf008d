//go:build rdma

package rdma

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/xdpipe/xdpipe/internal/undo"
)

// Sender ships packets from a registered region to one sink over an RC
// queue pair. It belongs to one goroutine.
type Sender struct {
	opts    DialOptions
	ch      *channel
	id      cmID
	q       *queues
	region  mr
	remote  string
	pathMTU int
	w       window // the descriptors in flight and the credits
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
	s := &Sender{opts: opts, remote: addr}
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
	if err := s.id.connect(connectData(uint32(opts.MaxMessage)), false); err != nil {
		return nil, fmt.Errorf("dial %s: rdma_connect: %w", addr, err)
	}
	e, err := expect(ctx, s.ch, deadline, evEstablished, "connect")
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	buffers, maxMsg, err := parseAccept(e.priv)
	if err != nil {
		s.id.disconnect()
		return nil, fmt.Errorf("dial %s: %w: accept: %v", addr, ErrRefused, err)
	}
	// One credit stays in reserve for the FIN that ends a clean stream.
	if buffers < 2 {
		s.id.disconnect()
		return nil, fmt.Errorf("dial %s: %w: sink offers %d buffers, need 2", addr, ErrRefused, buffers)
	}
	s.w = newWindow(opts.SendQueue, int(buffers)-1, uint64(len(region)), opts.MaxSegments, maxMsg)
	s.pathMTU = s.q.pathMTU()
	s.started = time.Now()
	return s, nil
}

// MaxMessage is the largest packet the sink accepts (its buffer size).
func (s *Sender) MaxMessage() int { return int(s.w.maxMsg) }

// PathMTU is the RoCE path MTU of the connection in bytes; longer messages
// are segmented by the RC transport.
func (s *Sender) PathMTU() int { return s.pathMTU }

// InFlight is the number of descriptors (segments) given to Send not yet
// handed back by Completed.
func (s *Sender) InFlight() int { return s.w.inFlight() }

// Stats returns the sender's counters.
func (s *Sender) Stats() SenderStats {
	st := s.stats
	st.Credits = s.w.credits
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
		for _, c := range s.wcs[:k] {
			switch c.status {
			case wcSuccess:
				s.w.credits += int(c.imm)
			case wcFlushErr:
				s.fail(fmt.Errorf("%w: connection flushed", ErrDisconnected))
			default:
				s.fail(fmt.Errorf("%w: credit receive: %s", ErrDisconnected, c.statusString()))
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
	if s.w.credits < len(descs) {
		// Only when short (len(descs) is at least the packets): credit
		// updates wait harmlessly in their receive queue (at most 32 of
		// them, see creditRecvs), and this saves a completion queue poll
		// per burst.
		s.reapCredits()
		if s.err != nil {
			return 0, s.err
		}
	}
	n, bad := s.w.fit(descs)
	if n == 0 {
		if bad == nil && len(descs) > 0 {
			if s.w.credits == 0 {
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
	s.w.track(descs[:n])
	posted, err := s.q.postSends(s.region, descs[:n], s.w.next, s.opts.Chain, s.opts.SignalEvery)
	pkts, bytes := s.w.posted(descs[:posted])
	s.stats.Sent += uint64(pkts)
	s.stats.Segments += uint64(posted)
	s.stats.Bytes += bytes
	if posted == n {
		return n, bad
	}
	// A partial post (the device refused a request): what was posted
	// completes or is flushed by fail, and is handed back by Completed.
	if err == nil {
		err = errors.New("ibv_post_send: partial post")
	}
	s.fail(fmt.Errorf("%w: %v", ErrDisconnected, err))
	return posted, s.err
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
	if s.w.inFlight() > 0 { // with nothing in flight, no completion to poll
		for {
			k := pollCQ(s.q.scq, s.wcs[:])
			for _, c := range s.wcs[:k] {
				if c.status != wcSuccess && s.err == nil {
					s.fail(fmt.Errorf("%w: send completion: %s", ErrDisconnected, c.statusString()))
				}
				s.w.completed(c.wrID)
			}
			if k < len(s.wcs) {
				break
			}
		}
	}
	if s.err != nil {
		s.w.flush()
	}
	n := s.w.handBack(done)
	s.stats.Completed += uint64(n)
	if n == 0 && s.err == nil && s.w.inFlight() > 0 {
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

// sendFin tells the sink the stream ended cleanly, if nothing is in flight
// (Drain was called): a zero-length SEND-with-immediate finImm, on the
// credit kept in reserve for it. It waits at most 2s for the acknowledgement.
func (s *Sender) sendFin() {
	if s.InFlight() != 0 {
		return // not drained: the sink will see an unclean end, rightly
	}
	deadline := time.Now().Add(2 * time.Second)
	if s.q.postImm(finImm, s.w.next) != nil {
		return
	}
	for time.Now().Before(deadline) {
		k := pollCQ(s.q.scq, s.wcs[:])
		for _, c := range s.wcs[:k] {
			if c.wrID == s.w.next {
				return
			}
		}
		if k == 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
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
