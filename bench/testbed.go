package bench

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// testbed is two network namespaces joined by a veth pair, made by the
// harness and removed by close: A sends, B receives. Addresses are from
// 198.18.0.0/15.
type testbed struct {
	nsA, nsB   string
	ifA, ifB   string
	macA, macB net.HardwareAddr
	ipA, ipB   net.IP
	ifindexA   int
	mtu        int
	made       []string // namespaces to delete
	dir        string   // scratch files (rules), removed by close
	bpfMounted bool     // a bpffs is mounted on dir/bpf (see bpffs)

	// genMAC is the generated frames' source MAC: not A's own, so that
	// what comes back to A (l2fwd swaps the MACs and sends every frame
	// back) is PACKET_OTHERHOST there and dropped at the first check in
	// ip_rcv, instead of taking a route lookup (ip_route_input_slow, the
	// destination is B's address) and a dst_destroy in A's IP stack on
	// the generator's CPU, which a real deployment, whose sender is
	// another host, would not pay. No receiver looks at the source MAC.
	genMAC net.HardwareAddr
}

func sh(name string, args ...string) error {
	var buf bytes.Buffer
	c := exec.Command(name, args...)
	c.Stdout, c.Stderr = &buf, &buf
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(buf.String()))
	}
	return nil
}

func newTestbed() (_ *testbed, err error) {
	id := os.Getpid() % 100000
	t := &testbed{
		nsA: fmt.Sprintf("xdpipe-bench-a%d", id), nsB: fmt.Sprintf("xdpipe-bench-b%d", id),
		ifA: fmt.Sprintf("xbA%d", id), ifB: fmt.Sprintf("xbB%d", id),
		macA: net.HardwareAddr{0x02, 0x58, 0x42, 0x45, 0x4e, 0x0a},
		macB: net.HardwareAddr{0x02, 0x58, 0x42, 0x45, 0x4e, 0x0b},
		ipA:  net.IPv4(198, 19, 254, 1).To4(), ipB: net.IPv4(198, 19, 254, 2).To4(),
		mtu: 1500,
		// Locally administered, unicast, on no interface.
		genMAC: net.HardwareAddr{0x02, 0x58, 0x42, 0x45, 0x4e, 0x6a},
	}
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	if t.dir, err = os.MkdirTemp("", "xdpipe-bench-"); err != nil {
		return nil, err
	}
	for _, ns := range []string{t.nsA, t.nsB} {
		if err := sh("ip", "netns", "add", ns); err != nil {
			return nil, fmt.Errorf("testbed (needs root): %w", err)
		}
		t.made = append(t.made, ns)
		if err := sh("ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			return nil, err
		}
		// No IPv6 in the testbed: router solicitations and MLD reports
		// would mix with the generated frames and be counted.
		for _, k := range []string{"all", "default"} {
			if err := sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf."+k+".disable_ipv6=1"); err != nil {
				return nil, err
			}
		}
	}
	if err := sh("ip", "-n", t.nsA, "link", "add", t.ifA, "type", "veth", "peer", "name", t.ifB, "netns", t.nsB); err != nil {
		return nil, err
	}
	for _, e := range []struct {
		ns, ifc string
		mac     net.HardwareAddr
		ip      net.IP
	}{{t.nsA, t.ifA, t.macA, t.ipA}, {t.nsB, t.ifB, t.macB, t.ipB}} {
		for _, args := range [][]string{
			{"link", "set", e.ifc, "address", e.mac.String()},
			{"addr", "add", e.ip.String() + "/24", "dev", e.ifc},
			{"link", "set", e.ifc, "up"},
		} {
			if err := sh("ip", append([]string{"-n", e.ns}, args...)...); err != nil {
				return nil, err
			}
		}
	}
	if err := sh("ip", "-n", t.nsA, "neigh", "replace", t.ipB.String(), "lladdr", t.macB.String(), "dev", t.ifA, "nud", "permanent"); err != nil {
		return nil, err
	}
	if err := t.inA(func() error {
		ifc, err := net.InterfaceByName(t.ifA)
		if err == nil {
			t.ifindexA = ifc.Index
		}
		return err
	}); err != nil {
		return nil, err
	}
	return t, nil
}

// setMTU sets both ends' MTU (frames up to mtu+14 bytes pass).
func (t *testbed) setMTU(mtu int) error {
	if mtu == t.mtu {
		return nil
	}
	for _, e := range [][2]string{{t.nsA, t.ifA}, {t.nsB, t.ifB}} {
		if err := sh("ip", "-n", e[0], "link", "set", e[1], "mtu", fmt.Sprint(mtu)); err != nil {
			return err
		}
	}
	t.mtu = mtu
	return nil
}

// inA runs fn on a thread in namespace A and comes back.
func (t *testbed) inA(fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return err
	}
	defer self.Close()
	if err := enterNS(t.nsA); err != nil {
		return err
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// Do not unlock: the runtime drops this thread when the goroutine ends.
		runtime.LockOSThread()
		return fmt.Errorf("setns back: %w", err)
	}
	return ferr
}

// enterNS moves the calling (locked) thread into a named namespace.
func enterNS(name string) error {
	f, err := os.Open("/var/run/netns/" + name)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns %s: %w", name, err)
	}
	return nil
}

// close deletes the namespaces (and with them the veth pair); idempotent.
func (t *testbed) close() {
	for _, ns := range t.made {
		_ = sh("ip", "netns", "del", ns)
	}
	t.made = nil
	if t.bpfMounted {
		_ = unix.Unmount(filepath.Join(t.dir, "bpf"), 0)
		t.bpfMounted = false
	}
	if t.dir != "" {
		os.RemoveAll(t.dir)
		t.dir = ""
	}
}
