package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/internal/caps"
	"github.com/xdpipe/xdpipe/netdev"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/xsk"
)

// CheckCaps refuses, in one line naming the missing capability and how to
// grant it, a process that cannot open a port: CAP_BPF, CAP_NET_ADMIN and
// CAP_NET_RAW load and attach the XDP program and open AF_XDP sockets;
// with steering rules (steering) the verifier also wants CAP_PERFMON
// for the steering program's pointer arithmetic on map values. Locked
// memory is checked with the sizes (xsk.CheckMemory), and mounting bpffs
// where pins need it and none is, by the mount (CAP_SYS_ADMIN). The error
// is a *caps.MissingError (errors.Is caps.ErrMissing).
func CheckCaps(steering bool) error {
	if steering {
		return caps.Check("load the steering program, attach it and open AF_XDP sockets", caps.BPF, caps.NetAdmin, caps.NetRaw, caps.Perfmon)
	}
	return caps.Check("load and attach XDP programs and open AF_XDP sockets", caps.BPF, caps.NetAdmin, caps.NetRaw)
}

// PortOptions say which queues of which interface to open and how. Every
// command opens its sockets through OpenPort with these.
type PortOptions struct {
	// Iface is the interface; Queues the RX queues to open a socket on.
	Iface  string
	Queues []int
	// Umems holds the UMEM of each queue's socket, in Queues order (one
	// UMEM may appear several times: shared). The caller owns them.
	Umems []*xsk.Umem
	// Socket are the sockets' options. MultiBuffer is set by OpenPort
	// where the MTU needs it (see TakesMultiBuffer); a caller whose UMEMs
	// are shared with another interface's sockets sets it itself when any
	// of them needs it, as sharing sockets must agree. Driver, what
	// package netdev knows of the interface's driver, decides BindAuto and
	// refuses a zero-copy bind or a queue the driver cannot take.
	Socket xsk.SocketOptions
	// TakesMultiBuffer says the caller handles packets larger than one
	// UMEM frame (several descriptors). When the interface's MTU allows
	// such packets, OpenPort turns multi-buffer on if the caller takes
	// them, and otherwise logs that the kernel will drop them.
	TakesMultiBuffer bool
	// NoProgram opens the sockets without an XDP program and leaves their
	// fill rings empty: a socket that only transmits (the generator's)
	// needs neither, and its UMEM's frames stay the caller's. Its queue is
	// a TX queue: the socket's bind checks it against the driver's active
	// queues, not OpenPort against the RX queues.
	NoProgram bool
	// Transmits says the caller sends on the sockets (TX ring). With busy
	// polling it keeps virtio_net out of zero-copy: see busyPollStall.
	Transmits bool
	// Rules, if set, puts the steering program with these rules in front
	// of the sockets; nil: the redirect program sends every frame.
	Rules *rules.Set
	// Track, without Rules, loads the redirect program's variant that
	// counts generated frames (xdpipe gen's) at the hook, on the CPU that
	// runs it (bpf.LoadTrackingRedirect): Port.Tracked reads the counts,
	// and the receiver need not read the frames but to sample latency.
	Track bool
	// RxStamp has the program stamp one frame in RxStamp it redirects (a
	// power of two, per CPU; 1: every frame; 0: none) with the time, for
	// the worker's rx delay histogram (pipeline.WorkerConfig.RxDelay).
	RxStamp uint32
	// RxMetadata loads the program bound to the interface, so that it
	// reads the driver's RX hash and timestamp into each frame's metadata
	// (pipeline.WorkerConfig.RxMetadata), where the driver offers any
	// (netdev's xdp-rx-metadata-features) and the attach mode is not
	// generic; elsewhere it logs why frames carry none. Not with Track.
	RxMetadata bool
	// Attach is the XDP attach mode (default auto).
	Attach bpf.AttachMode
	// PinDir, with Rules, pins the rule maps while the port is open, so
	// `xdpipe rules` can change them: in a directory of the interface's own
	// under PinDir (bpf.PinPathFor; empty: no pins).
	PinDir string
	// Log reports what was attached (default slog.Default()).
	Log *slog.Logger
}

