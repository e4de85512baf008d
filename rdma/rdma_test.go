//go:build rdma

package rdma_test

// These tests need RDMA devices: they run inside the SoftRoCE VM
// (hack/vm/run.sh with hack/vm/rdma/guest-test.sh, driven from the
// host by TestSoftRoCE in vm_test.go), which exports the rxe pair as
// RXE_A_IP / RXE_B_IP (198.18.0.1 / 198.18.0.2).

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/gen"
	"github.com/xdpipe/xdpipe/internal/monotime"
	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/rdma"
)

func TestMain(m *testing.M) {
	if os.Getenv("XDPIPE_RDMA_HELPER") != "" {
		os.Exit(helperMain())
	}
	// librdmacm opens every device's verbs context on first use and keeps
	// it for the life of the process: warm it up before the leak snapshot.
	if a, b := os.Getenv("RXE_A_IP"), os.Getenv("RXE_B_IP"); a != "" && b != "" {
		for _, ip := range []string{a, b} {
			if l, err := rdma.Listen(net.JoinHostPort(ip, "0"), rdma.ListenOptions{}); err == nil {
				l.Close()
			}
		}
	}
	os.Exit(testutil.CheckLeaks(m))
}

// pair returns the sender's and the sink's IP address of the rxe pair.
func pair(t *testing.T) (a, b string) {
	t.Helper()
	a, b = os.Getenv("RXE_A_IP"), os.Getenv("RXE_B_IP")
	if a == "" || b == "" {
		testutil.SkipOrFail(t, "no SoftRoCE pair (RXE_A_IP, RXE_B_IP): these tests run in the VM, via TestSoftRoCE or hack/vm/rdma/guest-test.sh")
	}
	return a, b
}

var nextPort atomic.Int32

func init() { nextPort.Store(20000 + int32(os.Getpid()%1000)*10) }

func addr(ip string) string { return net.JoinHostPort(ip, strconv.Itoa(int(nextPort.Add(1)))) }

