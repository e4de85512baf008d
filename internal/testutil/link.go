package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
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
// XDPIPE_TEST_RXHASH_NIC names the NIC of the two, if any, whose driver
// reports each frame's RSS hash (the VM's --hash-report NIC).
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
//
// An XDPIPE_TEST_BIND of another value panics: the whole run is misconfigured.
func Bind() string {
	switch b := os.Getenv("XDPIPE_TEST_BIND"); b {
	case "copy", "zerocopy", "auto":
		return b
	case "":
	default:
		panic(fmt.Sprintf("XDPIPE_TEST_BIND=%q: want copy, zerocopy or auto", b))
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

// RequireRxHash skips a test of the RX hash an XDP program reads from the
// driver (bpf_xdp_metadata_rx_hash) unless the B end of the pairs reports
// one: veth always does (the skb's flow hash); of the NICs, the second
// must be XDPIPE_TEST_RXHASH_NIC (the VM stage's hash-report boot).
func RequireRxHash(tb testing.TB) {
	tb.Helper()
	if Link() == Veth {
		return
	}
	nics := strings.Fields(os.Getenv("XDPIPE_TEST_NICS"))
	if hash := os.Getenv("XDPIPE_TEST_RXHASH_NIC"); len(nics) != 2 || hash == "" || hash != nics[1] {
		tb.Skipf("needs RX hashes on the B end; NICs %v, the one reporting hashes %q (the VM stage's hash-report boot has one)", nics, hash)
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

// NICQueues is the most queues a pair of the NICs of XDPIPE_TEST_NICS can
// have (their combined channels, ethtool -l); it fails the test elsewhere.
// A test whose traffic may land on any queue asks for all of them: with
// fewer, a driver may take the rest for itself when an XDP program
// attaches (virtio_net: XDP_TX queue pairs) while the host still hashes
// flows onto them.
func NICQueues(tb testing.TB) int {
	tb.Helper()
	nics := strings.Fields(os.Getenv("XDPIPE_TEST_NICS"))
	if len(nics) != 2 {
		tb.Fatalf("XDPIPE_TEST_NICS=%q: want two interface names wired to each other", os.Getenv("XDPIPE_TEST_NICS"))
	}
	n := 0
	for i, nic := range nics {
		m, _ := channels(tb, MustRun(tb, "ethtool", "-l", nic))
		if i == 0 || m < n {
			n = m
		}
	}
	return n
}

// RXQueues counts the end's RX queues (sysfs, in its namespace): what the
// driver has now, after any queues an XDP program made it add.
func (e *LinkEnd) RXQueues(tb testing.TB) int {
	tb.Helper()
	out := e.NS.MustRun(tb, "sh", "-c", "ls -d /sys/class/net/"+e.Name+"/queues/rx-*")
	return len(strings.Fields(out))
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
	tb.Cleanup(func() { // before the NICs go back: their counters are this test's
		if tb.Failed() {
			p.logDiagnostics(tb)
		}
	})
	ends := map[*NetNS][]string{}
	for _, pr := range [][2]*LinkEnd{{&p.A, &p.B}, {&p.B, &p.A}} {
		e, peer := pr[0], pr[1]
		e.NS.MustDo(tb, func() error {
			return os.WriteFile("/proc/sys/net/ipv6/conf/"+e.Name+"/accept_ra", []byte("0"), 0)
		})
		ends[e.NS] = append(ends[e.NS],
			fmt.Sprintf("link set %s address %s mtu %d", e.Name, e.MAC, opts.MTU),
			fmt.Sprintf("addr add %s/24 dev %s", e.IP, e.Name),
			fmt.Sprintf("addr add %s/64 dev %s nodad", e.IP6, e.Name),
			fmt.Sprintf("link set %s up", e.Name),
			fmt.Sprintf("neigh replace %s lladdr %s dev %s nud permanent", peer.IP, peer.MAC, e.Name),
			fmt.Sprintf("neigh replace %s lladdr %s dev %s nud permanent", peer.IP6, peer.MAC, e.Name))
	}
	for ns, lines := range ends {
		ns.Batch(tb, lines...)
	}
	return p
}

// logDiagnostics logs what a reader of a failed test needs to tell which
// side stalled: each end's driver counters per queue (ethtool -S: XDP
// packets, drops, where the frames landed) and, on the NICs, the kernel's
// last messages.
func (p *LinkPair) logDiagnostics(tb testing.TB) {
	for _, e := range []*LinkEnd{&p.A, &p.B} {
		out, err := e.NS.Run("ethtool", "-S", e.Name)
		if err != nil {
			out += err.Error()
		}
		tb.Logf("ethtool -S %s (%s):\n%s", e.Name, p.Kind, out)
	}
	if p.Kind == NIC {
		out, _ := run("sh", "-c", "dmesg | tail -n 30")
		tb.Logf("dmesg, last lines:\n%s", out)
	}
}

// SetQueues sets the active RX and TX queues of both ends to n (ethtool
// -L), as LinkOptions.Queues does at the start; n must not exceed it.
func (p *LinkPair) SetQueues(tb testing.TB, n int) {
	tb.Helper()
	RequireTool(tb, "ethtool")
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
	p.A.NS.Batch(tb, fmt.Sprintf("link add %s numrxqueues %s numtxqueues %s type veth peer name %s netns %s numrxqueues %s numtxqueues %s",
		p.A.Name, q, q, p.B.Name, p.B.NS.Name, q, q))
	if queues > 1 {
		p.SetQueues(tb, queues)
	}
}

// lendNICs moves the two NICs of XDPIPE_TEST_NICS into the pair's
// namespaces, renamed to the ends' names, with queues channels and
// interrupt deferral off (SetSysfs turns it on), and registers the cleanup
// that brings them back, checked.
func lendNICs(tb testing.TB, p *LinkPair, queues int) {
	tb.Helper()
	RequireTool(tb, "ethtool")
	nics := strings.Fields(os.Getenv("XDPIPE_TEST_NICS"))
	if len(nics) != 2 {
		tb.Fatalf("XDPIPE_TEST_NICS=%q: want two interface names wired to each other", os.Getenv("XDPIPE_TEST_NICS"))
	}
	if !nicsLent.CompareAndSwap(false, true) {
		tb.Fatalf("the NICs %v are lent to another pair already: a test gets one pair at a time on NICs", nics)
	}
	tb.Cleanup(func() { nicsLent.Store(false) })
	var move []string
	for i, e := range []*LinkEnd{&p.A, &p.B} {
		nic := nics[i]
		out := MustRun(tb, "ethtool", "-l", nic)
		max, set := channels(tb, out)
		if max < queues {
			tb.Skipf("needs %d queues; %s has %d (the VM stage's multi-queue run has more)", queues, nic, max)
		}
		if current(out) != queues {
			MustRun(tb, "ethtool", append([]string{"-L", nic}, set(queues)...)...)
		}
		sys := "/sys/class/net/" + nic + "/"
		var orig [2]string
		for j, attr := range []string{"address", "mtu"} {
			b, err := os.ReadFile(sys + attr)
			if err != nil {
				tb.Fatalf("NIC %s: %v", nic, err)
			}
			orig[j] = strings.TrimSpace(string(b))
		}
		for _, attr := range []string{"napi_defer_hard_irqs", "gro_flush_timeout"} {
			if err := os.WriteFile(sys+attr, []byte("0"), 0); err != nil {
				tb.Fatalf("NIC %s: %v", nic, err)
			}
		}
		move = append(move, "link set dev "+nic+" down", "addr flush dev "+nic,
			"link set dev "+nic+" netns "+e.NS.Name+" name "+e.Name)
		tb.Cleanup(func() { returnNIC(tb, e, nic, orig[0], orig[1]) })
	}
	batch(tb, nil, move)
}

// returnNIC moves a lent NIC back to the test's namespace under its own
// name, MAC and MTU, failing the test if an XDP program is still attached
// or the NIC did not come back. (Deleting the namespace would return it
// too, but to the initial namespace and under the end's name.)
func returnNIC(tb testing.TB, e *LinkEnd, nic, mac, mtu string) {
	if out, err := run("ip", "-n", e.NS.Name, "link", "show", "dev", e.Name); err != nil {
		tb.Errorf("cleanup: %s (%s) gone from %s: %v: %s", e.Name, nic, e.NS.Name, err, out)
		return
	} else if xdpAttached.MatchString(out) {
		tb.Errorf("cleanup: %s (%s) still has an XDP program attached:\n%s", e.Name, nic, out)
	}
	back := fmt.Sprintf("link set dev %s down\naddr flush dev %[1]s\nlink set dev %[1]s netns %d name %s\n", e.Name, os.Getpid(), nic)
	cmd := exec.Command("ip", "-n", e.NS.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(back)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Errorf("cleanup: give back %s: %v: %s", nic, err, out)
		return
	}
	if out, err := run("ip", "link", "set", "dev", nic, "address", mac, "mtu", mtu); err != nil {
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
// rx and tx where the driver counts them apart (veth, which can stand in
// for NICs to try the NIC mode on a host).
func channels(tb testing.TB, out string) (max int, set func(n int) []string) {
	tb.Helper()
	if c := channel(out, "maximums", "Combined"); c > 0 {
		return c, func(n int) []string { return []string{"combined", strconv.Itoa(n)} }
	}
	return min(channel(out, "maximums", "RX"), channel(out, "maximums", "TX")),
		func(n int) []string { return []string{"rx", strconv.Itoa(n), "tx", strconv.Itoa(n)} }
}

// current reads the active queue count from `ethtool -l` output.
func current(out string) int {
	if c := channel(out, "settings", "Combined"); c > 0 {
		return c
	}
	return min(channel(out, "settings", "RX"), channel(out, "settings", "TX"))
}

// channel reads one count of `ethtool -l` output: kind (Combined, RX, TX)
// in the section whose heading ends with section (maximums, settings).
func channel(out, section, kind string) int {
	m := regexp.MustCompile(`(?s)` + section + `:.*?` + kind + `:\s+(\d+)`).FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
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
