package dataplane

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/rdma"
	"github.com/xdpipe/xdpipe/xsk"
)

// shipper is what an rdmaPort needs of an RDMA connection; *rdma.Sender is
// one, and tests use a fake.
type shipper interface {
	// Send posts up to len(descs) packets and returns how many it took.
	Send(descs []rdma.Desc) (int, error)
	// Completed hands back the descriptors of finished sends.
	Completed(done []rdma.Desc) (int, error)
}

// rdmaConn is a daemon's RDMA connection (*rdma.Sender).
type rdmaConn interface {
	shipper
	Close() error
}

var _ rdmaConn = (*rdma.Sender)(nil)

// rdmaPort is a worker output port that ships frames straight from the
// UMEM to an RDMA sink (the `rdma` stage forwards to it). A frame leaves
// the worker when Transmit takes it and returns to the UMEM free stack only
// when Complete sees its send finished, so frame accounting holds.
//
// A multi-buffer packet (segments chained with XDP_PKT_CONTD) ships as one
// RDMA message (rdma.More chains its Desc); the port takes and sends
// packets whole, and hands back every segment's frame.
//
// The sink grants credits (receive buffers); when a burst finds them used
// up, which a sink that falls behind for a moment causes, the packets wait
// in a backlog, oldest first, and go out as credits come back (on the
// worker's next Transmit or Complete). Only what finds the backlog full
// stays the worker's, which counts and frees it as it does for a full TX
// ring. One worker only, like the rest of its ports.
type rdmaPort struct {
	s    shipper
	mem  pipeline.Memory
	log  *slog.Logger
	send []rdma.Desc
	done []rdma.Desc
	free []uint64
	// backlog holds frames waiting for credits, whole packets:
	// backlog[head:head+queued], moved to the front when the end is
	// reached, so Send always sees whole packets.
	backlog      []rdma.Desc
	head, queued int
	// Errors counts failed Send and Completed calls; the first is logged.
	Errors atomic.Uint64
	// TooLarge counts packets Send refused; the first is logged.
	TooLarge atomic.Uint64
	// Dropped counts frames freed unsent: backlogged when the connection
	// failed, or of a packet Send refused (rdma.ErrTooLarge: longer than
	// the sink's buffers). Complete returns them to the worker like
	// finished sends.
	Dropped atomic.Uint64
	// refused counts frames of refused packets not yet returned by
	// Complete.
	refused int
	failed  bool
}

var _ pipeline.Port = (*rdmaPort)(nil)

// newRDMAPort ships through s, returning completed frames to mem; batch is
// the most descriptors moved per call, backlog the most frames that wait
// for credits.
func newRDMAPort(s shipper, mem pipeline.Memory, batch, backlog int, log *slog.Logger) *rdmaPort {
	return &rdmaPort{
		s: s, mem: mem, log: log,
		send:    make([]rdma.Desc, batch),
		done:    make([]rdma.Desc, batch),
		free:    make([]uint64, max(batch, backlog)),
		backlog: make([]rdma.Desc, backlog),
	}
}

func (p *rdmaPort) fail(what string, err error) {
	p.failed = true
	if p.Errors.Add(1) == 1 {
		p.log.Error("rdma port: "+what+" failed; frames it does not take are counted as TX drops", "err", err)
	}
}

// Transmit takes up to len(descs) frames, whole packets, sending what the
// credits allow and queueing the rest while the backlog has room, and
// returns how many it took. Frames already waiting go first; Transmit(nil)
// only sends those.
func (p *rdmaPort) Transmit(descs []pipeline.Desc) int {
	if !p.flushBacklog() {
		return 0
	}
	total := 0
	for p.queued == 0 && total < len(descs) {
		batch := toRDMA(p.send, descs[total:])
		if len(batch) == 0 {
			break // a packet longer than the send buffer, which dialRDMA sizes for the longest
		}
		k, ok := p.ship(batch)
		total += k
		if !ok {
			return total
		}
		if k < len(batch) {
			break // out of credits: the rest wait
		}
	}
	for total < len(descs) {
		end, _ := xsk.PacketEnd(descs, total) // the worker transmits whole packets
		if p.head+p.queued+end-total > len(p.backlog) {
			copy(p.backlog, p.backlog[p.head:p.head+p.queued])
			p.head = 0
			if p.queued+end-total > len(p.backlog) {
				break // full: the worker drops the rest
			}
		}
		toRDMA(p.backlog[p.head+p.queued:], descs[total:end])
		p.queued += end - total
		total = end
	}
	return total
}

