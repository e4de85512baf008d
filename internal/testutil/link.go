package testutil

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// The privileged tests run on either of two kinds of link pair, chosen by
// the environment, with the same test code:
//
//   - veth (the default): two fresh namespaces joined by a veth pair; AF_XDP
//     binds in copy mode.
//   - NICs: XDPIPE_TEST_NICS="IF0 IF1" names two interfaces of the test's
//     namespace that are wired to each other (the VM stage's virtio-net
//     NICs, hack/vm). Each pair lends them to two fresh namespaces and
//     gives them back when the test ends; AF_XDP binds in zero-copy mode,
//     which the NICs must support.
//
// XDPIPE_TEST_BIND (copy, zerocopy or auto) overrides the bind mode, and
// XDPIPE_TEST_SCALE (a factor, default 1) scales the tests' frame counts
// (Frames): the VM stage emulates its CPUs and sets 0.1.

// LinkKind is what a LinkPair is made of.
type LinkKind string

// The kinds of link pair.
const (
	Veth LinkKind = "veth"
	NIC  LinkKind = "nic"
)

// Link returns the kind of pair NewLinkPair makes here: NICs when
// XDPIPE_TEST_NICS names them, veth otherwise.
func Link() LinkKind {
	if os.Getenv("XDPIPE_TEST_NICS") != "" {
		return NIC
	}
	return Veth
}

// Bind returns the AF_XDP bind mode the tests use, spelt as xsk.ParseBindMode
// and the --bind flag take it: XDPIPE_TEST_BIND when set, else copy on veth
// (which has no zero-copy) and zerocopy on NICs.
func Bind() string {
	if b := os.Getenv("XDPIPE_TEST_BIND"); b != "" {
		return b
	}
	if Link() == NIC {
		return "zerocopy"
	}
	return "copy"
}

// Frames scales a test's frame count n by XDPIPE_TEST_SCALE, keeping at
// least 500 (or n, if smaller) so the count still means something.
func Frames(n int) int {
	f, err := strconv.ParseFloat(os.Getenv("XDPIPE_TEST_SCALE"), 64)
	if err != nil || f <= 0 {
		return n
	}
	return max(int(float64(n)*f), min(n, 500))
}

// RequireVeth skips a test that checks a fact of veth (why) when the pairs
// are NICs. It still runs on the host, where pairs are veth.
func RequireVeth(tb testing.TB, why string) {
	tb.Helper()
	if Link() != Veth {
		tb.Skipf("veth only: %s; the pairs here are NICs (XDPIPE_TEST_NICS)", why)
	}
}

// RequireZeroCopy skips a test of zero-copy AF_XDP unless the pairs are NICs
// bound in zero-copy mode: on the host (veth, copy mode) it runs in the VM
// stage instead (hack/vm, internal/vmtest).
func RequireZeroCopy(tb testing.TB) {
	tb.Helper()
	if Link() != NIC || Bind() != "zerocopy" {
		tb.Skipf("needs zero-copy NICs (pairs here: %s, bind %s); runs in the VM stage (internal/vmtest)", Link(), Bind())
	}
}

// LinkEnd is one end of a link pair, inside its namespace.
type LinkEnd struct {
	NS   *NetNS
	Name string
	MAC  net.HardwareAddr
	IP   net.IP // IPv4, from 198.18.0.0/15
	IP6  net.IP // IPv6, from 2001:2::/48 (RFC 5180's benchmarking range)
}

