package dataplane

import (
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/xsk"
)

// memoryCosts is what the plan will allocate, worked out from its
// settings: the UMEMs (4x ring frames a socket), every socket's four rings,
// and the stages' buffers (one chain per worker).
func (p *plan) memoryCosts() []xsk.Cost {
	ring := uint64(p.cfg.Ring)
	sockets := uint64(len(p.ifaces)) * uint64(len(p.queues))
	costs := []xsk.Cost{
		xsk.UmemCost("ring", 1, xsk.MulSat(sockets, 4, ring), p.cfg.FrameSize),
		xsk.RingsCost("ring", sockets, ring, ring, 2*ring, 2*ring),
	}
	for _, s := range p.cfg.Stages {
		if c, ok := s.Options.(pipeline.Costly); ok {
			n, setting := c.MemoryCost()
			costs = append(costs, xsk.Cost{Setting: s.where() + " " + setting, Bytes: xsk.MulSat(n, uint64(len(p.queues)))})
		}
	}
	return costs
}
