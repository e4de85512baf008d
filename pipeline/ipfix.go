package pipeline

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/frame"
	"github.com/xdpipe/xdpipe/internal/ipfix"
	"github.com/xdpipe/xdpipe/internal/monotime"
)

func newIPFIXStage(o *IPFIXOptions, env StageEnv) (Stage, error) {
	opts := *o
	if err := opts.check(); err != nil {
		return nil, err
	}
	addr, err := resolveCollector(opts.Collector)
	if err != nil {
		return nil, err
	}
	if env.CheckOnly {
		// A connected UDP socket sends nothing: it finds the route, or
		// that there is none, as NewIPFIX would.
		fd, _, err := dialCollector(addr)
		if err != nil {
			return nil, err
		}
		return nil, unix.Close(fd)
	}
	return NewIPFIX(opts, addr, uint32(env.Queue), env.Ifindexes)
}

// IPFIX is the ipfix stage: each worker's instance keeps a flow table
// keyed by 5-tuple, VLAN ID and ingress interface, counting packets and
// octets (the IP length, as IANA's octetDeltaCount has it) with the times
// of the first and last packet, and exports the flows as IPFIX (RFC 7011)
// over UDP, one template each for IPv4 and IPv6 flows:
//
//   - a flow idle for IdleTimeout is exported and ends;
//   - a flow going on ActiveTimeout after its record's start is exported
//     with the counts since its previous record, and goes on;
//   - a new flow in a full table exports a flow first (evicting it), so
//     no flow is ever lost from the table;
//   - Close exports every flow (a stop or a reload).
//
// It exports from the worker, but never blocks it: the socket is
// non-blocking and a message that cannot be sent (a collector gone, a full
// socket buffer) is counted in Failed, with its records, and dropped. The
// table is allocated once: Process and Tick allocate nothing. Frames that
// are not IPv4 or IPv6 are not counted. Verdicts are not changed.
//
// Each worker is its own observation domain (its queue number) and
// transport session (its own socket): sequence numbers count the data
// records sent in its messages before each one. A reload's new stage
// continues the session of the one it replaces (Continue), so the
// collector sees one session with no gap. Templates go out at the first
// pass, every 30 s and after a failed send. Messages stay under the
// route's MTU (at most 1500 bytes).
type IPFIX struct {
	opts    IPFIXOptions
	table   *flowTable
	w       *ipfix.Writer
	rec     ipfix.Record
	sess    *ipfixSession
	ifindex []uint32
	active  int64 // timeouts in ns
	idle    int64
	wallOff int64 // Unix ns minus monotime ns

	cursor   uint64 // the expiry sweep's next slot
	step     uint64 // slots a sweep step covers
	nextStep int64
	pending  bool  // the message holds records not sent yet
	tmplTry  int64 // pipeline time from which Tick may send templates alone
	closed   atomic.Bool
	log      *slog.Logger

	// Exported counts records sent, Evicted records exported early
	// because the table was full (also in Exported once sent), Failed
	// records whose message could not be sent; Messages and
	// FailedMessages count the messages sent and not sent (templates
	// alone too).
	Exported, Evicted, Failed, Messages, FailedMessages atomic.Uint64
}

var (
	_ Stage     = (*IPFIX)(nil)
	_ Metered   = (*IPFIX)(nil)
	_ Ticker    = (*IPFIX)(nil)
	_ Continuer = (*IPFIX)(nil)
)

// NewIPFIX checks opts (setting the defaults) and opens the stage's
// socket to the collector; the templates go out at the first Tick. domain is the observation
// domain (the worker's queue) and ifindex maps the worker's port index to
// the interface index exported as ingressInterface.
func NewIPFIX(opts IPFIXOptions, collector *net.UDPAddr, domain uint32, ifindex []uint32) (*IPFIX, error) {
	if err := opts.check(); err != nil {
		return nil, fmt.Errorf("ipfix: %w", err)
	}
	fd, size, err := dialCollector(collector)
	if err != nil {
		return nil, err
	}
	w, err := ipfix.NewWriter(size, domain)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	now := monotime.Now()
	sess := &ipfixSession{fd: fd, refs: 1, collector: collector.String(), domain: domain, size: size}
	sess.lastLog.Store(now - int64(time.Minute))
	s := &IPFIX{opts: opts, table: newFlowTable(opts.MaxFlows), w: w, sess: sess, ifindex: append([]uint32(nil), ifindex...),
		active: int64(opts.ActiveTimeout), idle: int64(opts.IdleTimeout), wallOff: time.Now().UnixNano() - now,
		log: slog.Default().With("stage", "ipfix", "domain", domain)}
	s.step = max(uint64(len(s.table.slots))/ipfixSteps, 1)
	s.nextStep = now + int64(ipfixSweep/ipfixSteps)
	return s, nil
}