// Port is an interface's XDP program with AF_XDP sockets registered for
// some of its queues.
type Port struct {
	// Iface is the interface; Sockets the sockets, in PortOptions.Queues
	// order; Attached the mode the program got.
	Iface    *net.Interface
	Sockets  []*xsk.Socket
	Attached bpf.AttachMode
	// XDP describes the driver's XDP features ("xdp-features
	// basic,redirect,... zc-max-segs 0"), or why they are unknown.
	XDP  string
	prog xdpProgram // nil with NoProgram, or once detached
	// unbound is the program's last Unbound, read as it was detached.
	unbound bpf.Unbound
	steer   *bpf.Steer    // prog, when it is the steering program
	track   *bpf.Redirect // prog, when it is the tracking redirect program
	claim   *bpf.Claim    // the interface's ownership, with a program
	watch   *netdev.LinkWatch
}

// xdpProgram is what a port needs of its XDP program: bpf.Redirect and
// bpf.Steer both are one.
type xdpProgram interface {
	Attach(ifindex int, mode bpf.AttachMode) (bpf.AttachMode, error)
	Register(queue, fd int) error
	Unbound() (bpf.Unbound, error)
	Close() error
}

var (
	_ xdpProgram = (*bpf.Redirect)(nil)
	_ xdpProgram = (*bpf.Steer)(nil)
)

// CheckInterface validates an interface and queues before anything is
// attached or mapped, so bad input fails with an error that says what to
// do. It returns the interface and its number of RX queues.
func CheckInterface(name string, queues ...int) (*net.Interface, int, error) {
	if err := CheckCaps(false); err != nil {
		return nil, 0, err
	}
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil, 0, fmt.Errorf("interface %q not found in this network namespace (see `ip link`; for a namespace, run under `ip netns exec NS`)", name)
	}
	if ifc.Flags&net.FlagUp == 0 {
		return nil, 0, fmt.Errorf("interface %s is down: bring it up with `ip link set dev %s up`", name, name)
	}
	n := RXQueues(name)
	for _, q := range queues {
		if q < 0 || q >= n {
			return nil, 0, fmt.Errorf("queue %d: %s has %d active RX queues (0 to %d); pick one of them or raise the count with ethtool -L %s", q, name, n, n-1, name)
		}
	}
	return ifc, n, nil
}

// RXQueues counts an interface's RX queues in sysfs (1 if sysfs does not
// say).
func RXQueues(name string) int {
	q, _ := filepath.Glob(filepath.Join("/sys/class/net", name, "queues", "rx-*"))
	return max(len(q), 1)
}

// NeedsMultiBuffer reports whether an interface with this MTU can receive
// frames larger than one UMEM frame of frameSize (0: the default) holds.
func NeedsMultiBuffer(mtu int, frameSize uint32) bool {
	return xsk.Segments(mtu, frameSize) > 1
}

// busyPollStall says why busy polling would stall these sockets' zero-copy
// transmit, or "". virtio_net sends AF_XDP zero-copy frames only from its
// TX NAPI, which runs off the TX interrupt; with SO_PREFER_BUSY_POLL the
// kernel's sendto only busy-polls the RX NAPI and skips the driver's wakeup
// (xsk_no_wakeup), so the TX ring fills and nothing leaves. Copy mode
// transmits from sendto itself and is not affected, nor is receiving.
func busyPollStall(driver string, o PortOptions) string {
	if !o.Socket.BusyPoll || !o.Transmits || o.Socket.Bind == xsk.BindCopy || driver != "virtio_net" {
		return ""
	}
	return "busy polling stalls AF_XDP zero-copy transmit on virtio_net (its TX NAPI never runs under SO_PREFER_BUSY_POLL)"
}