// flushBacklog sends waiting frames, oldest first, as far as the credits
// go. It reports false if the connection has failed.
func (p *rdmaPort) flushBacklog() bool {
	if p.queued > 0 && !p.failed {
		k, _ := p.ship(p.backlog[p.head : p.head+p.queued])
		p.head += k
		p.queued -= k
		if p.queued == 0 {
			p.head = 0
		}
	}
	return !p.failed
}

// ship sends batch (whole packets) as far as the credits go and returns
// how many descriptors it took, false if the connection failed. A packet
// Send refuses (rdma.ErrTooLarge) is one packet's problem, not the
// connection's: its frames are freed and counted in Dropped, and the rest
// of the batch goes on.
func (p *rdmaPort) ship(batch []rdma.Desc) (int, bool) {
	taken := 0
	for taken < len(batch) {
		k, err := p.s.Send(batch[taken:])
		taken += k
		if err == nil {
			return taken, true // all, or out of credits
		}
		if !errors.Is(err, rdma.ErrTooLarge) {
			p.fail("send", err)
			return taken, false
		}
		end, _ := xsk.PacketEnd(batch, taken) // the refused packet, or what the batch holds of it
		for i, d := range batch[taken:end] {
			p.free[i] = d.Addr
		}
		p.mem.Free(p.free[:end-taken])
		p.Dropped.Add(uint64(end - taken))
		p.refused += end - taken
		if p.TooLarge.Add(1) == 1 {
			p.log.Error("rdma port: a packet the sink cannot take is dropped (this and later ones, counted)", "err", err)
		}
		taken = end
	}
	return taken, true
}

// dropBacklog frees the waiting frames (the connection failed: they will
// never be sent) and returns how many.
func (p *rdmaPort) dropBacklog() int {
	n := p.queued
	for i, d := range p.backlog[p.head : p.head+n] {
		p.free[i] = d.Addr
	}
	if n > 0 {
		p.mem.Free(p.free[:n])
		p.Dropped.Add(uint64(n))
	}
	p.head, p.queued = 0, 0
	return n
}

// toRDMA converts the whole packets of src that fit in dst and returns
// dst's filled part. An xsk.Desc address is the offset into the UMEM
// region, which is what rdma.Desc wants; XDP_PKT_CONTD becomes rdma.More.
func toRDMA(dst []rdma.Desc, src []pipeline.Desc) []rdma.Desc {
	n := min(len(dst), len(src))
	if n < len(src) {
		n = xsk.WholePackets(src[:n]) // do not cut the packet that did not fit
	}
	for i := range n {
		dst[i] = rdma.Desc{Addr: src[i].Addr, Len: src[i].Len}
		if src[i].Continues() {
			dst[i].Flags = rdma.More
		}
	}
	return dst[:n]
}

// Complete returns the frames of finished sends to the free stack, then
// sends waiting frames with the credits that came back. After a failure it
// also frees the waiting frames (Dropped) and counts them among those it
// returns.
func (p *rdmaPort) Complete() int {
	total := p.reap() + p.refused
	p.refused = 0
	if !p.flushBacklog() {
		total += p.dropBacklog()
	}
	return total
}

// reap returns the frames of finished sends to the free stack.
func (p *rdmaPort) reap() int {
	total := 0
	for {
		n, err := p.s.Completed(p.done)
		for i := range n {
			p.free[i] = p.done[i].Addr
		}
		if n > 0 {
			p.mem.Free(p.free[:n])
			total += n
		}
		if err != nil {
			p.fail("completion", err)
			return total
		}
		if n < len(p.done) {
			return total
		}
	}
}

// Receive, Refill and Wait: an RDMA output receives nothing.
func (p *rdmaPort) Receive([]pipeline.Desc) int { return 0 }
func (p *rdmaPort) Refill() int                 { return 0 }
func (p *rdmaPort) Wait(d time.Duration) error  { return nil }
