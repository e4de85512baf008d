package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/netdev"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/xsk"
)

// portOptions say which queue of which interface to open and how.
type portOptions struct {
	iface  string
	queue  int
	attach bpf.AttachMode
	umem   xsk.UmemOptions
	socket xsk.SocketOptions
	// rules, if set, puts the steering program with these rules in front
	// of the socket instead of the redirect-everything program.
	rules *rules.Set
}

// xdpProgram is what a port needs of its XDP program: bpf.Redirect and
// bpf.Steer both are one.
type xdpProgram interface {
	Attach(ifindex int, mode bpf.AttachMode) (bpf.AttachMode, error)
	Register(queue, fd int) error
	Close() error
}

var (
	_ xdpProgram = (*bpf.Redirect)(nil)
	_ xdpProgram = (*bpf.Steer)(nil)
)

// port is one AF_XDP socket on one interface queue, with an XDP program
// attached to the interface and the socket registered in its XSKMAP.
type port struct {
	prog       xdpProgram
	umem       *xsk.Umem
	sock       *xsk.Socket
	attachMode bpf.AttachMode
	// driver is the interface's XDP features for the start line.
	driver string
}

// checkInterface validates an interface and queue before anything is
// attached or mapped, so bad input fails with an error that says what to do.
func checkInterface(name string, queue int) (*net.Interface, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root (CAP_NET_ADMIN and CAP_BPF) to attach XDP programs and open AF_XDP sockets; run with sudo")
	}
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("interface %q not found in this network namespace (see `ip link`; for a namespace, run under `ip netns exec NS`)", name)
	}
	if ifc.Flags&net.FlagUp == 0 {
		return nil, fmt.Errorf("interface %s is down: bring it up with `ip link set dev %s up`", name, name)
	}
	queues, _ := filepath.Glob(filepath.Join("/sys/class/net", name, "queues", "rx-*"))
	if len(queues) > 0 && queue >= len(queues) {
		return nil, fmt.Errorf("queue %d: %s has %d active RX queues (0 to %d); pick one of them or raise the count with ethtool -L %s", queue, name, len(queues), len(queues)-1, name)
	}
	return ifc, nil
}

// openPort checks the interface, attaches the redirect program, makes the
// UMEM and the socket, and registers the socket for its queue. On error
// everything it made is undone.
func openPort(o portOptions) (_ *port, err error) {
	ifc, err := checkInterface(o.iface, o.queue)
	if err != nil {
		return nil, err
	}
	// Frames larger than a UMEM frame's data room arrive in several
	// segments: turn multi-buffer on when the MTU allows such frames.
	if needsMultiBuffer(ifc.MTU, o.umem.FrameSize) {
		o.socket.MultiBuffer = true
	}
	dev, driver := netdev.Describe(ifc.Index)
	o.socket.Driver = dev.XSK()
	p := &port{driver: driver}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if p.umem, err = xsk.NewUmem(o.umem); err != nil {
		return nil, err
	}
	if p.sock, err = xsk.NewSocket(p.umem, ifc.Index, o.queue, o.socket); err != nil {
		return nil, explainSocket(err)
	}
	if p.prog, err = loadProgram(o.rules); err != nil {
		return nil, err
	}
	// Frames on the fill ring before the socket is registered, so the
	// first redirected frames find somewhere to land.
	p.sock.Refill()
	if p.attachMode, err = p.prog.Attach(ifc.Index, o.attach); err != nil {
		return nil, err
	}
	if err = p.prog.Register(o.queue, p.sock.FD()); err != nil {
		return nil, err
	}
	return p, nil
}

// loadProgram loads the steering program with set, or the redirect
// program when set is nil.
func loadProgram(set *rules.Set) (xdpProgram, error) {
	if set == nil {
		return bpf.LoadRedirect()
	}
	st, err := bpf.LoadSteer(bpf.SteerOptions{})
	if err != nil {
		return nil, err
	}
	if err := st.Apply(set); err != nil {
		st.Close()
		return nil, fmt.Errorf("apply %d rules: %w", len(set.Rules), err)
	}
	return st, nil
}

// needsMultiBuffer reports whether an interface with this MTU can receive
// frames larger than one UMEM frame of frameSize (0: the default) holds.
func needsMultiBuffer(mtu int, frameSize uint32) bool {
	return mtu+14 > xsk.FrameData(frameSize)
}

// explainSocket adds what to do to socket errors a user can fix.
func explainSocket(err error) error {
	switch {
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w (needs root, or CAP_NET_RAW and CAP_NET_ADMIN)", err)
	case strings.Contains(err.Error(), "memlock"):
		return fmt.Errorf("%w; raise it with `ulimit -l unlimited` or run as root", err)
	}
	return err
}

// modeText is the socket's bind mode for a start line, with why auto fell
// back to copy mode.
func modeText(s *xsk.Socket) string {
	if why := s.Fallback(); why != "" {
		return fmt.Sprintf("%v mode (auto: %s)", s.Mode(), why)
	}
	return fmt.Sprintf("%v mode", s.Mode())
}

// Close detaches the program and releases the socket and UMEM. Safe on a
// partly opened port.
func (p *port) Close() {
	if p.prog != nil {
		p.prog.Close()
	}
	if p.sock != nil {
		p.sock.Close()
	}
	if p.umem != nil {
		p.umem.Close()
	}
}
