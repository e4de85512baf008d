package pipeline

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/internal/frame"
	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/xsk"
)

// Link tests: frames are sent from namespace A with an AF_PACKET socket into
// the link (veth, or the VM stage's NICs: testutil.NewLinkPair), the
// redirect program on B hands them to an AF_XDP socket, the worker
// processes them, and what it transmits is read back in A (or on a second
// pair) with another AF_PACKET socket.

// openXsk attaches the redirect program to e and opens an AF_XDP socket on
// its queue, bound in testutil.Bind's mode, registered in the XSKMAP.
// Closed at the end of the test.
func openXsk(t *testing.T, e *testutil.LinkEnd, u *xsk.Umem, queue int, so xsk.SocketOptions) *xsk.Socket {
	t.Helper()
	return openXskWith(t, e, u, queue, so, bpf.RedirectOptions{}, bpf.AttachAuto)
}

// openXskWith is openXsk with the program's options and attach mode.
func openXskWith(t *testing.T, e *testutil.LinkEnd, u *xsk.Umem, queue int, so xsk.SocketOptions, ro bpf.RedirectOptions, mode bpf.AttachMode) *xsk.Socket {
	t.Helper()
	so.Bind, _ = xsk.ParseBindMode(testutil.Bind())
	ifindex := e.Ifindex(t)
	var s *xsk.Socket
	e.NS.MustDo(t, func() error {
		r, err := bpf.LoadRedirect(ro)
		if err != nil {
			return err
		}
		t.Cleanup(func() { r.Close() })
		if _, err := r.Attach(ifindex, mode); err != nil {
			return err
		}
		// Fill before the first frame can arrive: on Linux 6.18 veth copy
		// mode a socket that meets traffic with an empty fill ring can stop
		// receiving for good (see the package doc, "Fill before register"),
		// and a zero-copy driver fills its RX queue at bind.
		so.Prefill = true
		if s, err = xsk.NewSocket(u, ifindex, queue, so); err != nil {
			return err
		}
		t.Cleanup(func() { s.Close() })
		return r.Register(queue, s.FD())
	})
	return s
}

// testFrame is a UDP frame from src to dst (MACs of the veth ends) to port
// 9 with a sequence number at the start of the payload.
func testFrame(t testing.TB, src, dst *testutil.LinkEnd, seq uint32, size int) []byte {
	f := buildFrame(t, frameSpec{sport: 40000, dport: 9, payload: size - 42,
		src: netipFrom(src.IP), dst: netipFrom(dst.IP)})
	copy(f[0:6], dst.MAC)
	copy(f[6:12], src.MAC)
	binary.BigEndian.PutUint32(f[42:46], seq)
	return f
}

// isTestFrame recognises testFrame's frames (UDP to port 9 from 40000).
func isTestFrame(f []byte) bool {
	return len(f) >= 46 && binary.BigEndian.Uint16(f[12:14]) == frame.EtherTypeIPv4 && f[23] == frame.ProtoUDP &&
		binary.BigEndian.Uint16(f[34:36]) == 40000 && binary.BigEndian.Uint16(f[36:38]) == 9
}

// waitCount waits until got, frames that arrived, reaches want and
// everything the worker has transmitted towards them (sent), and checks
// that it is want: a frame the worker sent twice, or one more, arrives
// before this returns.
func waitCount(t *testing.T, what string, want int64, got, sent func() int64) {
	t.Helper()
	testutil.EventuallyErr(t, 10*time.Second, func() error {
		if g, s := got(), sent(); g < max(want, s) {
			return fmt.Errorf("%s: %d of %d, the worker transmitted %d", what, g, want, s)
		}
		return nil
	})
	if g := got(); g != want {
		t.Fatalf("%s: %d, want %d", what, g, want)
	}
}

// testOnly is a filter stage that drops what is not a test frame (IPv6
// neighbour discovery and MLD from the namespaces), so counts are exact.
func testOnly(t *testing.T) *Filter { return portFilter(t, 9) }