// region is an mmap'd packet region (like a UMEM) of n frames of size bytes.
func region(t testing.TB, n, size int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n*size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

// connect sets up a listener on the sink side and a sender, and returns
// both ends; everything is closed by the test's cleanup.
func connect(t *testing.T, reg []byte, lo rdma.ListenOptions, do rdma.DialOptions) (*rdma.Sender, *rdma.Receiver) {
	t.Helper()
	a, b := pair(t)
	l, err := rdma.Listen(addr(b), lo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	type res struct {
		r   *rdma.Receiver
		err error
	}
	ch := make(chan res, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		r, err := l.Accept(ctx)
		ch <- res{r, err}
	}()
	do.Source = a
	s, err := rdma.Dial(ctx, l.Addr(), reg, do)
	if err != nil {
		t.Fatal(err)
	}
	got := <-ch
	if got.err != nil {
		s.Close()
		t.Fatal(got.err)
	}
	t.Cleanup(func() { got.r.Close() })
	t.Cleanup(func() { s.Close() })
	return s, got.r
}

func TestNoDevice(t *testing.T) {
	_, err := rdma.Devices()
	if os.Getenv("XDPIPE_RDMA_NODEV") == "" && err == nil {
		t.Skip("this machine has RDMA devices; the VM runs this test before it creates any")
	}
	if !errors.Is(err, rdma.ErrNoDevice) {
		t.Fatalf("Devices: %v, want ErrNoDevice", err)
	}
	reg := region(t, 4, 4096)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := rdma.Dial(ctx, "198.18.0.2:20000", reg, rdma.DialOptions{}); !errors.Is(err, rdma.ErrNoDevice) {
		t.Errorf("Dial: %v, want ErrNoDevice", err)
	}
	if _, err := rdma.Listen("198.18.0.2:20000", rdma.ListenOptions{}); !errors.Is(err, rdma.ErrNoDevice) {
		t.Errorf("Listen: %v, want ErrNoDevice", err)
	}
	t.Logf("Dial and Listen without devices: %v", err)
}

func TestDevices(t *testing.T) {
	pair(t)
	devs, err := rdma.Devices()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]rdma.Device{}
	for _, d := range devs {
		names[d.Name] = d
		t.Logf("%s guid %s max_qp_wr %d ports %+v", d.Name, d.GUID, d.MaxQPWR, d.Ports)
	}
	for _, n := range []string{os.Getenv("RXE_A_DEV"), os.Getenv("RXE_B_DEV")} {
		d, ok := names[n]
		if !ok {
			t.Fatalf("device %s missing from %v", n, devs)
		}
		if len(d.Ports) != 1 || d.Ports[0].State != "ACTIVE" || d.Ports[0].LinkLayer != "Ethernet" {
			t.Errorf("%s ports %+v, want one ACTIVE Ethernet port", n, d.Ports)
		}
	}
}

func TestConnect(t *testing.T) {
	reg := region(t, 16, 2048)
	start := time.Now()
	s, r := connect(t, reg, rdma.ListenOptions{Buffers: 64, BufferSize: 2048}, rdma.DialOptions{})
	t.Logf("connected in %v", time.Since(start))
	t.Cleanup(func() {
		start := time.Now()
		s.Close()
		t.Logf("sender closed in %v", time.Since(start))
		start = time.Now()
		r.Close()
		t.Logf("receiver closed in %v", time.Since(start))
	})
	if s.MaxMessage() != 2048 {
		t.Errorf("MaxMessage %d, want 2048", s.MaxMessage())
	}
	if mtu := s.PathMTU(); mtu < 256 || mtu > 4096 {
		t.Errorf("PathMTU %d", mtu)
	}
	if st := s.Stats(); st.Credits != 63 { // one kept for the FIN
		t.Errorf("credits %d, want 63", st.Credits)
	}
	a, _ := pair(t)
	if !strings.HasPrefix(r.Remote(), a+":") {
		t.Errorf("Remote %q, want %s:port", r.Remote(), a)
	}
}

// frames is a free stack of frame offsets in a region, like the UMEM's.
type frames struct {
	free []uint64
	size int
	all  int
}

func newFrames(n, size int) *frames {
	f := &frames{size: size, all: n}
	for i := n - 1; i >= 0; i-- {
		f.free = append(f.free, uint64(i*size))
	}
	return f
}

func (f *frames) alloc() (uint64, bool) {
	if len(f.free) == 0 {
		return 0, false
	}
	a := f.free[len(f.free)-1]
	f.free = f.free[:len(f.free)-1]
	return a, true
}

func (f *frames) put(ds []rdma.Desc) {
	for _, d := range ds {
		f.free = append(f.free, d.Addr-d.Addr%uint64(f.size))
	}
}

// content fills p as packet i: the index, then a pattern that depends on it.
func content(p []byte, i uint64) {
	binary.LittleEndian.PutUint64(p, i)
	for j := 8; j < len(p); j++ {
		p[j] = byte(uint64(j)*7 + i)
	}
}

func pktLen(i uint64) int { return 64 + int(i*97%1985) } // 64..2048

// stream sends count packets built by fill from the region's frames,
// returning frames as their sends complete; it stops early on an error.
// A stream that makes no progress for a minute fails: never a hang.
func stream(s *rdma.Sender, reg []byte, fr *frames, count uint64, fill func(p []byte, i uint64) int) (uint64, error) {
	burst := make([]rdma.Desc, 0, 64)
	done := make([]rdma.Desc, 256)
	var i uint64
	last, lastI := time.Now(), uint64(0)
	for iter := 0; i < count; iter++ {
		if iter%1024 == 0 {
			if i != lastI {
				last, lastI = time.Now(), i
			} else if time.Since(last) > time.Minute {
				fr.put(burst)
				return i, fmt.Errorf("no progress for a minute after %d packets (%d in flight)", i, s.InFlight())
			}
		}
		for len(burst) < cap(burst) && i+uint64(len(burst)) < count {
			a, ok := fr.alloc()
			if !ok {
				break
			}
			n := fill(reg[a:a+uint64(fr.size)], i+uint64(len(burst)))
			burst = append(burst, rdma.Desc{Addr: a, Len: uint32(n)})
		}
		n, err := s.Send(burst)
		i += uint64(n)
		burst = append(burst[:0], burst[n:]...)
		m, cerr := s.Completed(done)
		fr.put(done[:m])
		if err != nil {
			fr.put(burst)
			return i, err
		}
		if cerr != nil {
			fr.put(burst)
			return i, cerr
		}
	}
	return i, nil
}

func TestDeliverExact(t *testing.T) {
	const n = 20000
	reg := region(t, 256, 2048)
	fr := newFrames(256, 2048)
	s, r := connect(t, reg, rdma.ListenOptions{Buffers: 128, BufferSize: 2048}, rdma.DialOptions{SendQueue: 128})

	errc := make(chan error, 1)
	go func() {
		pkts := make([][]byte, 64)
		want := make([]byte, 2048)
		var got uint64
		for got < n {
			k, err := r.Receive(pkts)
			if err != nil {
				errc <- fmt.Errorf("after %d packets: %w", got, err)
				return
			}
			for _, p := range pkts[:k] {
				l := pktLen(got)
				content(want[:l], got)
				if !bytes.Equal(p, want[:l]) {
					errc <- fmt.Errorf("packet %d: %d bytes, want %d; first bytes % x", got, len(p), l, p[:min(16, len(p))])
					return
				}
				got++
			}
		}
		errc <- nil
	}()
	sent, err := stream(s, reg, fr, n, func(p []byte, i uint64) int {
		l := pktLen(i)
		content(p[:l], i)
		return l
	})
	if err != nil {
		t.Fatalf("sent %d: %v", sent, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Drain(ctx, fr.put); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if len(fr.free) != fr.all {
		t.Errorf("frame accounting: %d free of %d after drain", len(fr.free), fr.all)
	}
	st := s.Stats()
	if st.Sent != n || st.Completed != n {
		t.Errorf("stats %+v, want %d sent and completed", st, n)
	}
	t.Logf("sender %+v receiver %+v", st, r.Stats())
	// The sink sees EOF once the sender closes.
	s.Close()
	pkts := make([][]byte, 8)
	testutil.Eventually(t, 20*time.Second, func() bool {
		k, err := r.Receive(pkts)
		if k != 0 {
			t.Fatalf("%d packets after the last one", k)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("after close: %v, want io.EOF", err)
		}
		return err != nil
	}, "no EOF at the sink after the sender closed")
}

// TestSequenceChecking sends generator frames (package gen) with a gap
// and a duplicate and checks the sink's tracker sees exactly those.
func TestSequenceChecking(t *testing.T) {
	a, b := pair(t)
	tmpl, err := gen.NewTemplate(gen.Config{
		Proto: gen.UDP4, Size: 128,
		SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
		SrcIP: netip.MustParseAddr(a), DstIP: netip.MustParseAddr(b),
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := region(t, 256, 2048)
	fr := newFrames(256, 2048)
	s, r := connect(t, reg, rdma.ListenOptions{}, rdma.DialOptions{})

	tr := gen.NewTracker()
	sink := &rdma.Sink{Seq: tr}
	type res struct {
		st  rdma.SinkStats
		err error
	}
	ch := make(chan res, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() {
		st, err := sink.Run(ctx, r)
		ch <- res{st, err}
	}()
	// Sequence numbers 0..4999 without 1000..1009, and 2000 twice: 4991 frames.
	var seqs []uint64
	for q := uint64(0); q < 5000; q++ {
		if q >= 1000 && q < 1010 {
			continue
		}
		seqs = append(seqs, q)
		if q == 2000 {
			seqs = append(seqs, q)
		}
	}
	if _, err := stream(s, reg, fr, uint64(len(seqs)), func(p []byte, i uint64) int {
		copy(p, tmpl.Bytes())
		tmpl.Stamp(p[:tmpl.Len()], seqs[i], monotime.Now())
		return tmpl.Len()
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Drain(ctx, fr.put); err != nil {
		t.Fatal(err)
	}
	s.Close()
	got := <-ch
	if got.err != nil {
		t.Fatal(got.err)
	}
	st := tr.Stats(5000)
	t.Logf("sink %+v; tracker %v", got.st, st)
	if got.st.Packets != uint64(len(seqs)) {
		t.Errorf("sink counted %d packets, want %d", got.st.Packets, len(seqs))
	}
	if st.Lost != 10 || st.Duplicates != 1 || st.Unique != 4990 {
		t.Errorf("tracker: lost %d dups %d unique %d, want 10, 1, 4990", st.Lost, st.Duplicates, st.Unique)
	}
}

// resources reads `rdma -j resource show` as device -> counter -> value.
func resources(t *testing.T) map[string]map[string]int {
	t.Helper()
	testutil.RequireTool(t, "rdma")
	out, err := exec.Command("rdma", "resource", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("rdma resource show: %v: %s", err, out)
	}
	// "0: rxe0: pd 1 cq 2 qp 1 cm_id 0 mr 0 ctx 0 srq 0"
	res := map[string]map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		dev := strings.TrimSuffix(f[1], ":")
		res[dev] = map[string]int{}
		for i := 2; i+1 < len(f); i += 2 {
			v, _ := strconv.Atoi(f[i+1])
			res[dev][f[i]] = v
		}
	}
	return res
}

func TestTeardownLeavesNothing(t *testing.T) {
	pair(t)
	before := resources(t)
	devsBefore, err := rdma.Devices()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("session", func(t *testing.T) {
		reg := region(t, 64, 2048)
		fr := newFrames(64, 2048)
		s, r := connect(t, reg, rdma.ListenOptions{Buffers: 32}, rdma.DialOptions{})
		mid := resources(t)
		if mid[os.Getenv("RXE_A_DEV")]["qp"] <= before[os.Getenv("RXE_A_DEV")]["qp"] {
			t.Errorf("no QP visible while connected: %v", mid)
		}
		// The receive loop must have stopped before the cleanups close r:
		// a Receiver belongs to one goroutine, and closing it under a
		// running Receive frees the completion queue it polls.
		stop, done := make(chan struct{}), make(chan struct{})
		defer func() { close(stop); <-done }()
		go func() {
			defer close(done)
			pkts := make([][]byte, 64)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := r.Receive(pkts); err != nil {
					return
				}
			}
		}()
		if _, err := stream(s, reg, fr, 1000, func(p []byte, i uint64) int { return 100 }); err != nil {
			t.Fatal(err)
		}
		if err := s.Drain(context.Background(), fr.put); err != nil {
			t.Fatal(err)
		}
	})
	// The cleanups above closed both ends; the kernel frees the objects of
	// a destroyed cm_id asynchronously.
	testutil.EventuallyErr(t, 10*time.Second, func() error {
		if after := resources(t); fmt.Sprint(after) != fmt.Sprint(before) {
			return fmt.Errorf("rdma resources before %v, after %v", before, after)
		}
		return nil
	})
	devsAfter, _ := rdma.Devices()
	if len(devsAfter) != len(devsBefore) {
		t.Errorf("devices before %v, after %v", devsBefore, devsAfter)
	}
}

func TestPeerUnreachable(t *testing.T) {
	pair(t)
	reg := region(t, 4, 4096)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// 198.18.0.77 is on the rxe subnet but nobody has it: ARP fails.
	_, err := rdma.Dial(ctx, "198.18.0.77:20000", reg, rdma.DialOptions{Timeout: 5 * time.Second, Source: os.Getenv("RXE_A_IP")})
	if !errors.Is(err, rdma.ErrUnreachable) {
		t.Fatalf("Dial to nobody: %v, want ErrUnreachable", err)
	}
	t.Log(err)
}

func TestNothingListens(t *testing.T) {
	a, b := pair(t)
	reg := region(t, 4, 4096)
	_, err := rdma.Dial(context.Background(), addr(b), reg, rdma.DialOptions{Source: a})
	if !errors.Is(err, rdma.ErrRefused) {
		t.Fatalf("Dial to a port nobody listens on: %v, want ErrRefused", err)
	}
	t.Log(err)
}

func TestSinkRefuses(t *testing.T) {
	a, b := pair(t)
	l, err := rdma.Listen(addr(b), rdma.ListenOptions{Accept: func(remote string) error {
		return fmt.Errorf("quota exceeded for %s", remote)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Accept(ctx) //nolint:errcheck // ends with ctx
	reg := region(t, 4, 4096)
	_, err = rdma.Dial(context.Background(), l.Addr(), reg, rdma.DialOptions{Source: a})
	if !errors.Is(err, rdma.ErrRefused) || !strings.Contains(err.Error(), "quota exceeded") {
		t.Fatalf("Dial to a refusing sink: %v, want ErrRefused with the reason", err)
	}
	t.Log(err)
}

func TestPortInUse(t *testing.T) {
	_, b := pair(t)
	l, err := rdma.Listen(addr(b), rdma.ListenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = rdma.Listen(l.Addr(), rdma.ListenOptions{})
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("second Listen on %s: %v, want EADDRINUSE", l.Addr(), err)
	}
	t.Log(err)
}

func TestBadAddress(t *testing.T) {
	pair(t)
	reg := region(t, 4, 4096)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, a := range []string{"no-such-host.invalid:20000", "198.18.0.2", "198.18.0.2:99999", ":20000"} {
		if s, err := rdma.Dial(ctx, a, reg, rdma.DialOptions{}); err == nil {
			s.Close()
			t.Errorf("Dial(%q) worked", a)
		} else {
			t.Logf("Dial(%q): %v", a, err)
		}
	}
	for _, a := range []string{"no-such-host.invalid:20000", "198.18.0.2", "nonsense"} {
		if l, err := rdma.Listen(a, rdma.ListenOptions{}); err == nil {
			l.Close()
			t.Errorf("Listen(%q) worked", a)
		}
	}
}

func TestTooLarge(t *testing.T) {
	reg := region(t, 8, 4096)
	s, r := connect(t, reg, rdma.ListenOptions{BufferSize: 1024}, rdma.DialOptions{})
	t.Logf("path MTU %d, sink buffers %d", s.PathMTU(), s.MaxMessage())
	for _, d := range []rdma.Desc{
		{Addr: 0, Len: 1500},                    // larger than the sink's buffers (and the 1024 path MTU)
		{Addr: uint64(len(reg)) - 10, Len: 100}, // runs past the region
		{Addr: ^uint64(0) - 10, Len: 100},       // wraps around
	} {
		n, err := s.Send([]rdma.Desc{d})
		if n != 0 || !errors.Is(err, rdma.ErrTooLarge) {
			t.Errorf("Send(%+v) = %d, %v; want 0, ErrTooLarge", d, n, err)
		}
	}
	if s.InFlight() != 0 {
		t.Fatalf("%d in flight after refused sends", s.InFlight())
	}
	// The connection still works: one packet of exactly the limit.
	content(reg[:1024], 7)
	if n, err := s.Send([]rdma.Desc{{Addr: 0, Len: 1024}}); n != 1 || err != nil {
		t.Fatalf("Send of 1024 bytes: %d, %v", n, err)
	}
	if err := s.Drain(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	receiveOne(t, r, reg[:1024])
}

// receiveOne waits up to 20s for one packet and checks it is want.
func receiveOne(t *testing.T, r *rdma.Receiver, want []byte) {
	t.Helper()
	pkts := make([][]byte, 4)
	testutil.Eventually(t, 20*time.Second, func() bool {
		k, err := r.Receive(pkts)
		if err != nil {
			t.Fatal(err)
		}
		if k > 1 {
			t.Fatalf("%d packets arrived, want 1", k)
		}
		return k == 1
	}, "no packet arrived, want 1")
	if !bytes.Equal(pkts[0], want) {
		t.Fatalf("received %d bytes, want %d; content differs", len(pkts[0]), len(want))
	}
}

// helperMain is a sink in a child process, so the test can kill it
// (XDPIPE_RDMA_HELPER=sink) or measure against it (=count: prints the
// packet count when the sender closes).
func helperMain() int {
	if os.Getenv("XDPIPE_RDMA_HELPER") == "send" {
		return helperSend()
	}
	bufs, _ := strconv.Atoi(os.Getenv("XDPIPE_RDMA_BUFFERS"))
	l, err := rdma.Listen(os.Getenv("XDPIPE_RDMA_ADDR"), rdma.ListenOptions{Buffers: max(bufs, 64)})
	if err != nil {
		fmt.Println("listen:", err)
		return 1
	}
	fmt.Println("ready")
	r, err := l.Accept(context.Background())
	if err != nil {
		fmt.Println("accept:", err)
		return 1
	}
	fmt.Println("accepted")
	if os.Getenv("XDPIPE_RDMA_HELPER") == "count" {
		if os.Getenv("XDPIPE_RDMA_PIN") != "" {
			pinTo(nil, 1)
		}
		st, err := (&rdma.Sink{Spin: os.Getenv("XDPIPE_RDMA_SPIN") == "1"}).Run(context.Background(), r)
		fmt.Printf("count %d\n", st.Packets)
		if err != nil {
			fmt.Println("sink:", err)
			return 1
		}
		r.Close()
		l.Close()
		return 0
	}
	pkts := make([][]byte, 64)
	for {
		if _, err := r.Receive(pkts); err != nil {
			return 0
		}
	}
}

// TestPeerKilled kills the sink process mid-stream: the sender must report
// ErrDisconnected within a bounded time and hand every frame back.
func TestPeerKilled(t *testing.T) {
	_, b := pair(t)
	a := addr(b)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "XDPIPE_RDMA_HELPER=sink", "XDPIPE_RDMA_ADDR="+a)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line := make([]byte, 64)
	if n, err := out.Read(line); err != nil || !strings.HasPrefix(string(line[:n]), "ready") {
		t.Fatalf("helper: %q %v", line[:n], err)
	}
	reg := region(t, 128, 2048)
	fr := newFrames(128, 2048)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := rdma.Dial(ctx, a, reg, rdma.DialOptions{Source: os.Getenv("RXE_A_IP")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := stream(s, reg, fr, 2000, func(p []byte, i uint64) int { return 512 }); err != nil {
		t.Fatalf("before the kill: %v", err)
	}
	cmd.Process.Kill()
	start := time.Now()
	_, err = stream(s, reg, fr, 1<<62, func(p []byte, i uint64) int { return 512 })
	if !errors.Is(err, rdma.ErrDisconnected) {
		t.Fatalf("after the kill: %v, want ErrDisconnected", err)
	}
	t.Logf("error %v after %v", err, time.Since(start).Round(time.Millisecond))
	if err := s.Drain(ctx, fr.put); !errors.Is(err, rdma.ErrDisconnected) {
		t.Errorf("Drain: %v", err)
	}
	if s.InFlight() != 0 || len(fr.free) != fr.all {
		t.Errorf("in flight %d, free frames %d of %d", s.InFlight(), len(fr.free), fr.all)
	}
}

// TestMeasure is the throughput measurement, run by
// hack/vm/rdma/guest-bench.sh next to ib_send_bw on the same rxe pair:
// XDPIPE_RDMA_MEASURE="size:count ..." sends count packets of size bytes
// for each pair and prints one MEASURE line each. The rate is taken at the
// sender, from the first post to the last completion, as ib_send_bw does.
func TestMeasure(t *testing.T) {
	spec := os.Getenv("XDPIPE_RDMA_MEASURE")
	if spec == "" {
		t.Skip("set XDPIPE_RDMA_MEASURE=size:count,... (hack/vm/rdma/guest-bench.sh does)")
	}
	for _, f := range strings.Fields(strings.ReplaceAll(spec, ",", " ")) {
		sz, cnt, _ := strings.Cut(f, ":")
		size, err1 := strconv.Atoi(sz)
		count, err2 := strconv.ParseUint(cnt, 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad XDPIPE_RDMA_MEASURE entry %q", f)
		}
		t.Run(sz, func(t *testing.T) { measure(t, size, count) })
	}
}

// measureOpts are knobs for experiments: XDPIPE_RDMA_MEASURE_OPTS="sq=128
// chain=64 sig=64 bufs=512 frames=4096 proc=1 gen=0 pin=1" (0: the library
// default; proc=1: the sink runs in a child process, as ib_send_bw's server
// does; gen=1: generator frames; pin=1: sender on CPU 0, sink on CPU 1, the
// way busy-polling workers run). The sink backs off when idle (Sink.Spin
// false; XDPIPE_RDMA_SPIN=1 makes it spin): on rxe, softirq work the
// kernel defers to ksoftirqd runs on the same CPUs and a sink that never
// lets go starves it (credit updates then stall the sender).
func measureOpts() map[string]int {
	o := map[string]int{"sq": 128, "chain": 0, "sig": 0, "bufs": 512, "frames": 4096, "proc": 1, "pin": 1}
	for _, kv := range strings.Fields(os.Getenv("XDPIPE_RDMA_MEASURE_OPTS")) {
		k, v, _ := strings.Cut(kv, "=")
		if n, err := strconv.Atoi(v); err == nil {
			o[k] = n
		}
	}
	return o
}

func measure(t *testing.T, size int, count uint64) {
	o := measureOpts()
	nframes := o["frames"]
	reg := region(t, nframes, 2048)
	fr := newFrames(nframes, 2048)
	for i := 0; i < nframes; i++ {
		content(reg[i*2048:i*2048+size], uint64(i))
	}
	// ib_send_bw's defaults: 128 sends in flight, 512 receives posted.
	do := rdma.DialOptions{SendQueue: o["sq"], Chain: o["chain"], SignalEvery: o["sig"]}
	lo := rdma.ListenOptions{Buffers: o["bufs"], BufferSize: 2048}
	var s *rdma.Sender
	sinkDone := make(chan uint64, 1)
	fill := func(p []byte, i uint64) int { return size }
	if o["gen"] != 0 { // generator frames (package gen), for the sink's sequence check
		a, b := pair(t)
		tmpl, err := gen.NewTemplate(gen.Config{
			Proto: gen.UDP4, Size: max(size, gen.MinSize(gen.UDP4)),
			SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
			SrcIP: netip.MustParseAddr(a), DstIP: netip.MustParseAddr(b),
		})
		if err != nil {
			t.Fatal(err)
		}
		fill = func(p []byte, i uint64) int {
			copy(p, tmpl.Bytes())
			tmpl.Stamp(p[:tmpl.Len()], i, monotime.Now())
			return tmpl.Len()
		}
	}
	if ext := os.Getenv("XDPIPE_RDMA_SINK_ADDR"); ext != "" { // an external sink: xdpipe rdma-sink
		a, _ := pair(t)
		do.Source = a
		var err error
		if s, err = rdma.Dial(context.Background(), ext, reg, do); err != nil {
			t.Fatal(err)
		}
		sinkDone <- count
	} else if o["proc"] != 0 {
		a, b := pair(t)
		sa := addr(b)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "XDPIPE_RDMA_HELPER=count", "XDPIPE_RDMA_ADDR="+sa, "XDPIPE_RDMA_BUFFERS="+strconv.Itoa(lo.Buffers))
		if o["pin"] != 0 {
			cmd.Env = append(cmd.Env, "XDPIPE_RDMA_PIN=1")
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		line := make([]byte, 64)
		if n, err := out.Read(line); err != nil || !strings.HasPrefix(string(line[:n]), "ready") {
			t.Fatalf("helper: %q %v", line[:n], err)
		}
		do.Source = a
		if s, err = rdma.Dial(context.Background(), sa, reg, do); err != nil {
			t.Fatal(err)
		}
		go func() {
			var got uint64
			b, _ := io.ReadAll(out)
			for _, l := range strings.Split(string(b), "\n") {
				if c, ok := strings.CutPrefix(l, "count "); ok {
					got, _ = strconv.ParseUint(c, 10, 64)
				}
			}
			sinkDone <- got
		}()
	} else {
		var r *rdma.Receiver
		s, r = connect(t, reg, lo, do)
		go func() {
			st, _ := (&rdma.Sink{}).Run(context.Background(), r)
			sinkDone <- st.Packets
		}()
	}
	if o["pin"] != 0 {
		pinTo(t, 0)
	}
	start := time.Now()
	if _, err := stream(s, reg, fr, count, fill); err != nil {
		t.Fatal(err)
	}
	if err := s.Drain(context.Background(), fr.put); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	st := s.Stats()
	s.Close()
	if got := <-sinkDone; got != count {
		t.Errorf("sink got %d of %d", got, count)
	}
	gbps := float64(st.Bytes) * 8 / el.Seconds() / 1e9
	mpps := float64(st.Sent) / el.Seconds() / 1e6
	fmt.Printf("MEASURE xdpipe size=%d msgs=%d seconds=%.3f gbps=%.6f mpps=%.6f creditstalls=%d queuefull=%d opts=%v\n",
		size, st.Sent, el.Seconds(), gbps, mpps, st.Stalls, st.QueueFull, o)
}

// helperSend is a sender in a child process (XDPIPE_RDMA_HELPER=send): it
// streams 256-byte packets to XDPIPE_RDMA_ADDR until killed.
func helperSend() int {
	reg, err := unix.Mmap(-1, 0, 128*2048, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		fmt.Println("mmap:", err)
		return 1
	}
	s, err := rdma.Dial(context.Background(), os.Getenv("XDPIPE_RDMA_ADDR"), reg, rdma.DialOptions{Source: os.Getenv("RXE_A_IP")})
	if err != nil {
		fmt.Println("dial:", err)
		return 1
	}
	_, err = stream(s, reg, newFrames(128, 2048), 1<<62, func(p []byte, i uint64) int { return 256 })
	fmt.Println("stream:", err)
	return 1
}

// TestSenderKilled kills the sender process mid-stream: the sink must
// report ErrDisconnected (not a clean EOF) within a bounded time.
func TestSenderKilled(t *testing.T) {
	_, b := pair(t)
	l, err := rdma.Listen(addr(b), rdma.ListenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "XDPIPE_RDMA_HELPER=send", "XDPIPE_RDMA_ADDR="+l.Addr())
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pkts := make([][]byte, 64)
	var got int
	var start time.Time
	deadline := time.Now().Add(90 * time.Second)
	for {
		n, err := r.Receive(pkts)
		got += n
		if got >= 2000 && start.IsZero() {
			cmd.Process.Kill()
			start = time.Now()
		}
		if err != nil {
			if start.IsZero() {
				t.Fatalf("after %d packets, before the kill: %v", got, err)
			}
			if !errors.Is(err, rdma.ErrDisconnected) {
				t.Fatalf("after the kill: %v, want ErrDisconnected", err)
			}
			t.Logf("%d packets, then %v %v after the kill", got, err, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no error 90s into the test (%d packets)", got)
		}
		if n == 0 {
			time.Sleep(10 * time.Microsecond)
		}
	}
}

// TestZeroAllocs checks the steady state allocates nothing: a burst sent,
// received and handed back.
func TestZeroAllocs(t *testing.T) {
	t.Run("segments=1", func(t *testing.T) { testZeroAllocs(t, 1) })
	t.Run("segments=2", func(t *testing.T) { testZeroAllocs(t, 2) })
}

// testZeroAllocs sends bursts of 8 descriptors, packets of segs each.
func testZeroAllocs(t *testing.T, segs int) {
	reg := region(t, 64, 2048)
	s, r := connect(t, reg, rdma.ListenOptions{Buffers: 64}, rdma.DialOptions{SendQueue: 32, MaxSegments: segs})
	burst := make([]rdma.Desc, 8)
	for i := range burst {
		burst[i] = rdma.Desc{Addr: uint64(i) * 2048, Len: 200}
		if (i+1)%segs != 0 {
			burst[i].Flags = rdma.More
		}
	}
	packets := len(burst) / segs
	done := make([]rdma.Desc, 32)
	pkts := make([][]byte, 32)
	var failed error
	fail := func(err error) {
		if failed == nil {
			failed = err
		}
	}
	// One burst through: sent (Send takes fewer when credits or send
	// queue space run short: the rest is retried, as a stage does),
	// received and completed. The deadline only keeps a broken transport
	// from hanging the test. (An iteration cap stood here and ran out in
	// a TCG guest on a busy host; a partial Send was then taken for a
	// failure and its packets counted in the next burst.)
	cycle := func() {
		sent, got, back := 0, 0, 0
		deadline := time.Now().Add(30 * time.Second)
		for i := 0; sent < len(burst) || got < packets || back < len(burst); i++ {
			if i%1024 == 0 && !time.Now().Before(deadline) {
				fail(fmt.Errorf("sent %d, completed %d of %d descs, received %d of %d packets after 30 s", sent, back, len(burst), got, packets))
				return
			}
			if sent < len(burst) {
				n, err := s.Send(burst[sent:])
				if err != nil {
					fail(fmt.Errorf("Send: %w", err))
					return
				}
				sent += n
			}
			n, err := r.Receive(pkts)
			got += n
			m, cerr := s.Completed(done)
			back += m
			if err != nil || cerr != nil {
				fail(fmt.Errorf("Receive: %v, Completed: %v", err, cerr))
				return
			}
		}
		if got != packets || back != len(burst) {
			fail(fmt.Errorf("received %d of %d packets, completed %d of %d descs", got, packets, back, len(burst)))
		}
	}
	for i := 0; i < 20; i++ { // warm up: credit updates, lazily sized state
		cycle()
	}
	allocs := testing.AllocsPerRun(50, cycle)
	if failed != nil {
		t.Fatal(failed)
	}
	if allocs != 0 {
		t.Errorf("%v allocations per burst of %d (send, receive, complete), want 0", allocs, len(burst))
	}
}

// pinTo locks the calling goroutine to its thread and the thread to cpu
// (modulo the CPUs there are), the way a busy-polling worker runs.
func pinTo(t *testing.T, cpu int) {
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu % runtime.NumCPU())
	if err := unix.SchedSetaffinity(0, &set); err != nil && t != nil {
		t.Fatal(err)
	}
}

// TestMultiSegmentExact sends packets of several segments (multi-buffer
// AF_XDP packets: 3 segments of 3000 bytes, and 1 and 2 segments between),
// each segment in its own frame at an offset, so nothing is contiguous: the
// sink must receive each packet as one message of exactly its bytes, in
// order, and the sender's completions must hand back every descriptor
// exactly once, flags as sent.
func TestMultiSegmentExact(t *testing.T) {
	const (
		n     = 3000
		frame = 4096
		off   = 256 // the segment's data starts here in its frame
	)
	reg := region(t, 96, frame)
	fr := newFrames(96, frame)
	s, r := connect(t, reg, rdma.ListenOptions{Buffers: 32, BufferSize: 9216},
		rdma.DialOptions{SendQueue: 64, MaxSegments: 3, MaxMessage: 9000})
	if s.MaxMessage() != 9216 {
		t.Fatalf("MaxMessage %d, want the sink's 9216", s.MaxMessage())
	}
	segs := func(i uint64) int { return []int{3, 3, 1, 3, 2}[i%5] }
	segLen := func(i uint64, j int) int {
		if segs(i) == 3 && i%2 == 0 {
			return 3000
		}
		return 1000 + int(i*131+uint64(j)*577)%2000 // 3 of them fit 9000
	}
	// whole writes packet i's bytes into p and returns its length.
	whole := func(p []byte, i uint64) int {
		l := 0
		for j := range segs(i) {
			l += segLen(i, j)
		}
		content(p[:l], i)
		return l
	}

	errc := make(chan error, 1)
	go func() {
		pkts := make([][]byte, 16)
		want := make([]byte, 9216)
		var got uint64
		deadline := time.Now().Add(2 * time.Minute)
		for got < n {
			k, err := r.Receive(pkts)
			if err != nil {
				errc <- fmt.Errorf("after %d packets: %w", got, err)
				return
			}
			if k == 0 && time.Now().After(deadline) {
				errc <- fmt.Errorf("only %d of %d packets after 2 minutes", got, n)
				return
			}
			for _, p := range pkts[:k] {
				l := whole(want, got)
				if !bytes.Equal(p, want[:l]) {
					errc <- fmt.Errorf("packet %d (%d segments): %d bytes, want %d; first bytes % x", got, segs(got), len(p), l, p[:min(16, len(p))])
					return
				}
				got++
			}
		}
		errc <- nil
	}()

	// Every frame is free, in flight, or back; a desc handed back twice,
	// or one never sent, fails.
	inFlight := make(map[uint64]rdma.Desc)
	back := func(ds []rdma.Desc) error {
		for _, d := range ds {
			sent, ok := inFlight[d.Addr]
			if !ok {
				return fmt.Errorf("desc %+v handed back but not in flight (twice?)", d)
			}
			if sent != d {
				return fmt.Errorf("desc %+v handed back as %+v", sent, d)
			}
			delete(inFlight, d.Addr)
		}
		fr.put(ds)
		return nil
	}
	burst := make([]rdma.Desc, 0, 24)
	done := make([]rdma.Desc, 7) // short: a packet's descs may span calls
	buf := make([]byte, 9216)
	var i, descs uint64
	deadline := time.Now().Add(2 * time.Minute)
	for i < n {
		if time.Now().After(deadline) {
			t.Fatalf("sent %d of %d packets in 2 minutes (%d in flight)", i, n, s.InFlight())
		}
		// Fill the burst with whole packets, as the rdma output does.
		next := i + uint64(countPackets(burst))
		for next < n && len(burst)+segs(next) <= cap(burst) && len(fr.free) >= segs(next) {
			whole(buf, next)
			at := 0
			for j := range segs(next) {
				a, _ := fr.alloc()
				l := segLen(next, j)
				copy(reg[a+off:], buf[at:at+l])
				at += l
				d := rdma.Desc{Addr: a + off, Len: uint32(l)}
				if j < segs(next)-1 {
					d.Flags = rdma.More
				}
				burst = append(burst, d)
			}
			next++
		}
		k, err := s.Send(burst)
		if err != nil {
			t.Fatalf("Send after %d packets: %v", i, err)
		}
		if k > 0 && burst[k-1].Flags&rdma.More != 0 {
			t.Fatalf("Send took %d descs, ending inside a packet", k)
		}
		for _, d := range burst[:k] {
			inFlight[d.Addr] = d
		}
		i += uint64(countPackets(burst[:k]))
		descs += uint64(k)
		burst = append(burst[:0], burst[k:]...)
		m, err := s.Completed(done)
		if err := back(done[:m]); err != nil {
			t.Fatal(err)
		}
		if err != nil {
			t.Fatalf("Completed: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var backErr error
	if err := s.Drain(ctx, func(ds []rdma.Desc) {
		if err := back(ds); err != nil && backErr == nil {
			backErr = err
		}
	}); err != nil {
		t.Fatal(err)
	}
	if backErr != nil {
		t.Fatal(backErr)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if len(inFlight) != 0 || len(fr.free) != fr.all {
		t.Errorf("frame accounting: %d never handed back, %d free of %d", len(inFlight), len(fr.free), fr.all)
	}
	st := s.Stats()
	if st.Sent != n || st.Segments != descs || st.Completed != descs {
		t.Errorf("stats %+v, want %d packets, %d segments sent and completed", st, n, descs)
	}
	if rs := r.Stats(); rs.Received != n {
		t.Errorf("sink received %d messages, want %d", rs.Received, n)
	}
	t.Logf("%d packets in %d segments; sender %+v receiver %+v", n, descs, st, r.Stats())
}

func countPackets(ds []rdma.Desc) int {
	n := 0
	for _, d := range ds {
		if d.Flags&rdma.More == 0 {
			n++
		}
	}
	return n
}

// TestMultiSegmentRefused: what a multi-segment sender cannot do fails at
// once with a line naming the fix, and leaves the connection usable.
func TestMultiSegmentRefused(t *testing.T) {
	a, b := pair(t)
	reg := region(t, 8, 4096)

	// More segments than the device takes per send: refused at Dial.
	devs, err := rdma.Devices()
	if err != nil {
		t.Fatal(err)
	}
	l, err := rdma.Listen(addr(b), rdma.ListenOptions{BufferSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if r, err := l.Accept(ctx); err == nil {
				r.Close()
			}
		}
	}()
	_, err = rdma.Dial(ctx, l.Addr(), reg, rdma.DialOptions{Source: a, MaxSegments: devs[0].MaxSGE + 1})
	if err == nil || !strings.Contains(err.Error(), "max_sge") {
		t.Errorf("Dial with %d segments (device max_sge %d): %v, want an error naming max_sge", devs[0].MaxSGE+1, devs[0].MaxSGE, err)
	}
	t.Log(err)
	// A sender announcing packets larger than the sink's buffers: the
	// sink refuses it, saying why.
	_, err = rdma.Dial(ctx, l.Addr(), reg, rdma.DialOptions{Source: a, MaxSegments: 3, MaxMessage: 9014})
	if !errors.Is(err, rdma.ErrRefused) || !errors.Is(err, rdma.ErrBufferSize) || !strings.Contains(err.Error(), "receive buffers hold 2048 bytes, sender sends up to 9014") {
		t.Errorf("Dial announcing 9014-byte packets to 2048-byte buffers: %v, want ErrRefused and ErrBufferSize with both sizes", err)
	}
	t.Log(err)
	cancel()

	s, r := connect(t, reg, rdma.ListenOptions{BufferSize: 4096}, rdma.DialOptions{MaxSegments: 2})
	for _, c := range []struct {
		name  string
		descs []rdma.Desc
		want  string
	}{
		{"three segments", []rdma.Desc{{Addr: 0, Len: 100, Flags: rdma.More}, {Addr: 4096, Len: 100, Flags: rdma.More}, {Addr: 8192, Len: 100}}, "segments"},
		{"longer than the sink's buffers", []rdma.Desc{{Addr: 0, Len: 3000, Flags: rdma.More}, {Addr: 4096, Len: 3000}}, "6000 bytes, the sink's receive buffers hold 4096"},
		{"cut off", []rdma.Desc{{Addr: 0, Len: 100, Flags: rdma.More}}, "ends the burst"},
		{"second segment outside the region", []rdma.Desc{{Addr: 0, Len: 100, Flags: rdma.More}, {Addr: uint64(len(reg)) - 10, Len: 100}}, "outside"},
	} {
		n, err := s.Send(c.descs)
		if n != 0 || !errors.Is(err, rdma.ErrTooLarge) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Send = %d, %v; want 0, ErrTooLarge saying %q", c.name, n, err, c.want)
		}
		if bufs := strings.HasPrefix(c.name, "longer"); errors.Is(err, rdma.ErrBufferSize) != bufs {
			t.Errorf("%s: Send's %v: ErrBufferSize %v, want %v", c.name, err, !bufs, bufs)
		}
	}
	if s.InFlight() != 0 {
		t.Fatalf("%d in flight after refused sends", s.InFlight())
	}
	// Packets before a bad one go; the connection still works.
	content(reg[:100], 1)
	content(reg[4096:4196], 2)
	k, err := s.Send([]rdma.Desc{{Addr: 0, Len: 100, Flags: rdma.More}, {Addr: 4096, Len: 100}, {Addr: 8192, Len: 100, Flags: rdma.More}})
	if k != 2 || !errors.Is(err, rdma.ErrTooLarge) {
		t.Fatalf("Send of a good packet then a cut-off one: %d, %v; want 2, ErrTooLarge", k, err)
	}
	var back []rdma.Desc
	if err := s.Drain(context.Background(), func(ds []rdma.Desc) { back = append(back, ds...) }); err != nil {
		t.Fatal(err)
	}
	if len(back) != 2 || back[0].Addr != 0 || back[1].Addr != 4096 {
		t.Errorf("handed back %+v, want the packet's two descs", back)
	}
	receiveOne(t, r, append(slices.Clone(reg[:100]), reg[4096:4196]...))
}
