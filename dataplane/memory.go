package dataplane

import (
	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/internal/sat"
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/xsk"
)

// DefaultRing is the RX and TX ring size when Options.Ring is 0.
const DefaultRing = 2048

// steeringMaps names the steering program's maps among the costs.
const steeringMaps = "rules (steering maps)"

// MemoryCosts is what the configuration will allocate on ifaces
// interfaces with queues workers on a machine with cpus possible CPUs,
// worked out from its settings alone: the UMEMs (4x ring frames a socket,
// locked), every socket's four rings (kernel memory), the stages' buffers
// (one chain per worker), and with rules the maps of the steering program
// of each interface (kernel memory charged to the process's memory
// cgroup; the per-CPU ones grow with cpus, the possible CPUs of
// /sys/devices/system/cpu/possible). It is what Open and Check hold
// against the machine's memory, and what sizes a container's memory limit
// (deploy/k8s).
func (o Options) MemoryCosts(ifaces, queues, cpus int) ([]xsk.Cost, error) {
	ring := uint64(o.Ring)
	if ring == 0 {
		ring = DefaultRing
	}
	sockets := uint64(ifaces) * uint64(queues)
	costs := []xsk.Cost{
		xsk.UmemCost("ring", 1, sat.Mul(sockets, 4, ring), o.FrameSize),
		xsk.RingsCost("ring", sockets, ring, ring, ring, 2*ring),
	}
	if o.Rules != nil {
		n, err := bpf.SteerMemory(cpus)
		if err != nil {
			return nil, err
		}
		costs = append(costs, xsk.Cost{Setting: steeringMaps, Bytes: sat.Mul(n, uint64(ifaces))})
	}
	return append(costs, o.stageCosts(queues)...), nil
}

// stageCosts is the stages' part of MemoryCosts: their buffers, one chain
// per worker. It is what a reload allocates, while the chains it replaces
// still hold theirs.
func (o Options) stageCosts(queues int) []xsk.Cost {
	var costs []xsk.Cost
	for _, s := range o.Stages {
		if s, _, err := s.resolved(); err == nil {
			if c, ok := s.Options.(pipeline.Costly); ok {
				n, setting := c.MemoryCost()
				costs = append(costs, xsk.Cost{Setting: s.where() + " " + setting, Bytes: sat.Mul(n, uint64(queues))})
			}
		}
	}
	return costs
}