// TestVethL2fwd: every frame comes back to the sender with MACs swapped,
// count and content checked, and the UMEM accounts for every frame after;
// 9000-byte frames on a link with MTU 9000 too, multi-buffer packets of
// three segments, byte for byte.
func TestVethL2fwd(t *testing.T) {
	testutil.RequireRoot(t)
	t.Run("64", func(t *testing.T) { testVethL2fwd(t, 64, 5000) })
	t.Run("9000", func(t *testing.T) { testVethL2fwd(t, 9000, 500) })
}

// testVethL2fwd is TestVethL2fwd with n frames of size bytes.
func testVethL2fwd(t *testing.T, size, n int) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{MTU: max(size, 1500)})
	u, err := xsk.NewUmem(xsk.UmemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	s := openXsk(t, &p.B, u, 0, xsk.SocketOptions{MultiBuffer: size > xsk.FrameData(0)})
	count := &Count{}
	poll := PollWakeup
	if os.Getenv("XSPIN") != "" {
		poll = PollSpin
	}
	w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{p.B.Name, s}}, Mem: u, Stages: []Stage{testOnly(t), count, &MacSwap{}}, Poll: poll})
	if err != nil {
		t.Fatal(err)
	}
	back := testutil.OpenPacketSocket(t, &p.A, isTestFrame)
	stop := runWorker(t, w)
	defer func() {
		if t.Failed() {
			st, _ := s.Stats()
			ps := w.PortStats(0)
			t.Logf("accounting %+v fill needwakeup %v", u.Accounting(), s.Fill().NeedWakeup())
			t.Logf("worker rx %d tx %d txfull %d dropped %d; xsk %+v; A %s", ps.RxPackets.Load(), ps.TxPackets.Load(),
				ps.TxRingFull.Load(), w.Stats().Dropped.Load(), st, p.A.NS.MustRun(t, "ip", "-s", "link", "show", p.A.Name))
		}
	}()
	win := 128
	if v, _ := strconv.Atoi(os.Getenv("XWIN")); v > 0 {
		win = v
	}
	back.SendWindow(t, 0, n, win, back.Received, func(i int) []byte { return testFrame(t, &p.A, &p.B, uint32(i), size) })
	waitCount(t, "frames back at A", int64(n), back.Received, txPackets(w, 0))
	stop()
	sameFrames(t, back.Frames(), n, func(seq uint32) []byte { // MACs swapped: dst A, src B
		want := testFrame(t, &p.A, &p.B, seq, size)
		copy(want[0:6], p.A.MAC)
		copy(want[6:12], p.B.MAC)
		return want
	})
	if ps := w.PortStats(0); count.Packets.Load() != uint64(n) || count.Bytes.Load() != uint64(n*size) || ps.TxPackets.Load() != uint64(n) ||
		ps.TxBytes.Load() != uint64(n*size) {
		t.Fatalf("worker counted %d packets, %d bytes; sent %d, %d bytes", count.Packets.Load(), count.Bytes.Load(), ps.TxPackets.Load(), ps.TxBytes.Load())
	}
	waitAccounting(t, u)
}

// txPackets reads what the worker has transmitted on port i.
func txPackets(w *Worker, i int) func() int64 {
	return func() int64 { return int64(w.PortStats(i).TxPackets.Load()) }
}

// waitAccounting checks the UMEM's frame accounting once the kernel has
// returned what it was sending.
func waitAccounting(t *testing.T, u *xsk.Umem) {
	t.Helper()
	testutil.EventuallyErr(t, 10*time.Second, func() error { return u.Accounting().Check() })
}

func netipFrom(ip net.IP) (a netipAddr) {
	a, _ = netipAddrFromSlice(ip.To4())
	return a
}

// TestVethForward: frames from pair 1's A reach the socket on pair 1's B and
// are forwarded, MACs rewritten, out of the socket on pair 2's B (sharing
// the UMEM: no copy) to pair 2's A. Every frame arrives.
func TestVethForward(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireVeth(t, "two pairs; cmd/xdpipe's TestRunForward forwards between the two NICs")
	t.Run("128", func(t *testing.T) { testVethForward(t, 128, 3000) })
	t.Run("9000", func(t *testing.T) { testVethForward(t, 9000, 500) })
}