// OpenPort opens a port the one way every command does: check the
// interface, load the program (and its rules, pinned where asked), make
// the sockets, fill each before it is registered (see pipeline's package
// doc), register, attach. On error everything it made is undone.
func OpenPort(o PortOptions) (_ *Port, err error) {
	if len(o.Umems) != len(o.Queues) {
		return nil, fmt.Errorf("open port %s: %d UMEMs for %d queues", o.Iface, len(o.Umems), len(o.Queues))
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	rxQueues := o.Queues
	if o.NoProgram {
		rxQueues = nil
	}
	if err := CheckCaps(o.Rules != nil); err != nil {
		return nil, err
	}
	ifc, _, err := CheckInterface(o.Iface, rxQueues...)
	if err != nil {
		return nil, err
	}
	p := &Port{Iface: ifc}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if !o.NoProgram {
		// First: another instance's pins, maps and program are not to be
		// touched, not even by this one's failure.
		if p.claim, err = bpf.ClaimInterface(ifc.Index, bpf.ClaimOptions{Name: ifc.Name, PinDir: o.PinDir}); err != nil {
			return nil, err
		}
		if p.claim.Stale != "" {
			log.Warn("took the interface over from a dead instance", "iface", ifc.Name, "previous", p.claim.Stale)
		}
	}
	dev, xdp := netdev.Describe(ifc.Index)
	o.Socket.Driver = SocketDriver(dev)
	p.XDP = xdp
	bound := 0 // the interface the program is bound to for RX metadata
	if o.RxMetadata && !o.NoProgram {
		switch {
		case o.Track:
			return nil, errors.New("open port: the tracking program does not read RX metadata")
		case dev.RxMetadata == 0:
			log.Warn("the driver offers no XDP RX metadata: packets carry none", "iface", ifc.Name, "xdp", xdp)
		case o.Attach == bpf.AttachGeneric:
			log.Warn("XDP RX metadata needs driver mode, not generic: packets carry none", "iface", ifc.Name)
		default:
			bound = ifc.Index
		}
	}
	if why := busyPollStall(dev.Driver, o); why != "" {
		if o.Socket.Bind == xsk.BindZeroCopy {
			return nil, fmt.Errorf("%s: %s; turn busy polling off or bind copy mode", ifc.Name, why)
		}
		log.Warn("binding copy mode: "+why, "iface", ifc.Name)
		o.Socket.Bind = xsk.BindCopy
	}
	for i, q := range o.Queues {
		so := o.Socket
		if NeedsMultiBuffer(ifc.MTU, o.Umems[i].FrameSize()) {
			if o.TakesMultiBuffer {
				so.MultiBuffer = true
			} else if i == 0 {
				log.Warn("frames larger than a UMEM frame are dropped: this receiver does not take multi-buffer packets; "+
					"the kernel counts them in rx_dropped", "iface", ifc.Name, "mtu", ifc.MTU, "frame_size", o.Umems[i].FrameSize())
			}
		}
		// Frames on the fill ring before bind: a zero-copy driver fills
		// its RX queue from it when the socket binds (xsk.SocketOptions).
		so.Prefill = !o.NoProgram
		s, err := xsk.NewSocket(o.Umems[i], ifc.Index, q, so)
		if err != nil {
			return nil, explainSocket(fmt.Errorf("socket %s queue %d: %w", ifc.Name, q, err))
		}
		p.Sockets = append(p.Sockets, s)
	}
	if o.NoProgram {
		return p, nil
	}
	if o.Rules != nil {
		so := bpf.SteerOptions{RxStamp: o.RxStamp, RxMetadataIfindex: bound}
		if o.PinDir != "" {
			// Only the maps are pinned (not the link), and only while the
			// port is open: Detach removes them.
			so.PinPath, so.MapsOnly = p.claim.PinPath(), true
		}
		if p.steer, err = bpf.LoadSteer(so); err != nil {
			return nil, err
		}
		p.prog = p.steer
		if err := p.steer.Apply(o.Rules); err != nil {
			return nil, fmt.Errorf("apply %d steering rules: %w", len(o.Rules.Rules), err)
		}
	} else {
		// Through a variable of its own: a nil *Redirect in p.prog would
		// be a non-nil interface, which Close would call.
		load := bpf.LoadRedirect
		if o.Track {
			load = bpf.LoadTrackingRedirect
		}
		r, err := load(bpf.RedirectOptions{RxStamp: o.RxStamp, RxMetadataIfindex: bound})
		if err != nil {
			return nil, err
		}
		p.prog = r
		if o.Track {
			p.track = r
		}
	}
	// The sockets go into the XSKMAP before the program attaches: a frame
	// arriving in between would otherwise go to the kernel, counted as on
	// a queue without a socket.
	for i, q := range o.Queues {
		if err := p.prog.Register(q, p.Sockets[i].FD()); err != nil {
			return nil, err
		}
	}
	if p.Attached, err = p.prog.Attach(ifc.Index, o.Attach); err != nil {
		return nil, err
	}
	if p.watch, err = netdev.WatchLinks(ifc.Index); err != nil {
		return nil, err
	}
	log.Info("port open", "iface", ifc.Name, "driver", dev.Driver, "xdp_features", xdp, "queues", o.Queues, "xdp", p.Program(),
		"attach", p.Attached.String(), "bind", ModeText(p.Sockets[0]), "rx_metadata", bound != 0)
	return p, nil
}

// Program says which XDP program the port has.
func (p *Port) Program() string {
	switch {
	case p.steer != nil:
		return "steer"
	case p.prog != nil:
		return "redirect"
	}
	return "none"
}

// Faults delivers what stops the port's data path: the interface deleted,
// or its XDP program replaced or removed by someone else (at most one
// event). A receiver must not run on silently after one. Nil channel
// (never ready) without a program.
func (p *Port) Faults() <-chan netdev.LinkEvent {
	if p.watch == nil {
		return nil
	}
	return p.watch.Events()
}

// Unbound reads, per RX queue, the frames the port's program would have
// redirected to a socket but found none registered on their queue: the
// kernel stack got them. Once detached, it is the count at detach.
func (p *Port) Unbound() (bpf.Unbound, error) {
	if p.prog == nil {
		return p.unbound, nil
	}
	return p.prog.Unbound()
}

// Steer is the port's steering program, or nil.
func (p *Port) Steer() *bpf.Steer { return p.steer }

// ModeText is a socket's bind mode for a start line, with why auto fell
// back to copy mode.
func ModeText(s *xsk.Socket) string {
	if why := s.Fallback(); why != "" {
		return fmt.Sprintf("%v mode (auto: %s)", s.Mode(), why)
	}
	return fmt.Sprintf("%v mode", s.Mode())
}

// explainSocket adds what to do to socket errors a user can fix.
func explainSocket(err error) error {
	switch {
	case errors.Is(err, unix.EPERM):
		if cerr := CheckCaps(false); cerr != nil {
			return cerr
		}
	case strings.Contains(err.Error(), "memlock"):
		return fmt.Errorf("%w; raise it with `ulimit -l unlimited` or run as root", err)
	}
	return err
}

// Detach removes the XDP program (and the rule maps' pins): no new frames
// reach the sockets. The sockets stay open for the frames they hold.
func (p *Port) Detach() error {
	var err error
	if p.watch != nil {
		err = p.watch.Close() // what follows is no fault
		p.watch = nil
	}
	if p.steer != nil {
		err = errors.Join(err, p.steer.Unpin())
	}
	if p.prog != nil {
		var uerr error
		p.unbound, uerr = p.prog.Unbound()
		err = errors.Join(err, uerr, p.prog.Close())
	}
	p.prog, p.steer = nil, nil
	return err
}

// Close detaches the program, closes the sockets (not the UMEMs, which
// are the caller's) and gives up the interface. Safe on a partly opened
// port.
func (p *Port) Close() error {
	err := p.Detach()
	for _, s := range p.Sockets {
		err = errors.Join(err, s.Close())
	}
	p.Sockets = nil
	if p.claim != nil {
		err = errors.Join(err, p.claim.Release())
		p.claim = nil
	}
	return err
}
