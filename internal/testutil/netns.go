package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// NetNS is a network namespace made by a test, removed by its cleanup.
type NetNS struct {
	Name string
}

var nsSeq atomic.Uint32

// uniqueName returns a name unique to this process and call, short enough for
// an interface name (15 bytes).
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s%d%c", prefix, os.Getpid()%100000, 'a'+rune(nsSeq.Add(1)%26))
}

// NewNetNS creates a fresh network namespace with its loopback up. It is
// deleted when the test ends, pass or fail.
func NewNetNS(tb testing.TB) *NetNS {
	tb.Helper()
	RequireRoot(tb)
	ns := &NetNS{Name: uniqueName("xdpt")}
	MustRun(tb, "ip", "netns", "add", ns.Name)
	tb.Cleanup(func() {
		if out, err := run("ip", "netns", "del", ns.Name); err != nil {
			tb.Errorf("cleanup: ip netns del %s: %v: %s", ns.Name, err, out)
		}
	})
	ns.MustRun(tb, "ip", "link", "set", "lo", "up")
	return ns
}

// Do runs fn on an OS thread that has joined the namespace, for calls whose
// effect depends on the calling thread's namespace: opening AF_XDP and packet
// sockets, resolving interface indexes, attaching XDP programs. Sockets and
// links made inside fn stay in the namespace after it returns.
func (ns *NetNS) Do(fn func() error) error {
	target, err := os.Open("/var/run/netns/" + ns.Name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", ns.Name, err)
	}
	defer target.Close()

	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own netns: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns.Name, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime discards it when this
		// goroutine exits, so no other goroutine runs in the wrong namespace.
		return fmt.Errorf("setns back from %s: %w (fn: %v)", ns.Name, err, fnErr)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// MustDo is Do that fails the test on error.
func (ns *NetNS) MustDo(tb testing.TB, fn func() error) {
	tb.Helper()
	if err := ns.Do(fn); err != nil {
		tb.Fatal(err)
	}
}

// Run runs a command inside the namespace and returns its combined output.
func (ns *NetNS) Run(name string, args ...string) (string, error) {
	return run("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// MustRun is Run that fails the test on error.
func (ns *NetNS) MustRun(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := ns.Run(name, args...)
	if err != nil {
		tb.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), ns.Name, err, out)
	}
	return out
}

// MustRun runs a command in the test's own namespace, failing the test on error.
func MustRun(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := run(name, args...)
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func run(name string, args ...string) (string, error) {
	var buf bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.String(), err
}

// VethEnd is one end of a veth pair, inside its own namespace.
type VethEnd struct {
	NS   *NetNS
	Name string
	MAC  net.HardwareAddr
	IP   net.IP // IPv4, from 198.18.0.0/15
	IP6  net.IP // IPv6, from 2001:2::/48 (RFC 5180's benchmarking range)
}

// Ifindex resolves the interface index inside the end's namespace.
func (e *VethEnd) Ifindex(tb testing.TB) int {
	tb.Helper()
	var idx int
	e.NS.MustDo(tb, func() error {
		ifc, err := net.InterfaceByName(e.Name)
		if err != nil {
			return err
		}
		idx = ifc.Index
		return nil
	})
	return idx
}

// VethPair is two namespaces joined by a veth pair: A sends, B receives.
type VethPair struct {
	A, B VethEnd
}

// VethOptions tunes NewVethPair. The zero value gives one queue each way
// and MTU 1500.
type VethOptions struct {
	// Queues is the number of RX and TX queues on each end (default 1).
	// Frames redirected into a veth land on queue cpu % active queues.
	Queues int
	// MTU of both ends (default 1500). Above about 3500 an XDP program on
	// the veth must be multi-buffer aware (xdp.frags).
	MTU int
}

var pairSeq atomic.Uint32

// NewVethPair makes two fresh namespaces and a veth pair between them, both
// ends up, with fixed MACs and addresses from 198.18.0.0/15 (IPv4) and
// 2001:2::/48 (IPv6). Static neighbour entries are set, so no ARP or ND
// traffic mixes with what a test sends. All of it is removed when the test ends.
func NewVethPair(tb testing.TB, opts VethOptions) *VethPair {
	tb.Helper()
	if opts.Queues == 0 {
		opts.Queues = 1
	}
	if opts.MTU == 0 {
		opts.MTU = 1500
	}
	nsA, nsB := NewNetNS(tb), NewNetNS(tb)
	n := byte(pairSeq.Add(1))
	p := &VethPair{
		A: VethEnd{NS: nsA, Name: "xdpa", MAC: net.HardwareAddr{0x02, 0x58, 0x44, 0x50, n, 0x0a},
			IP: net.IPv4(198, 18, n, 1).To4(), IP6: net.ParseIP(fmt.Sprintf("2001:2::%x:1", n))},
		B: VethEnd{NS: nsB, Name: "xdpb", MAC: net.HardwareAddr{0x02, 0x58, 0x44, 0x50, n, 0x0b},
			IP: net.IPv4(198, 18, n, 2).To4(), IP6: net.ParseIP(fmt.Sprintf("2001:2::%x:2", n))},
	}
	// Create in A with the peer directly in B, so nothing ever appears in
	// the root namespace.
	q := fmt.Sprint(opts.Queues)
	nsA.MustRun(tb, "ip", "link", "add", p.A.Name, "numrxqueues", q, "numtxqueues", q,
		"type", "veth", "peer", "name", p.B.Name, "netns", nsB.Name, "numrxqueues", q, "numtxqueues", q)
	for _, e := range []*VethEnd{&p.A, &p.B} {
		e.NS.MustRun(tb, "ip", "link", "set", e.Name, "address", e.MAC.String(), "mtu", fmt.Sprint(opts.MTU))
		e.NS.MustRun(tb, "ip", "addr", "add", e.IP.String()+"/24", "dev", e.Name)
		e.NS.MustRun(tb, "ip", "-6", "addr", "add", e.IP6.String()+"/64", "dev", e.Name, "nodad")
		e.NS.MustRun(tb, "sysctl", "-qw", "net.ipv6.conf."+e.Name+".accept_ra=0")
		e.NS.MustRun(tb, "ip", "link", "set", e.Name, "up")
	}
	for _, pr := range [][2]*VethEnd{{&p.A, &p.B}, {&p.B, &p.A}} {
		self, peer := pr[0], pr[1]
		self.NS.MustRun(tb, "ip", "neigh", "replace", peer.IP.String(), "lladdr", peer.MAC.String(), "dev", self.Name, "nud", "permanent")
		self.NS.MustRun(tb, "ip", "-6", "neigh", "replace", peer.IP6.String(), "lladdr", peer.MAC.String(), "dev", self.Name, "nud", "permanent")
	}
	return p
}

// AttachPass attaches an XDP_PASS program (multi-buffer aware) to the end,
// so frames redirected or XDP_TX'd into its peer are taken (a veth advertises
// ndo-xmit only while its peer has a program) and reach the stack. It
// returns the detach, which the test's cleanup also runs.
func (e *VethEnd) AttachPass(tb testing.TB) (detach func()) {
	tb.Helper()
	idx := e.Ifindex(tb)
	var l link.Link
	var prog *ebpf.Program
	e.NS.MustDo(tb, func() error {
		var err error
		prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xdpipe_t_pass", Type: ebpf.XDP, License: "Dual MIT/GPL",
			Flags:        1 << 5, // BPF_F_XDP_HAS_FRAGS
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}})
		if err != nil {
			return fmt.Errorf("load XDP_PASS: %w", err)
		}
		if l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: idx}); err != nil {
			prog.Close()
			return fmt.Errorf("attach XDP_PASS to %s: %w", e.Name, err)
		}
		return nil
	})
	var once sync.Once
	detach = func() { once.Do(func() { l.Close(); prog.Close() }) }
	tb.Cleanup(detach)
	return detach
}