// testVethForward is TestVethForward with n frames of size bytes (on
// links whose MTU takes them: multi-buffer packets at 9000).
func testVethForward(t *testing.T, size, n int) {
	p1 := testutil.NewLinkPair(t, testutil.LinkOptions{MTU: max(size, 1500)})
	p2 := testutil.NewLinkPair(t, testutil.LinkOptions{MTU: max(size, 1500)})
	u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 8192})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	// Both B ends in one namespace, as the two ports of one box: move pair
	// 2's B next to pair 1's, renamed (xsk tells queues apart by ifindex,
	// which repeats across namespaces).
	p2.B.NS.MustRun(t, "ip", "link", "set", p2.B.Name, "netns", p1.B.NS.Name, "name", "xdpc")
	p2.B.NS, p2.B.Name = p1.B.NS, "xdpc"
	p2.B.NS.MustRun(t, "ip", "link", "set", "xdpc", "up")
	so := xsk.SocketOptions{MultiBuffer: size > xsk.FrameData(0)}
	s1 := openXsk(t, &p1.B, u, 0, so)
	s2 := openXsk(t, &p2.B, u, 0, so)
	stages := []Stage{testOnly(t), &Rewrite{SrcMAC: p2.B.MAC, DstMAC: p2.A.MAC}, &Forward{To: "out"}}
	w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{"in", s1}, {"out", s2}}, Mem: u, Stages: stages, Poll: PollWakeup})
	if err != nil {
		t.Fatal(err)
	}
	src := testutil.OpenPacketSocket(t, &p1.A, isTestFrame)
	dst := testutil.OpenPacketSocket(t, &p2.A, isTestFrame)
	stop := runWorker(t, w)
	src.SendWindow(t, 0, n, 128, dst.Received, func(i int) []byte { return testFrame(t, &p1.A, &p1.B, uint32(i), size) })
	waitCount(t, "frames at pair 2", int64(n), dst.Received, txPackets(w, 1))
	stop()
	if src.Received() != 0 {
		t.Errorf("%d frames came back to the sender", src.Received())
	}
	sameFrames(t, dst.Frames(), n, func(seq uint32) []byte {
		want := testFrame(t, &p1.A, &p1.B, seq, size)
		copy(want[0:6], p2.A.MAC)
		copy(want[6:12], p2.B.MAC)
		return want
	})
	if w.PortStats(0).RxPackets.Load() < uint64(n) || w.PortStats(1).TxPackets.Load() != uint64(n) {
		t.Fatalf("in rx %d, out tx %d", w.PortStats(0).RxPackets.Load(), w.PortStats(1).TxPackets.Load())
	}
	waitAccounting(t, u)
}

// TestVethPcap captures l2fwd traffic to pcap files (with rotation) and reads
// them back with gopacket and tshark: same frame count as sent.
func TestVethPcap(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "tshark")
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	u, err := xsk.NewUmem(xsk.UmemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	s := openXsk(t, &p.B, u, 0, xsk.SocketOptions{})
	dir := t.TempDir()
	// Only test frames are captured: the filter keeps UDP port 9.
	keep := testOnly(t)
	pc, err := NewPcap(PcapOptions{Path: dir + "/l2fwd.pcap", SnapLen: 96, MaxBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{p.B.Name, s}}, Mem: u, Stages: []Stage{keep, pc, &MacSwap{}}, Poll: PollWakeup})
	if err != nil {
		t.Fatal(err)
	}
	back := testutil.OpenPacketSocket(t, &p.A, isTestFrame)
	stop := runWorker(t, w)
	const n = 3000
	back.SendWindow(t, 0, n, 128, back.Received, func(i int) []byte { return testFrame(t, &p.A, &p.B, uint32(i), 200) })
	waitCount(t, "frames back", n, back.Received, txPackets(w, 0))
	stop()
	if err := pc.Close(); err != nil {
		t.Fatal(err)
	}
	files := pc.Files()
	if len(files) < 2 {
		t.Fatalf("no rotation: %v", files)
	}
	total, tsharkTotal := 0, 0
	seen := make([]bool, n)
	for _, name := range files {
		frames := readPcap(t, name)
		for _, f := range frames {
			if len(f) != 96 || !isTestFrame(f) {
				t.Fatalf("%s: bad captured frame (%d bytes)", name, len(f))
			}
			seq := binary.BigEndian.Uint32(f[42:46])
			if seq >= n || seen[seq] {
				t.Fatalf("%s: frame %d unknown or twice", name, seq)
			}
			seen[seq] = true
		}
		total += len(frames)
		tsharkTotal += tsharkCount(t, name)
	}
	if total != n || tsharkTotal != n || pc.Packets.Load() != n {
		t.Fatalf("gopacket read %d, tshark %d, stage wrote %d; sent %d", total, tsharkTotal, pc.Packets.Load(), n)
	}
	t.Logf("%d frames in %d files", total, len(files))
}

