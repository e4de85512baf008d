//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/caps"
)

// AttachMode says how an XDP program is attached to an interface.
type AttachMode int

const (
	// AttachAuto tries driver mode, then generic mode. As a result it is
	// never returned: Attach reports the mode it obtained.
	AttachAuto AttachMode = iota
	// AttachDriver runs the program in the driver's receive path (native
	// XDP); the fast mode, and the one AF_XDP zero-copy needs.
	AttachDriver
	// AttachGeneric runs the program after the kernel built an skb (SKB
	// mode); works on every interface, slower.
	AttachGeneric
)

// String returns auto, driver or generic.
func (m AttachMode) String() string {
	switch m {
	case AttachAuto:
		return "auto"
	case AttachDriver:
		return "driver"
	case AttachGeneric:
		return "generic"
	}
	return fmt.Sprintf("AttachMode(%d)", int(m))
}

// ParseAttachMode parses auto, driver (or native) and generic (or skb).
func ParseAttachMode(s string) (AttachMode, error) {
	switch s {
	case "auto", "":
		return AttachAuto, nil
	case "driver", "native", "drv":
		return AttachDriver, nil
	case "generic", "skb":
		return AttachGeneric, nil
	}
	return 0, fmt.Errorf("unknown XDP attach mode %q (want auto, driver or generic)", s)
}

var (
	// ErrNoInterface: the interface index names no interface in the calling
	// thread's network namespace.
	ErrNoInterface = errors.New("no such interface")
	// ErrInterfaceBusy: the interface already has an XDP program attached.
	ErrInterfaceBusy = errors.New("interface already has an XDP program")
	// ErrClosed: the object was closed.
	ErrClosed = errors.New("closed")
)

// removeMemlock lifts RLIMIT_MEMLOCK on kernels that still charge BPF
// memory to it (before 5.11); a no-op on memcg-accounting kernels.
//
// cilium/ebpf tells the two apart by creating a map under a zero limit: a
// bpf(2) refused for another reason looks like an old kernel to it, and
// its error is about the limit. bpfRefused names the reason instead.
func removeMemlock() error {
	if err := rlimit.RemoveMemlock(); err != nil {
		if rerr := bpfRefused(); rerr != nil {
			return rerr
		}
		return fmt.Errorf("raise RLIMIT_MEMLOCK for BPF maps (run as root or raise `ulimit -l`): %w", err)
	}
	return nil
}

// bpfRefused returns why bpf(2) fails with EPERM although the process has
// CAP_BPF (a seccomp filter, as podman's default profile, which allows
// bpf(2) only with CAP_SYS_ADMIN; or a security module), or nil when it
// does not.
func bpfRefused() error {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err == nil {
		return m.Close()
	}
	if !errors.Is(err, unix.EPERM) || !caps.Have(caps.BPF) {
		return nil
	}
	if b, _ := os.ReadFile("/proc/self/status"); strings.Contains(string(b), "\nSeccomp:\t2\n") {
		return fmt.Errorf("bpf(2) refused with CAP_BPF held: a seccomp filter forbids it (podman's default profile allows it only with CAP_SYS_ADMIN); "+
			"run the container with a profile that allows it: --security-opt seccomp=FILE from deploy/container/seccomp.sh: %w", unix.EPERM)
	}
	return fmt.Errorf("bpf(2) refused with CAP_BPF held: a security module (SELinux, AppArmor, Landlock) forbids it: %w", unix.EPERM)
}

// attachXDP attaches prog to ifindex with a bpf_link in the given mode and
// returns the link and the mode obtained.
func attachXDP(prog *ebpf.Program, ifindex int, mode AttachMode) (link.Link, AttachMode, error) {
	if ifindex < 1 {
		return nil, 0, fmt.Errorf("attach xdp: interface index %d: %w", ifindex, ErrNoInterface)
	}
	ifc, err := net.InterfaceByIndex(ifindex)
	if err != nil {
		return nil, 0, fmt.Errorf("attach xdp: interface index %d in this network namespace: %w", ifindex, ErrNoInterface)
	}
	try := func(m AttachMode) (link.Link, error) {
		flags := link.XDPDriverMode
		if m == AttachGeneric {
			flags = link.XDPGenericMode
		}
		return link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: flags})
	}
	switch mode {
	case AttachDriver, AttachGeneric:
		l, err := try(mode)
		if err != nil {
			return nil, 0, explainAttach(ifc.Name, mode, err)
		}
		return l, mode, nil
	case AttachAuto:
		l, err := try(AttachDriver)
		if err == nil {
			return l, AttachDriver, nil
		}
		if busy(err) || errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.ENODEV) {
			return nil, 0, explainAttach(ifc.Name, AttachDriver, err)
		}
		l, gerr := try(AttachGeneric)
		if gerr != nil {
			return nil, 0, fmt.Errorf("driver mode: %v; %w", err, explainAttach(ifc.Name, AttachGeneric, gerr))
		}
		return l, AttachGeneric, nil
	}
	return nil, 0, fmt.Errorf("attach xdp: invalid mode %v", mode)
}

// busy reports the errors the kernel gives when an XDP program is already
// there: EBUSY (a bpf_link holds the hook, or a link would replace a
// program), EEXIST (a program in the other mode).
func busy(err error) bool { return errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) }

func explainAttach(name string, mode AttachMode, err error) error {
	switch {
	case busy(err):
		return fmt.Errorf("attach xdp to %s in %s mode: %w (see `ip link show dev %s` or `bpftool net show dev %s`): "+
			"remove a netlink-attached program with `ip link set dev %s xdp off`; one held by a bpf_link goes away when the process "+
			"holding it exits, or with `rm` of its pin under /sys/fs/bpf: %w", name, mode, ErrInterfaceBusy, name, name, name, err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("attach xdp to %s: this kernel has no bpf_link for XDP (needs Linux 5.9): %w", name, err)
	case errors.Is(err, unix.ENODEV):
		return fmt.Errorf("attach xdp to %s: %w: %w", name, ErrNoInterface, err)
	case errors.Is(err, unix.EOPNOTSUPP) && mode == AttachDriver:
		return fmt.Errorf("attach xdp to %s: driver has no native XDP support, use generic or auto mode: %w", name, err)
	case errors.Is(err, unix.EINVAL) && mode == AttachDriver:
		return fmt.Errorf("attach xdp to %s in driver mode: rejected by the driver (MTU too large for non-multi-buffer XDP, or a feature such as LRO on): %w", name, err)
	}
	return fmt.Errorf("attach xdp to %s in %s mode: %w", name, mode, err)
}

// Counter is a packet and byte count, summed over CPUs.
type Counter struct {
	Packets uint64
	Bytes   uint64
}

// Add returns c + o.
func (c Counter) Add(o Counter) Counter { return Counter{c.Packets + o.Packets, c.Bytes + o.Bytes} }

// Sub returns c - o, for rates between two reads.
func (c Counter) Sub(o Counter) Counter { return Counter{c.Packets - o.Packets, c.Bytes - o.Bytes} }

// sumCounters sums the per-CPU values of a counter (struct counter in C;
// every program's generated counter type converts to dropcountCounter).
func sumCounters(percpu []dropcountCounter) Counter {
	var c Counter
	for _, v := range percpu {
		c.Packets += v.Packets
		c.Bytes += v.Bytes
	}
	return c
}
