package dataplane

import (
	"fmt"
	"net"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/netdev"
	"github.com/xdpipe/xdpipe/xsk"
)

// Check validates cfg as Open does, with the same code (resolve, the
// stages' constructors, the metrics address), and attaches, allocates and
// creates nothing: the configuration, the interfaces and queues (and that
// no other instance holds them), the CPUs, the rules and pin directory,
// the bind mode against the driver, the stages' options, capture paths and
// collectors' routes, the memory the configuration costs, the metrics
// address. It is `xdpipe run --check`,
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
	for _, listen := range []func(Config) (net.Listener, error){listenMetrics, listenPprof} {
		ln, err := listen(cfg)
		if err != nil {
			return Memory{}, err
		}
		if ln != nil {
			ln.Close()
		}
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

// listenPprof listens on the pprof address; nil when there is none.
func listenPprof(cfg Config) (net.Listener, error) {
	if cfg.Pprof == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.Pprof)
	if err != nil {
		return nil, fmt.Errorf("pprof address %s: %w", cfg.Pprof, err)
	}
	return ln, nil
}

// listenMetrics listens on the metrics address; nil when it is "off".
func listenMetrics(cfg Config) (net.Listener, error) {
	m := cfg.WithDefaults().Metrics
	if m == "off" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", m)
	if err != nil {
		return nil, fmt.Errorf("metrics address %s: %w (choose another with --metrics, or \"off\")", m, err)
	}
	return ln, nil
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
