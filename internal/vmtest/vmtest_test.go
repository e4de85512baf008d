package vmtest_test

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/netdev"
	"github.com/xdpipe/xdpipe/xsk"
)

func TestMain(m *testing.M) { testutil.RunCheckingLeaks(m) }

// TestGuestNICs runs first in each boot of TestVMZeroCopy and
// TestVMRxMetadata (it skips on the host): each NIC in XDPIPE_VM_NICS exists, has XDPIPE_VM_QUEUES combined
// channels, xsk-zerocopy in its xdp-features, and binds an AF_XDP socket in
// zero-copy mode on every queue; the NIC of XDPIPE_VM_HASH_NIC, if any,
// has receive-hashing on and offers the RX hash to XDP programs
// (xdp-rx-metadata-features), which the others, without RSS or hash
// reports, do not offer at all; the NIC without iommu_platform refuses
// zero-copy and binds in copy mode; frames sent out of one NIC arrive, all
// of them, at the other.
func TestGuestNICs(t *testing.T) {
	if os.Getenv("XDPIPE_IN_VM") == "" {
		t.Skip("runs inside the VM (TestVMZeroCopy boots it)")
	}
	testutil.RequireRoot(t)
	nics := strings.Fields(os.Getenv("XDPIPE_VM_NICS"))
	queues, err := strconv.Atoi(os.Getenv("XDPIPE_VM_QUEUES"))
	if len(nics) != 2 || err != nil || queues < 1 {
		t.Fatalf("XDPIPE_VM_NICS %q, XDPIPE_VM_QUEUES %q: want two NICs and a queue count", nics, os.Getenv("XDPIPE_VM_QUEUES"))
	}
	for _, name := range nics {
		if got := combinedChannels(t, name); got != queues {
			t.Errorf("%s: %d combined channels, want %d", name, got, queues)
		}
		d := describe(t, name)
		if !d.Features.Has(netdev.XDPXSKZeroCopy) || d.RXQueues != queues || d.TXQueues != queues {
			t.Errorf("%s: %v, %d rx and %d tx queues: want xsk-zerocopy and %d queues", name, d, d.RXQueues, d.TXQueues, queues)
		}
		checkRxMetadata(t, name, d)
		for q := 0; q < queues; q++ {
			if mode, err := bind(t, name, q, xsk.BindZeroCopy); err != nil || mode != xsk.BindZeroCopy {
				t.Errorf("%s queue %d: zero-copy bind: mode %v, %v", name, q, mode, err)
			}
		}
	}
	if name := os.Getenv("XDPIPE_VM_NOIOMMU_NIC"); name != "" {
		// Without iommu_platform the driver has no DMA API: the kernel
		// refuses the zero-copy bind with EINVAL (not EOPNOTSUPP, though
		// the NIC advertises xsk-zerocopy).
		d := describe(t, name)
		t.Logf("%s (no iommu_platform): %v", name, d)
		checkRxMetadata(t, name, d)
		if _, err := bind(t, name, 0, xsk.BindZeroCopy); !errors.Is(err, unix.EINVAL) {
			t.Errorf("%s (no iommu_platform): zero-copy bind: %v, want EINVAL", name, err)
		}
		if mode, err := bind(t, name, 0, xsk.BindCopy); err != nil || mode != xsk.BindCopy {
			t.Errorf("%s (no iommu_platform): copy bind: mode %v, %v", name, mode, err)
		}
	}
	t.Run("wire", func(t *testing.T) { wire(t, nics[0], nics[1]) })
}

