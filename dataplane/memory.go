package dataplane

import (
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/xsk"
)

// DefaultRing is the RX and TX ring size when Config.Ring is 0.
const DefaultRing = 2048

// MemoryCosts is what the configuration will allocate on ifaces
// interfaces with queues workers, worked out from its settings alone: the
// UMEMs (4x ring frames a socket, locked), every socket's four rings
// (kernel memory), and the stages' buffers (one chain per worker). It is
// what Open and Check hold against the machine's memory, and what sizes a
// container's memory limit (deploy/k8s).
func (c Config) MemoryCosts(ifaces, queues int) []xsk.Cost {
	ring := uint64(c.Ring)
	if ring == 0 {
		ring = DefaultRing
	}
	sockets := uint64(ifaces) * uint64(queues)
	costs := []xsk.Cost{
		xsk.UmemCost("ring", 1, xsk.MulSat(sockets, 4, ring), c.FrameSize),
		xsk.RingsCost("ring", sockets, ring, ring, 2*ring, 2*ring),
	}
	for _, s := range c.Stages {
		if o, ok := s.Options.(pipeline.Costly); ok {
			n, setting := o.MemoryCost()
			costs = append(costs, xsk.Cost{Setting: s.where() + " " + setting, Bytes: xsk.MulSat(n, uint64(queues))})
		}
	}
	return costs
}