// Continue implements Continuer: when old exports to the same collector
// and observation domain, s sends in old's transport session (its socket
// and sequence numbers) instead of opening one of its own. old's flows
// are exported when old is closed.
func (s *IPFIX) Continue(old Stage) {
	o, ok := old.(*IPFIX)
	if !ok || o == s || o.closed.Load() || o.sess == s.sess || o.sess.collector != s.sess.collector ||
		o.sess.domain != s.sess.domain || o.sess.size != s.sess.size {
		return
	}
	o.sess.mu.Lock()
	o.sess.refs++
	o.sess.mu.Unlock()
	_ = s.sess.release()
	s.sess = o.sess
}

// StageName implements Named.
func (*IPFIX) StageName() string { return "ipfix" }

var (
	mIPFIXExported = NewCounterDesc("xdpipe_ipfix_records_exported_total", "IPFIX flow records sent to the collector.")
	mIPFIXEvicted  = NewCounterDesc("xdpipe_ipfix_records_evicted_total", "Flows exported early because the flow table was full.")
	mIPFIXFailed   = NewCounterDesc("xdpipe_ipfix_records_failed_total", "IPFIX flow records lost because their message could not be sent.")
	mIPFIXMessages = NewCounterDesc("xdpipe_ipfix_messages_total", "IPFIX messages sent to the collector.")
	mIPFIXMsgFail  = NewCounterDesc("xdpipe_ipfix_messages_failed_total", "IPFIX messages that could not be sent (templates alone too).")
)

// Counters implements Metered.
func (s *IPFIX) Counters(emit func(d *CounterDesc, v uint64, labels ...string)) {
	emit(mIPFIXExported, s.Exported.Load())
	emit(mIPFIXEvicted, s.Evicted.Load())
	emit(mIPFIXFailed, s.Failed.Load())
	emit(mIPFIXMessages, s.Messages.Load())
	emit(mIPFIXMsgFail, s.FailedMessages.Load())
}

// flowOf fills k with the frame's flow and returns its IP length, or
// false for a frame that is not IP or is malformed.
func (s *IPFIX) flowOf(p *Packet, h *frame.Headers, k *flowKey) (uint64, bool) {
	if frame.Parse(p.Data, h) != frame.ReasonNone || h.Family == 0 {
		return 0, false
	}
	ip := p.Data[h.L3:]
	var n uint64
	if h.Family == 4 {
		n = uint64(binary.BigEndian.Uint16(ip[2:4]))
		if n < uint64(ip[0]&0x0f)*4 {
			n = 0 // a total length shorter than the header: what the frame holds
		}
		s4, d4 := h.Src.As4(), h.Dst.As4()
		k.src = [2]uint64{uint64(binary.BigEndian.Uint32(s4[:])), 0}
		k.dst = [2]uint64{uint64(binary.BigEndian.Uint32(d4[:])), 0}
	} else {
		if pl := binary.BigEndian.Uint16(ip[4:6]); pl != 0 { // 0: a jumbogram, the frame says
			n = frame.IPv6Len + uint64(pl)
		}
		s16, d16 := h.Src.As16(), h.Dst.As16()
		k.src = [2]uint64{binary.BigEndian.Uint64(s16[:8]), binary.BigEndian.Uint64(s16[8:])}
		k.dst = [2]uint64{binary.BigEndian.Uint64(d16[:8]), binary.BigEndian.Uint64(d16[8:])}
	}
	// The IP length, but never more than the frame holds (nor its
	// Ethernet padding): all its segments, for a multi-buffer packet.
	if l3 := uint64(p.Len() - int(h.L3)); n == 0 || n > l3 {
		n = l3
	}
	var vlan uint64
	if h.VLANs > 0 {
		vlan = uint64(h.VLAN & 0x0fff)
	}
	k.meta = uint64(h.SrcPort)<<48 | uint64(h.DstPort)<<32 | uint64(h.Proto)<<24 | vlan<<12 | uint64(p.Port)<<4 | uint64(h.Family)
	return n, true
}

// Process implements Stage: each live IP packet counts in its flow.
func (s *IPFIX) Process(b *Burst) {
	var h frame.Headers
	var k flowKey
	var evicted uint64
	t := s.table
	for i := range b.Pkts {
		p := &b.Pkts[i]
		if p.Verdict == VerdictDrop {
			continue
		}
		n, ok := s.flowOf(p, &h, &k)
		if !ok {
			continue
		}
		f := t.find(&k)
		if f.key.meta == 0 {
			if t.n == t.max {
				s.evict(b.Time)
				evicted++
				f = t.find(&k) // the eviction may have moved entries
			}
			*f = flow{key: k}
			t.n++
		}
		if f.packets == 0 {
			f.first = b.Time
		}
		f.packets++
		f.octets += n
		f.last = b.Time
	}
	if evicted != 0 {
		s.Evicted.Add(evicted)
	}
}