// Ifindex resolves the interface index inside the end's namespace.
func (e *LinkEnd) Ifindex(tb testing.TB) int {
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

// SetSysfs writes value to the end's /sys/class/net/NAME/attr (inside its
// namespace) and writes the old value back when the test ends.
func (e *LinkEnd) SetSysfs(tb testing.TB, attr, value string) {
	tb.Helper()
	path := "/sys/class/net/" + e.Name + "/" + attr
	old := strings.TrimSpace(e.NS.MustRun(tb, "cat", path))
	e.NS.MustRun(tb, "sh", "-c", "echo "+value+" >"+path)
	tb.Cleanup(func() {
		if out, err := e.NS.Run("sh", "-c", "echo "+old+" >"+path); err != nil {
			tb.Errorf("cleanup: restore %s to %s: %v: %s", path, old, err, out)
		}
	})
}

// LinkPair is two ends wired to each other, each in a fresh namespace (or
// both in one, LinkOptions.OneNS): A sends, B receives.
type LinkPair struct {
	Kind LinkKind
	A, B LinkEnd
}

// LinkOptions tunes NewLinkPair. The zero value gives one queue each way,
// MTU 1500 and a namespace per end.
type LinkOptions struct {
	// Queues is the number of active RX and TX queues on each end
	// (default 1): `ethtool -L` rx/tx on veth, combined on NICs. Frames
	// redirected into a veth land on queue cpu % active queues. A test
	// asking more than the NICs have is skipped.
	Queues int
	// MTU of both ends (default 1500). Above about 3500 an XDP program on
	// the link must be multi-buffer aware (xdp.frags).
	MTU int
	// OneNS puts both ends in one namespace, as two ports of one box.
	OneNS bool
}

var pairSeq atomic.Uint32

// nicsLent guards the one pair of NICs: a test gets at most one pair at a
// time in NIC mode.
var nicsLent atomic.Bool

// NewLinkPair makes fresh namespaces and a link pair between them (see
// Link), both ends up, with fixed MACs and addresses from 198.18.0.0/15
// (IPv4) and 2001:2::/48 (IPv6). Static neighbour entries are set, so no ARP
// or ND traffic mixes with what a test sends. The ends are named xdpa and
// xdpb whatever they are. All of it is removed, and NICs are given back,
// when the test ends.
func NewLinkPair(tb testing.TB, opts LinkOptions) *LinkPair {
	tb.Helper()
	if opts.Queues == 0 {
		opts.Queues = 1
	}
	if opts.MTU == 0 {
		opts.MTU = 1500
	}
	nsA := NewNetNS(tb)
	nsB := nsA
	if !opts.OneNS {
		nsB = NewNetNS(tb)
	}
	n := byte(pairSeq.Add(1))
	p := &LinkPair{
		Kind: Link(),
		A: LinkEnd{NS: nsA, Name: "xdpa", MAC: net.HardwareAddr{0x02, 0x58, 0x44, 0x50, n, 0x0a},
			IP: net.IPv4(198, 18, n, 1).To4(), IP6: net.ParseIP(fmt.Sprintf("2001:2::%x:1", n))},
		B: LinkEnd{NS: nsB, Name: "xdpb", MAC: net.HardwareAddr{0x02, 0x58, 0x44, 0x50, n, 0x0b},
			IP: net.IPv4(198, 18, n, 2).To4(), IP6: net.ParseIP(fmt.Sprintf("2001:2::%x:2", n))},
	}
	if p.Kind == NIC {
		lendNICs(tb, p, opts.Queues)
	} else {
		makeVeth(tb, p, opts.Queues)
	}
	for _, e := range []*LinkEnd{&p.A, &p.B} {
		e.NS.MustRun(tb, "ip", "link", "set", e.Name, "address", e.MAC.String(), "mtu", fmt.Sprint(opts.MTU))
		e.NS.MustRun(tb, "ip", "addr", "add", e.IP.String()+"/24", "dev", e.Name)
		e.NS.MustRun(tb, "ip", "-6", "addr", "add", e.IP6.String()+"/64", "dev", e.Name, "nodad")
		e.NS.MustRun(tb, "sysctl", "-qw", "net.ipv6.conf."+e.Name+".accept_ra=0")
		e.NS.MustRun(tb, "ip", "link", "set", e.Name, "up")
	}
	for _, pr := range [][2]*LinkEnd{{&p.A, &p.B}, {&p.B, &p.A}} {
		self, peer := pr[0], pr[1]
		self.NS.MustRun(tb, "ip", "neigh", "replace", peer.IP.String(), "lladdr", peer.MAC.String(), "dev", self.Name, "nud", "permanent")
		self.NS.MustRun(tb, "ip", "-6", "neigh", "replace", peer.IP6.String(), "lladdr", peer.MAC.String(), "dev", self.Name, "nud", "permanent")
	}
	return p
}

// SetQueues sets the active RX and TX queues of both ends to n (ethtool
// -L), as LinkOptions.Queues does at the start; n must not exceed it.
func (p *LinkPair) SetQueues(tb testing.TB, n int) {
	tb.Helper()
	for _, e := range []*LinkEnd{&p.A, &p.B} {
		_, set := channels(tb, e.NS.MustRun(tb, "ethtool", "-l", e.Name))
		e.NS.MustRun(tb, "ethtool", append([]string{"-L", e.Name}, set(n)...)...)
	}
}

// makeVeth creates the veth pair in A's namespace with the peer directly in
// B's, so nothing ever appears in the test's own namespace.
func makeVeth(tb testing.TB, p *LinkPair, queues int) {
	tb.Helper()
	q := strconv.Itoa(queues)
	p.A.NS.MustRun(tb, "ip", "link", "add", p.A.Name, "numrxqueues", q, "numtxqueues", q,
		"type", "veth", "peer", "name", p.B.Name, "netns", p.B.NS.Name, "numrxqueues", q, "numtxqueues", q)
	if queues > 1 {
		p.SetQueues(tb, queues)
	}
}

// lendNICs moves the two NICs of XDPIPE_TEST_NICS into the pair's
// namespaces, renamed to the ends' names, with queues channels,
// and registers the cleanup that brings them back, checked.
func lendNICs(tb testing.TB, p *LinkPair, queues int) {
	tb.Helper()
	nics := strings.Fields(os.Getenv("XDPIPE_TEST_NICS"))
	if len(nics) != 2 {
		tb.Fatalf("XDPIPE_TEST_NICS=%q: want two interface names wired to each other", os.Getenv("XDPIPE_TEST_NICS"))
	}
	if !nicsLent.CompareAndSwap(false, true) {
		tb.Fatalf("the NICs %v are lent to another pair already: a test gets one pair at a time on NICs", nics)
	}
	tb.Cleanup(func() { nicsLent.Store(false) })
	for i, e := range []*LinkEnd{&p.A, &p.B} {
		nic := nics[i]
		if max, _ := channels(tb, MustRun(tb, "ethtool", "-l", nic)); max < queues {
			tb.Skipf("needs %d queues; %s has %d (the VM stage's multi-queue run has more)", queues, nic, max)
		}
		MustRun(tb, "ip", "link", "set", "dev", nic, "down")
		MustRun(tb, "ip", "addr", "flush", "dev", nic)
		MustRun(tb, "ip", "link", "set", "dev", nic, "netns", e.NS.Name, "name", e.Name)
		tb.Cleanup(func() { returnNIC(tb, e, nic) })
		// Interrupt deferral stays off unless a test turns it on (SetSysfs).
		e.NS.MustRun(tb, "sh", "-c", "echo 0 >/sys/class/net/"+e.Name+"/napi_defer_hard_irqs; echo 0 >/sys/class/net/"+e.Name+"/gro_flush_timeout")
	}
	p.SetQueues(tb, queues)
}

// returnNIC moves a lent NIC back to the test's namespace under its own
// name, failing the test if an XDP program is still attached or the NIC
// did not come back. (Deleting the namespace would return it too, but to
// the initial namespace and under the end's name.)
func returnNIC(tb testing.TB, e *LinkEnd, nic string) {
	if out, err := e.NS.Run("ip", "link", "show", "dev", e.Name); err != nil {
		tb.Errorf("cleanup: %s (%s) gone from %s: %v: %s", e.Name, nic, e.NS.Name, err, out)
		return
	} else if xdpAttached.MatchString(out) {
		tb.Errorf("cleanup: %s (%s) still has an XDP program attached:\n%s", e.Name, nic, out)
	}
	for _, args := range [][]string{
		{"ip", "link", "set", "dev", e.Name, "down"},
		{"ip", "addr", "flush", "dev", e.Name},
		{"ip", "link", "set", "dev", e.Name, "netns", strconv.Itoa(os.Getpid()), "name", nic},
	} {
		if out, err := e.NS.Run(args[0], args[1:]...); err != nil {
			tb.Errorf("cleanup: give back %s: %s: %v: %s", nic, strings.Join(args, " "), err, out)
			return
		}
	}
	if out, err := run("ip", "link", "show", "dev", nic); err != nil {
		tb.Errorf("cleanup: %s did not come back: %v: %s", nic, err, out)
	}
}

// xdpAttached matches `ip link` output of an interface with an XDP program.
var xdpAttached = regexp.MustCompile(`\sxdp(generic|drv|offload)?\s`)

// XDPAttached reports whether `ip link show` output says an XDP program is
// attached.
func XDPAttached(ipLinkShow string) bool { return xdpAttached.MatchString(ipLinkShow) }

// channels reads from `ethtool -l` output how many queues a link can have,
// and returns the ethtool -L arguments for n of them: combined channels, or
// rx and tx where the driver counts them apart (veth, used to try the NIC
// mode on a host).
func channels(tb testing.TB, out string) (max int, set func(n int) []string) {
	tb.Helper()
	get := func(kind string) int {
		m := regexp.MustCompile(`(?s)maximums:.*?` + kind + `:\s+(\d+)`).FindStringSubmatch(out)
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	if c := get("Combined"); c > 0 {
		return c, func(n int) []string { return []string{"combined", strconv.Itoa(n)} }
	}
	return min(get("RX"), get("TX")), func(n int) []string { return []string{"rx", strconv.Itoa(n), "tx", strconv.Itoa(n)} }
}

// AttachPass attaches an XDP_PASS program (multi-buffer aware) to the end,
// so frames redirected or XDP_TX'd into its peer are taken (a veth advertises
// ndo-xmit only while its peer has a program) and reach the stack. It
// returns the detach, which the test's cleanup also runs.
func (e *LinkEnd) AttachPass(tb testing.TB) (detach func()) {
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