// checkRxMetadata checks the RX metadata the NIC offers XDP programs, d's,
// and its receive-hashing: the hash, and on, on XDPIPE_VM_HASH_NIC; none,
// and fixed off, on the others (virtio_net sets its metadata operations
// only with RSS or hash reports).
func checkRxMetadata(t *testing.T, name string, d netdev.Device) {
	t.Helper()
	want, hashing := netdev.RxMetadata(0), "off [fixed]"
	if name == os.Getenv("XDPIPE_VM_HASH_NIC") {
		want, hashing = netdev.RxHash, "on"
	}
	out := testutil.MustRun(t, "ethtool", "-k", name)
	if got := receiveHashing.FindStringSubmatch(out); d.RxMetadata != want || got == nil || got[1] != hashing {
		t.Errorf("%s: xdp-rx-metadata %v, receive-hashing %q: want %v and %q", name, d.RxMetadata, got, want, hashing)
	}
}

var receiveHashing = regexp.MustCompile(`(?m)^receive-hashing: (.*)$`)

// describe is what the netdev family says about the NIC.
func describe(t *testing.T, name string) netdev.Device {
	t.Helper()
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatal(err)
	}
	d, err := netdev.Get(ifc.Index)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

var combinedRe = regexp.MustCompile(`(?s)Current hardware settings:.*?Combined:\s*(\d+)`)

// combinedChannels is the NIC's active combined channel count (ethtool -l).
func combinedChannels(t *testing.T, name string) int {
	t.Helper()
	out := testutil.MustRun(t, "ethtool", "-l", name)
	m := combinedRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("ethtool -l %s: no current combined count in\n%s", name, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// bind binds an AF_XDP socket with small rings to queue q of the NIC in the
// given mode, closes it and reports the mode it got.
func bind(t *testing.T, name string, q int, mode xsk.BindMode) (xsk.BindMode, error) {
	t.Helper()
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatal(err)
	}
	u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 256, FillSize: 128, CompletionSize: 128})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	s, err := xsk.NewSocket(u, ifc.Index, q, xsk.SocketOptions{RXSize: 128, TXSize: 128, Bind: mode})
	if err != nil {
		return 0, err
	}
	got := s.Mode()
	if err := s.Close(); err != nil {
		t.Errorf("close %s queue %d: %v", name, q, err)
	}
	return got, nil
}

// wire sends frames out of NIC a to NIC b's MAC, each NIC in a namespace of
// its own (the guest's stack would otherwise keep traffic between two local
// NICs to itself), and checks that b receives every one of them.
func wire(t *testing.T, a, b string) {
	const n = 50
	const etherType = 0x88b5 // IEEE local experimental: nothing else sends it
	var ends [2]*testutil.LinkEnd
	for i, name := range []string{a, b} {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			t.Fatal(err)
		}
		ns := testutil.NewNetNS(t)
		// Deleting the namespace moves the NIC back to the guest's own.
		testutil.MustRun(t, "ip", "link", "set", name, "netns", ns.Name)
		ns.MustRun(t, "ip", "link", "set", name, "up")
		ends[i] = &testutil.LinkEnd{NS: ns, Name: name, MAC: ifc.HardwareAddr}
	}
	mark := []byte("xdpipe vmtest wire")
	keep := func(f []byte) bool {
		return len(f) >= 14+len(mark) && f[12] == etherType>>8 && f[13] == etherType&0xff && bytes.Equal(f[14:14+len(mark)], mark)
	}
	tx := testutil.OpenPacketSocket(t, ends[0], nil)
	rx := testutil.OpenPacketSocket(t, ends[1], keep)
	frame := make([]byte, 64)
	copy(frame, ends[1].MAC)
	copy(frame[6:], ends[0].MAC)
	frame[12], frame[13] = etherType>>8, etherType&0xff
	copy(frame[14:], mark)
	for i := 0; i < n; i++ {
		tx.Send(t, frame)
	}
	deadline := time.Now().Add(20 * time.Second)
	for rx.Received() < n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // a duplicate would arrive by now
	if got := rx.Received(); got != n {
		out, _ := exec.Command("ip", "netns", "exec", ends[1].NS.Name, "ip", "-s", "link", "show", b).CombinedOutput()
		t.Fatalf("%s received %d of %d frames sent by %s\n%s", b, got, n, a, out)
	}
}
