package dataplane

import (
	"fmt"
	"net"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/netdev"
	"github.com/xdpipe/xdpipe/xsk"
)

// Check validates o as Open does, with the same code (resolve, the
// stages' constructors), and attaches, allocates and creates nothing: the
// interfaces and queues (and that no other instance holds them), the
// CPUs, the rules and pin directory, the bind mode against the driver,
// the stages' options, capture paths and collectors' routes, the memory
// the configuration costs. It is `xdpipe run --check`, as `nginx -t`: a
// configuration too large for the machine is refused here, where trying
// it costs nothing. It returns the memory the configuration will allocate
// (Options.MemoryCosts), for sizing a service's or a container's memory
// limit.
func Check(o Options) (Memory, error) {
	p, err := resolve(o, kernel{})
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
	costs, err := p.opts.MemoryCosts(len(p.ifaces), len(p.queues), p.possibleCPUs)
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

// checkPort refuses what OpenPort would refuse of o on ifc, with UMEM
// frames of frameSize bytes, before it attaches or maps anything, and
// makes nothing: the interface held by another instance, with rules a pin
// directory that cannot hold pins, a zero-copy bind the driver cannot do.
func checkPort(ifc *net.Interface, o PortOptions, frameSize uint32) error {
	if err := bpf.CheckClaim(ifc.Index, bpf.ClaimOptions{Name: ifc.Name, PinDir: o.PinDir}); err != nil {
		return err
	}
	if o.Rules != nil && o.PinDir != "" {
		if err := bpf.CheckPinDir(o.PinDir); err != nil {
			return err
		}
	}
	if o.Socket.Bind == xsk.BindZeroCopy {
		dev, _ := netdev.Describe(ifc.Index)
		if why, fix := SocketDriver(dev).ZeroCopyBlocker(ifc.MTU, frameSize); why != "" {
			return fmt.Errorf("%s: zero-copy: %s; %s", ifc.Name, why, fix)
		}
	}
	return nil
}
