package dataplane

import (
	"context"
	"fmt"
	"net"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/netdev"
	"github.com/xdpipe/xdpipe/rdma"
	"github.com/xdpipe/xdpipe/xsk"
)

// kernel is the system a daemon runs on outside tests: AF_XDP sockets and
// XDP programs (OpenPort), RDMA verbs.
type kernel struct{}

var _ system = kernel{}

func (kernel) caps(steering bool) error { return CheckCaps(steering) }

func (kernel) iface(name string) (*net.Interface, int, error) { return CheckInterface(name) }

func (kernel) checkPort(ifc *net.Interface, o PortOptions, frameSize uint32) error {
	return checkPort(ifc, o, frameSize)
}

func (kernel) umem(o xsk.UmemOptions) (umem, error) { return xsk.NewUmem(o) }

func (kernel) memoryLimits() (xsk.MemoryLimits, error) { return xsk.ReadMemoryLimits() }

func (kernel) openPort(o PortOptions, mems []umem) (port, error) {
	for _, m := range mems {
		u, ok := m.(*xsk.Umem)
		if !ok {
			return nil, fmt.Errorf("open port %s: memory %T is not a UMEM", o.Iface, m)
		}
		o.Umems = append(o.Umems, u)
	}
	p, err := OpenPort(o)
	if err != nil {
		return nil, err
	}
	return kernelPort{p}, nil
}

func (kernel) rdma() error {
	if !rdma.Supported {
		return rdma.ErrNotSupported
	}
	return nil
}

func (kernel) dialRDMA(ctx context.Context, addr string, mem umem, o rdma.DialOptions) (rdmaConn, error) {
	u, ok := mem.(*xsk.Umem)
	if !ok {
		return nil, fmt.Errorf("memory %T is not a UMEM", mem)
	}
	return rdma.Dial(ctx, addr, u.Region(), o)
}

// kernelPort is a Port as the daemon uses it.
type kernelPort struct{ *Port }

func (p kernelPort) sockets() []socket {
	s := make([]socket, len(p.Sockets))
	for i, x := range p.Sockets {
		s[i] = x
	}
	return s
}

func (p kernelPort) info() PortInfo { return PortInfo{XDP: p.XDP, Mode: ModeText(p.Sockets[0])} }

func (p kernelPort) steer() steerer {
	if st := p.Steer(); st != nil {
		return st
	}
	return nil
}

func (p kernelPort) faults() <-chan netdev.LinkEvent { return p.Faults() }
func (p kernelPort) unbound() (bpf.Unbound, error)   { return p.Unbound() }
func (p kernelPort) detach() error                   { return p.Detach() }
func (p kernelPort) close() error                    { return p.Close() }