// evict exports (if it counted packets since its last record) and removes
// the next flow of the sweep.
func (s *IPFIX) evict(now int64) {
	t := s.table
	for t.slots[s.cursor].key.meta == 0 {
		s.cursor = (s.cursor + 1) & t.mask
	}
	if f := &t.slots[s.cursor]; f.packets > 0 {
		s.export(f, now)
	}
	t.remove(s.cursor)
}

// Tick implements Ticker: the templates when due (the first pass, every
// 30 s, after a failed send; alone at most once a second, so a collector
// that is gone costs the worker no send per pass), and a step of the
// expiry sweep every ipfixSweep/ipfixSteps, which also sends the records
// waiting in the message.
func (s *IPFIX) Tick(now int64) {
	if !s.pending && now >= s.sess.tmplDue.Load() && now >= s.tmplTry {
		s.tmplTry = now + int64(time.Second)
		s.begin(now)
		s.send(now)
	}
	if now < s.nextStep {
		return
	}
	s.nextStep = now + int64(ipfixSweep/ipfixSteps)
	t := s.table
	for range s.step {
		i := s.cursor
		f := &t.slots[i]
		switch {
		case f.key.meta == 0:
		case now-f.last >= s.idle:
			if f.packets > 0 {
				s.export(f, now)
			}
			t.remove(i)
			continue // slot i now holds the next entry of its chain, or none
		case f.packets > 0 && now-f.first >= s.active:
			s.export(f, now)
			f.packets, f.octets = 0, 0
		}
		s.cursor = (i + 1) & t.mask
	}
	if s.pending {
		s.send(now)
	}
}

// export adds a flow's record to the message, sending the message first
// when it is full.
func (s *IPFIX) export(f *flow, now int64) {
	r := &s.rec
	k := &f.key
	r.V6 = k.meta&0xf == 6
	if r.V6 {
		binary.BigEndian.PutUint64(r.Src[:8], k.src[0])
		binary.BigEndian.PutUint64(r.Src[8:], k.src[1])
		binary.BigEndian.PutUint64(r.Dst[:8], k.dst[0])
		binary.BigEndian.PutUint64(r.Dst[8:], k.dst[1])
	} else {
		binary.BigEndian.PutUint32(r.Src[:4], uint32(k.src[0]))
		binary.BigEndian.PutUint32(r.Dst[:4], uint32(k.dst[0]))
	}
	r.SrcPort, r.DstPort, r.Proto = uint16(k.meta>>48), uint16(k.meta>>32), uint8(k.meta>>24)
	r.VLAN = uint16(k.meta>>12) & 0x0fff
	r.Ingress = 0
	if port := int(k.meta>>4) & 0xff; port < len(s.ifindex) {
		r.Ingress = s.ifindex[port]
	}
	r.Packets, r.Octets = f.packets, f.octets
	r.Start, r.End = uint64((f.first+s.wallOff)/1e6), uint64((f.last+s.wallOff)/1e6)
	if !s.pending {
		s.begin(now)
	}
	if !s.w.Add(r) {
		s.send(now)
		s.begin(now)
		s.w.Add(r) // fits: an empty message holds the templates and a record
	}
	s.pending = true
}

// begin starts a message, with the templates when they are due.
func (s *IPFIX) begin(now int64) {
	s.w.Begin()
	if now >= s.sess.tmplDue.Load() {
		s.w.AddTemplates()
		s.sess.tmplDue.Store(now + int64(s.opts.TemplateRefresh))
	}
}

// send sends the message without blocking: the socket never blocks, and
// the session's lock is held by another sender (a reload's old stage,
// closing) for one send at most. A failed send counts its records in
// Failed, logs at most once a minute, and has the next message carry the
// templates again.
func (s *IPFIX) send(now int64) {
	s.pending = false
	recs := uint32(s.w.Records())
	if err := s.sess.send(s.w, uint32((now+s.wallOff)/1e9)); err != nil {
		s.FailedMessages.Add(1)
		s.Failed.Add(uint64(recs))
		s.sess.tmplDue.Store(now)
		if last := s.sess.lastLog.Load(); now-last >= int64(time.Minute) && s.sess.lastLog.CompareAndSwap(last, now) {
			s.log.Warn("ipfix export failed; records are lost until the collector takes them again",
				"collector", s.opts.Collector, "records", recs, "err", err)
		}
		return
	}
	s.Messages.Add(1)
	if recs != 0 {
		s.Exported.Add(uint64(recs))
	}
}

// Close exports every flow and releases the session (the last stage
// holding it closes the socket). Call it once the stage no longer runs
// (CloseStages after Worker.SetStages, or after the worker stopped).
// Idempotent.
func (s *IPFIX) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	now := monotime.Now()
	t := s.table
	for i := range t.slots {
		if f := &t.slots[i]; f.key.meta != 0 && f.packets > 0 {
			s.export(f, now)
		}
		t.slots[i].key.meta = 0
	}
	t.n = 0
	if s.pending {
		s.send(now)
	}
	return s.sess.release()
}
