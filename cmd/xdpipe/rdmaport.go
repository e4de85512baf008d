package main

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/rdma"
)

// shipper is what an rdmaPort needs of an RDMA connection; *rdma.Sender is
// one, and tests use a fake.
type shipper interface {
	// Send posts up to len(descs) packets and returns how many it took.
	Send(descs []rdma.Desc) (int, error)
	// Completed hands back the descriptors of finished sends.
	Completed(done []rdma.Desc) (int, error)
}

var _ shipper = (*rdma.Sender)(nil)

// rdmaPort is a worker output port that ships frames straight from the
// UMEM to an RDMA sink (the `rdma` stage forwards to it). A frame leaves
// the worker when Transmit posts it and returns to the UMEM free stack only
// when Complete sees its send finished, so frame accounting holds: frames
// the connection does not take (no credits, or it failed) stay the
// worker's, which counts and frees them as it does for a full TX ring.
// One worker only, like the rest of its ports.
type rdmaPort struct {
	s    shipper
	mem  pipeline.Memory
	log  *slog.Logger
	send []rdma.Desc
	done []rdma.Desc
	free []uint64
	// Errors counts failed Send and Completed calls; the first is logged.
	Errors atomic.Uint64
}

var _ pipeline.Port = (*rdmaPort)(nil)

// newRDMAPort ships through s, returning completed frames to mem; batch is
// the most descriptors moved per call.
func newRDMAPort(s shipper, mem pipeline.Memory, batch int, log *slog.Logger) *rdmaPort {
	return &rdmaPort{
		s: s, mem: mem, log: log,
		send: make([]rdma.Desc, batch),
		done: make([]rdma.Desc, batch),
		free: make([]uint64, batch),
	}
}

func (p *rdmaPort) fail(what string, err error) {
	if p.Errors.Add(1) == 1 {
		p.log.Error("rdma port: "+what+" failed; frames it does not take are counted as TX drops", "err", err)
	}
}

// Transmit posts up to len(descs) frames and returns how many were taken.
func (p *rdmaPort) Transmit(descs []pipeline.Desc) int {
	total := 0
	for total < len(descs) {
		batch := toRDMA(p.send, descs[total:])
		k, err := p.s.Send(batch)
		total += k
		if err != nil {
			p.fail("send", err)
			break
		}
		if k < len(batch) {
			break // out of credits: the rest stay the caller's
		}
	}
	return total
}

// toRDMA converts as many descriptors as fit in dst and returns dst's
// filled part. An xsk.Desc address is the offset into the UMEM region,
// which is what rdma.Desc wants.
func toRDMA(dst []rdma.Desc, src []pipeline.Desc) []rdma.Desc {
	n := min(len(dst), len(src))
	for i := range n {
		dst[i] = rdma.Desc{Addr: src[i].Addr, Len: src[i].Len}
	}
	return dst[:n]
}

// Complete returns the frames of finished sends to the free stack.
func (p *rdmaPort) Complete() int {
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
