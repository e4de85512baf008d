package dataplane

import (
	"fmt"
	"net"

	"github.com/xdpipe/xdpipe/xsk"
)

// Check validates cfg as Open does, and attaches, allocates and creates
// nothing: the configuration, the interfaces and queues, the CPUs, the
// rules, the stages' options and capture paths, the memory the
// configuration costs, the metrics address. It is `xdpipe run --check`,
// as `nginx -t`: a configuration too large for the machine is refused
// here, where trying it costs nothing. It returns the memory the
// configuration will allocate (Config.MemoryCosts), for sizing a service's
// or a container's memory limit.
func Check(cfg Config) (Memory, error) {
	p, err := resolve(cfg, kernel{})
	if err != nil {
		return Memory{}, err
	}
	p.checkOnly = true
	cs, err := buildChains(p)
	if err != nil {
		return Memory{}, err
	}
	if err := cs.close(); err != nil {
		return Memory{}, err
	}
	if m := cfg.WithDefaults().Metrics; m != "off" {
		ln, err := net.Listen("tcp", m)
		if err != nil {
			return Memory{}, fmt.Errorf("metrics address %s: %w (choose another with --metrics, or \"off\")", m, err)
		}
		ln.Close()
	}
	costs, err := p.cfg.MemoryCosts(len(p.ifaces), len(p.queues), p.possibleCPUs)
	if err != nil {
		return Memory{}, err
	}
	var m Memory
	m.Total, m.Locked = xsk.Sum(costs)
	return m, nil
}

// Memory is what a configuration will allocate, in bytes.
type Memory struct {
	// Total is everything: the UMEMs, the sockets' rings (kernel memory,
	// outside any memory cgroup), the steering program's maps (kernel
	// memory, charged to the memory cgroup) and the stages' buffers.
	Total uint64
	// Locked is the UMEMs' part: locked, and charged to the process's
	// memory cgroup.
	Locked uint64
}