// tsharkCount counts the frames tshark reads from a capture file.
func tsharkCount(t *testing.T, name string) int {
	t.Helper()
	out, err := exec.Command("tshark", "-r", name, "-T", "fields", "-e", "frame.number").Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v", name, err)
	}
	return len(strings.Fields(string(out)))
}

// TestVethTXRingFull forces TX-ring-full pressure (an 8-entry TX ring, a
// 64-frame TX batch) and checks that every frame is accounted for: received
// = transmitted + dropped for a full ring, and the UMEM's places add up.
func TestVethTXRingFull(t *testing.T) {
	testutil.RequireRoot(t)
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	u, err := xsk.NewUmem(xsk.UmemOptions{Debug: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	s := openXsk(t, &p.B, u, 0, xsk.SocketOptions{TXSize: 8})
	w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{p.B.Name, s}}, Mem: u, Stages: []Stage{testOnly(t), &MacSwap{}}, Poll: PollWakeup})
	if err != nil {
		t.Fatal(err)
	}
	back := testutil.OpenPacketSocket(t, &p.A, isTestFrame)
	stop := runWorker(t, w)
	const n = 5000
	ps := w.PortStats(0)
	handled := func() int64 { return int64(ps.TxPackets.Load() + ps.TxRingFull.Load()) }
	back.SendWindow(t, 0, n, 256, handled, func(i int) []byte { return testFrame(t, &p.A, &p.B, uint32(i), 64) })
	testutil.EventuallyErr(t, 10*time.Second, func() error {
		if h := handled(); h < n {
			return fmt.Errorf("the worker transmitted or dropped for a full TX ring %d of %d frames", h, n)
		}
		return nil
	})
	stop()
	rx, tx, full, other := ps.RxPackets.Load(), ps.TxPackets.Load(), ps.TxRingFull.Load(), w.Stats().Dropped.Load()
	t.Logf("rx %d (%d not test frames, dropped), tx %d, dropped for a full TX ring %d, back at A %d", rx, other, tx, full, back.Received())
	if tx+full != n || rx != tx+full+other {
		t.Fatalf("rx %d != tx %d + tx-ring-full %d + dropped %d (sent %d)", rx, tx, full, other, n)
	}
	if full == 0 {
		t.Fatal("no TX-ring-full pressure")
	}
	waitAccounting(t, u)
	if a := u.Accounting(); a.App != 0 || a.TX != 0 {
		t.Fatalf("frames left with the application or on TX: %+v", a)
	}
}

// sameFrames checks that frames are want(seq) for each sequence number
// below n, byte for byte, each once.
func sameFrames(t *testing.T, frames [][]byte, n int, want func(seq uint32) []byte) {
	t.Helper()
	seen := make([]bool, n)
	for _, f := range frames {
		seq := binary.BigEndian.Uint32(f[42:46])
		if int(seq) >= n || seen[seq] || string(f) != string(want(seq)) {
			t.Fatalf("frame %d (%d bytes) differs or is a duplicate", seq, len(f))
		}
		seen[seq] = true
	}
}
