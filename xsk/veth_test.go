package xsk_test

// Privileged tests on a link pair in fresh namespaces (veth, or the VM
// stage's virtio-net NICs: testutil.NewLinkPair): A transmits from an
// AF_XDP socket, B receives through the redirect program into AF_XDP
// sockets, both bound in testutil.Bind's mode (copy on veth, zero-copy on
// the NICs). They skip without root and fail under CI=true
// (testutil.RequireRoot).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/xsk"
)

var magic = [8]byte{'x', 'd', 'p', 'i', 'p', 'e', 'T', '1'}

// testFrame builds an Ethernet/IPv4/UDP frame of size bytes from a to b
// (198.18.0.0/15), whose payload carries magic, a stream id, a sequence
// number and a pattern derived from both, so corruption is visible.
func testFrame(p *testutil.LinkPair, size, stream, seq int) []byte {
	f := make([]byte, size)
	copy(f[0:6], p.B.MAC)
	copy(f[6:12], p.A.MAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(min(size-14, 0xffff)))
	ip[8] = 64
	ip[9] = 17
	copy(ip[12:16], p.A.IP.To4())
	copy(ip[16:20], p.B.IP.To4())
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := f[34:42]
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], 9)
	binary.BigEndian.PutUint16(udp[4:], uint16(min(size-34, 0xffff)))
	pl := f[42:]
	copy(pl, magic[:])
	binary.BigEndian.PutUint32(pl[8:], uint32(stream))
	binary.BigEndian.PutUint32(pl[12:], uint32(seq))
	for i := 16; i < len(pl); i++ {
		pl[i] = byte(i*31 + seq*7 + stream)
	}
	return f
}

// parseFrame returns the stream and sequence of a test frame, ok=false for
// foreign frames (IPv6 MLD and the like), and an error for a test frame
// whose bytes differ from what was sent.
func parseFrame(p *testutil.LinkPair, f []byte) (stream, seq int, ok bool, err error) {
	if len(f) < 58 || !bytes.Equal(f[42:50], magic[:]) {
		return 0, 0, false, nil
	}
	stream = int(binary.BigEndian.Uint32(f[50:]))
	seq = int(binary.BigEndian.Uint32(f[54:]))
	if want := testFrame(p, len(f), stream, seq); !bytes.Equal(f, want) {
		return stream, seq, true, fmt.Errorf("stream %d frame %d (%d bytes) corrupted", stream, seq, len(f))
	}
	return stream, seq, true, nil
}

// bind is the bind mode of the tests' sockets (testutil.Bind).
func bind() xsk.BindMode { m, _ := xsk.ParseBindMode(testutil.Bind()); return m }

// umemOn makes a Umem closed at the end of the test.
func umemOn(t *testing.T, opts xsk.UmemOptions) *xsk.Umem {
	t.Helper()
	u, err := xsk.NewUmem(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := u.Close(); err != nil {
			t.Errorf("umem close: %v", err)
		}
	})
	return u
}

// socketOn opens a socket on queue of end e, inside its namespace.
func socketOn(t *testing.T, e *testutil.LinkEnd, u *xsk.Umem, queue int, so xsk.SocketOptions) *xsk.Socket {
	t.Helper()
	ifindex := e.Ifindex(t)
	var s *xsk.Socket
	e.NS.MustDo(t, func() error {
		var err error
		s, err = xsk.NewSocket(u, ifindex, queue, so)
		return err
	})
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("socket close: %v", err)
		}
	})
	return s
}

// redirectOn loads the redirect program, registers socks by queue and
// attaches it to e in driver mode.
func redirectOn(t *testing.T, e *testutil.LinkEnd, socks ...*xsk.Socket) *bpf.Redirect {
	t.Helper()
	r, err := bpf.LoadRedirect(bpf.RedirectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("redirect close: %v", err)
		}
	})
	// Sockets first, as dataplane.OpenPort does: no frame finds the
	// program without them (it would go to the kernel, counted unbound).
	for _, s := range socks {
		s.Refill() // before frames arrive, or they are dropped (RxDropped)
		if err := r.Register(s.Queue(), s.FD()); err != nil {
			t.Fatal(err)
		}
	}
	ifindex := e.Ifindex(t)
	e.NS.MustDo(t, func() error {
		_, err := r.Attach(ifindex, bpf.AttachDriver)
		return err
	})
	return r
}

// pump sends n frames per TX socket (stream i = txs[i]'s index) and
// receives on rxs until every frame arrived once, intact. got[r][stream]
// counts what RX socket r received of each stream. Flow control keeps at
// most 64 frames in flight per stream, below veth's 256-entry ring, so
// nothing is dropped.
//
// Each stream ends with a fence, one more frame numbered n. A stream's
// frames reach one RX queue, in order (a veth queue, or a NIC's RSS queue
// of their one flow), so once every fence is in, a duplicate of a frame
// before it would have arrived too. pump returns once the fences are in
// and every frame sent has completed.
func pump(t *testing.T, p *testutil.LinkPair, txs, rxs []*xsk.Socket, n, size int) (got [][]int) {
	t.Helper()
	got = make([][]int, len(rxs))
	for i := range got {
		got[i] = make([]int, len(txs))
	}
	seen := make([][]bool, len(txs))
	for i := range seen {
		seen[i] = make([]bool, n+1)
	}
	// Per stream, fence included: frames sent, received and completed.
	sent := make([]int, len(txs))
	received := make([]int, len(txs))
	completed := make([]int, len(txs))
	addrs := make([]uint64, 32)
	descs := make([]xsk.Desc, 64)
	receive := func() {
		for r, s := range rxs {
			s.Refill()
			k := s.Receive(descs)
			for _, d := range descs[:k] {
				stream, seq, ok, err := parseFrame(p, s.Umem().Bytes(d))
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					continue
				}
				if stream >= len(txs) || seq > n || seen[stream][seq] {
					t.Fatalf("duplicate or unknown frame: stream %d seq %d", stream, seq)
				}
				seen[stream][seq] = true
				received[stream]++
				if seq < n {
					got[r][stream]++
				}
			}
			r := s.Recycle(descs[:k])
			s.Umem().FreeDescs(descs[r:k]) // fill ring full: back to the free stack
		}
	}
	finished := func() bool {
		for i := range txs {
			if received[i] <= n || completed[i] < sent[i] {
				return false
			}
		}
		return true
	}
	for _, s := range rxs {
		s.Refill() // before the first frame arrives, or it is dropped
	}
	deadline := time.Now().Add(20 * time.Second)
	for !finished() {
		if time.Now().After(deadline) {
			var stats []xsk.Statistics
			for _, s := range append(append([]*xsk.Socket(nil), txs...), rxs...) {
				st, _ := s.Stats()
				stats = append(stats, st)
			}
			t.Fatalf("gave up: sent %v, received %v, completed %v of %d each (with the fence); stats (tx..., rx...) %+v",
				sent, received, completed, n+1, stats)
		}
		for i, s := range txs {
			u := s.Umem()
			completed[i] += s.Complete()
			want := min(len(addrs), n+1-sent[i], 64-(sent[i]-received[i]))
			if want <= 0 {
				s.Transmit(nil) // copy mode sends at most 32 per kick: flush the rest
				continue
			}
			k := u.Alloc(addrs[:want])
			tx := make([]xsk.Desc, k)
			for j := range k {
				f := testFrame(p, size, i, sent[i]+j)
				a := addrs[j] + u.DataOffset()
				copy(u.Frame(a)[u.DataOffset():], f)
				tx[j] = xsk.Desc{Addr: a, Len: uint32(len(f))}
			}
			q := s.Transmit(tx)
			u.FreeDescs(tx[q:])
			sent[i] += q
		}
		receive()
		if !finished() {
			rxs[0].Wait(time.Millisecond)
		}
	}
	return got
}

// TestSendReceive sends N frames of known content from an AF_XDP socket on
// A and receives exactly N, intact, on B.
func TestSendReceive(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	ua := umemOn(t, xsk.UmemOptions{NumFrames: 512, FrameSize: 2048, Debug: true})
	ub := umemOn(t, xsk.UmemOptions{NumFrames: 1024, FrameSize: 2048, FillSize: 512, Debug: true})
	tx := socketOn(t, &p.A, ua, 0, xsk.SocketOptions{Bind: bind()})
	rx := socketOn(t, &p.B, ub, 0, xsk.SocketOptions{Bind: bind(), RXSize: 512, Prefill: true})
	redirectOn(t, &p.B, rx)
	if b := bind(); b != xsk.BindAuto && (rx.Mode() != b || tx.Mode() != b) {
		t.Fatalf("bound %v and %v, asked %v", tx.Mode(), rx.Mode(), b)
	}
	n := testutil.Frames(5000)
	got := pump(t, p, []*xsk.Socket{tx}, []*xsk.Socket{rx}, n, 300)
	if got[0][0] != n {
		t.Fatalf("received %d of %d", got[0][0], n)
	}
	st, err := rx.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.RxDropped != 0 || st.RxRingFull != 0 || st.RxInvalidDescs != 0 {
		t.Fatalf("receiver stats %+v", st)
	}
	for _, u := range []*xsk.Umem{ua, ub} {
		a := u.Accounting()
		if err := a.Check(); err != nil {
			t.Fatal(err)
		}
		// In zero-copy mode the driver keeps frames from the fill ring
		// posted as RX buffers: the kernel holds them, none is lost.
		if a.App != 0 || a.TX != 0 || a.Completion != 0 || (a.Kernel != 0 && rx.Mode() != xsk.BindZeroCopy) {
			t.Fatalf("after the run: %+v", a)
		}
	}
	t.Logf("B: %+v; A: %+v", ub.Accounting(), ua.Accounting())
}

// TestSharedUmem binds a socket on every queue of B to one UMEM (and two on
// A to another): every frame arrives once, and none on a queue without a
// socket; on veth, frames sent on A's queue q land on B's queue q. The
// test's two streams are one flow each: on NICs, whose RSS picks the queue
// by a hash seeded per host, every queue the flow can reach has a socket.
func TestSharedUmem(t *testing.T) {
	queues := 2
	if testutil.Link() == testutil.NIC {
		queues = testutil.NICQueues(t)
	}
	p := testutil.NewLinkPair(t, testutil.LinkOptions{Queues: queues})
	ua := umemOn(t, xsk.UmemOptions{NumFrames: 512, FrameSize: 2048, Debug: true})
	ub := umemOn(t, xsk.UmemOptions{NumFrames: uint32(1024 * queues), FrameSize: 2048, FillSize: 512, Debug: true})
	tx0 := socketOn(t, &p.A, ua, 0, xsk.SocketOptions{Bind: bind()})
	tx1 := socketOn(t, &p.A, ua, 1, xsk.SocketOptions{})
	var rxs []*xsk.Socket
	for q := range queues {
		so := xsk.SocketOptions{RXSize: 512, Prefill: true}
		if q == 0 {
			so.Bind = bind()
		}
		rxs = append(rxs, socketOn(t, &p.B, ub, q, so))
	}
	if tx0.Shared() || !tx1.Shared() || rxs[0].Shared() || !rxs[1].Shared() {
		t.Fatal("second sockets should share the umem")
	}
	if tx1.Mode() != tx0.Mode() || rxs[1].Mode() != rxs[0].Mode() {
		t.Fatalf("shared sockets' modes: %v %v, first sockets' %v %v", tx1.Mode(), rxs[1].Mode(), tx0.Mode(), rxs[0].Mode())
	}
	r := redirectOn(t, &p.B, rxs...)
	if n := p.B.RXQueues(t); n != queues {
		t.Fatalf("B has %d RX queues with the program attached, sockets on %d: frames could land where none is", n, queues)
	}

	// A further socket on an occupied queue of the same UMEM is refused
	// with a clear error.
	ifindex := p.B.Ifindex(t)
	p.B.NS.MustDo(t, func() error {
		s, err := xsk.NewSocket(ub, ifindex, 1, xsk.SocketOptions{})
		if err == nil {
			s.Close()
			return errors.New("second socket on queue 1 of the same umem succeeded")
		}
		if !errors.Is(err, xsk.ErrNotSupported) {
			return fmt.Errorf("want ErrNotSupported, got %w", err)
		}
		return nil
	})

	n := testutil.Frames(2000)
	got := pump(t, p, []*xsk.Socket{tx0, tx1}, rxs, n, 200)
	t.Logf("received per B queue, by A queue: %v", got)
	for stream := range 2 {
		sum := 0
		for q := range got {
			sum += got[q][stream]
		}
		if sum != n {
			t.Fatalf("want %d frames from A queue %d, got %d: %v", n, stream, sum, got)
		}
	}
	// A veth hands a frame to the peer's queue of the same number; a NIC's
	// RSS chooses by flow hash.
	if p.Kind == testutil.Veth && (got[0][1] != 0 || got[1][0] != 0) {
		t.Fatalf("frames from A queue q should land on B queue q: %v", got)
	}
	if u, err := r.Unbound(); err != nil || len(u) != 0 {
		t.Fatalf("frames on queues without a socket: %v (%v)", u, err)
	}
	for _, u := range []*xsk.Umem{ua, ub} {
		if err := u.Accounting().Check(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMultiBufferJumbo sends 9000-byte frames on an MTU 9000 veth as
// three-segment packets (XDP_USE_SG on both sockets) and receives them
// whole.
func TestMultiBufferJumbo(t *testing.T) {
	if testutil.Bind() == "zerocopy" {
		t.Skip("multi-buffer in zero-copy mode needs a driver with xdp-zc-max-segs > 1; virtio-net has 1 (TestZeroCopyJumbo)")
	}
	p := testutil.NewLinkPair(t, testutil.LinkOptions{MTU: 9000})
	ua := umemOn(t, xsk.UmemOptions{NumFrames: 256, Debug: true})
	ub := umemOn(t, xsk.UmemOptions{NumFrames: 512, FillSize: 256, Debug: true})
	tx := socketOn(t, &p.A, ua, 0, xsk.SocketOptions{Bind: bind(), MultiBuffer: true})
	rx := socketOn(t, &p.B, ub, 0, xsk.SocketOptions{Bind: bind(), MultiBuffer: true, RXSize: 256, Prefill: true})
	redirectOn(t, &p.B, rx)

	const n = 50
	addrs := make([]uint64, 3)
	segs := make([]xsk.Desc, 3)
	in := make([]xsk.Desc, 8)
	buf := make([]byte, 9100)
	received := 0
	deadline := time.Now().Add(20 * time.Second)
	for seq := 0; received < n; {
		if time.Now().After(deadline) {
			st, _ := rx.Stats()
			t.Fatalf("gave up: sent %d, received %d; stats %+v", seq, received, st)
		}
		tx.Complete()
		if seq < n && seq-received < 8 {
			if ua.Alloc(addrs) != 3 {
				t.Fatal("sender out of frames")
			}
			f := testFrame(p, 9000+14, 0, seq)
			if k := ua.WritePacket(segs, addrs, f); k != 3 {
				t.Fatalf("9014 bytes in %d segments", k)
			}
			if !tx.TransmitPacket(segs) {
				ua.Free(addrs)
			} else {
				seq++
			}
		} else {
			tx.Transmit(nil)
		}
		for {
			k, err := rx.ReceivePacket(in)
			if err != nil {
				t.Fatal(err)
			}
			if k == 0 {
				break
			}
			m := ub.CopyPacket(buf, in[:k])
			if k == 1 {
				// Foreign traffic (IPv6 MLD and the like) fits one frame;
				// one of ours must not.
				if _, _, ok, _ := parseFrame(p, buf[:m]); ok {
					t.Fatalf("jumbo frame in one segment: %+v", in[0])
				}
				r := rx.Recycle(in[:1])
				ub.FreeDescs(in[r:1])
				continue
			}
			if _, _, ok, err := parseFrame(p, buf[:m]); err != nil || !ok || m != 9014 {
				t.Fatalf("packet of %d bytes in %d segments: ok=%v err=%v", m, k, ok, err)
			}
			received++
			r := rx.Recycle(in[:k])
			ub.FreeDescs(in[r:k])
		}
		rx.Wait(time.Millisecond)
	}
	if st, _ := rx.Stats(); st.RxDropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestWaitSeesQueuedFramesAndArrivals: frames already on the RX ring end
// Wait at once, as they end poll(2), though Wait parks in the netpoller,
// whose epoll is edge-triggered and may have taken their wakeup already
// (Wait looks at the ring before it parks). A frame arriving while it
// waits ends it too, and a timeout with nothing queued is not an error.
// The minute-long timeouts only tell "returned for the frames" from
// "waited it out". Wait allocates nothing.
func TestWaitSeesQueuedFramesAndArrivals(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	ua := umemOn(t, xsk.UmemOptions{NumFrames: 256, FrameSize: 2048})
	ub := umemOn(t, xsk.UmemOptions{NumFrames: 256, FrameSize: 2048})
	tx := socketOn(t, &p.A, ua, 0, xsk.SocketOptions{Bind: bind()})
	rx := socketOn(t, &p.B, ub, 0, xsk.SocketOptions{Bind: bind(), Prefill: true})
	redirectOn(t, &p.B, rx)
	descs := make([]xsk.Desc, 64)
	drain := func() int {
		n := rx.Receive(descs)
		ub.FreeDescs(descs[:n])
		rx.Refill()
		return n
	}
	seq := 0
	send := func() {
		t.Helper()
		tx.Complete()
		var a [1]uint64
		if ua.Alloc(a[:]) != 1 {
			t.Fatal("no free frame to send")
		}
		f := testFrame(p, 64, 0, seq)
		seq++
		d := xsk.Desc{Addr: a[0] + ua.DataOffset(), Len: uint32(len(f))}
		copy(ua.Frame(d.Addr)[ua.DataOffset():], f)
		if tx.Transmit([]xsk.Desc{d}) != 1 {
			t.Fatal("TX ring full")
		}
	}
	const long = time.Minute

	if err := rx.Wait(time.Millisecond); err != nil {
		t.Fatalf("a timeout: %v", err)
	}
	drain() // foreign traffic (IPv6 MLD and the like)
	if a := testing.AllocsPerRun(100, func() { _ = rx.Wait(0) }); a != 0 {
		t.Fatalf("Wait allocates %v times a call", a)
	}

	// Queued before the wait: the runtime's netpoller takes the socket's
	// wakeup first, so only the ring says frames are there.
	send()
	testutil.Eventually(t, 10*time.Second, func() bool { got, _ := rx.RX().Peek(1); return got > 0 },
		"the frame sent never reached the RX ring")
	awaitNetpoll(t)
	start := time.Now()
	if err := rx.Wait(long); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el >= long/2 {
		t.Fatalf("frames on the RX ring, Wait waited %v of its %v", el, long)
	}
	if drain() == 0 {
		t.Fatal("Wait returned, the RX ring is empty")
	}

	// Arriving while it waits: sent once the Wait has parked.
	var done chan error
	wait := func() {
		done = make(chan error, 1)
		go func() {
			start := time.Now()
			err := rx.Wait(long)
			if el := time.Since(start); err == nil && el >= long/2 {
				err = fmt.Errorf("a frame arrived, Wait waited %v of its %v", el, long)
			}
			done <- err
		}()
	}
	wait()
	testutil.Eventually(t, 10*time.Second, func() bool {
		select {
		case err := <-done: // ended by a foreign frame: wait again
			if err != nil {
				t.Fatal(err)
			}
			drain()
			wait()
			return false
		default:
			return parked("github.com/xdpipe/xdpipe/xsk.(*sysKernel).Poll")
		}
	}, "Wait never parked in the netpoller")
	send()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if drain() == 0 {
		t.Fatal("Wait returned, the RX ring is empty")
	}
}

// parked reports whether a goroutine with fn on its stack is parked in the
// Go runtime's netpoller.
func parked(fn string) bool {
	return slices.ContainsFunc(testutil.Goroutines(fn), func(state string) bool { return strings.HasPrefix(state, "IO wait") })
}

// awaitNetpoll returns once the Go runtime's netpoller has run, taking
// every event that was ready when it was called. A goroutine parked on an
// empty pipe is woken by the netpoller alone, and the epoll_wait that
// reports the pipe readable reports the events ready before that too.
func awaitNetpoll(t *testing.T) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	read := make(chan error, 1)
	go func() {
		_, err := r.Read(make([]byte, 1))
		read <- err
	}()
	testutil.Eventually(t, 10*time.Second, func() bool { return parked("github.com/xdpipe/xdpipe/xsk_test.awaitNetpoll.func1") },
		"the pipe's reader never parked in the netpoller")
	if _, err := w.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-read:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second): // a bound for a hung test, not a timing gate
		t.Fatal("the netpoller never woke the pipe's reader")
	}
}

// TestWaitLeavesTheNetpollerOnceItTransmits: a socket that only receives
// waits in the Go runtime's netpoller through a duplicate of its fd, made
// at its first Wait; once it has transmitted, its next Wait closes the
// duplicate, which takes the socket out of epoll (whose callback would
// otherwise run for every transmitted frame's completion), and polls. The
// duplicate shows in the process's fds.
func TestWaitLeavesTheNetpollerOnceItTransmits(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	u := umemOn(t, xsk.UmemOptions{NumFrames: 256, FrameSize: 2048})
	s := socketOn(t, &p.A, u, 0, xsk.SocketOptions{Bind: bind()})
	fds := func() int {
		t.Helper()
		r, err := testutil.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		return len(r.FDs)
	}
	before := fds()
	if err := s.Wait(time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got := fds(); got != before+1 {
		t.Fatalf("after a receive-only socket's first Wait: %d fds, want %d (the netpoller's duplicate)", got, before+1)
	}
	var a [1]uint64
	if u.Alloc(a[:]) != 1 {
		t.Fatal("no free frame to send")
	}
	f := testFrame(p, 64, 0, 0)
	d := xsk.Desc{Addr: a[0] + u.DataOffset(), Len: uint32(len(f))}
	copy(u.Frame(d.Addr)[u.DataOffset():], f)
	if s.Transmit([]xsk.Desc{d}) != 1 {
		t.Fatal("TX ring full")
	}
	for range 2 {
		if err := s.Wait(time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if got := fds(); got != before {
			t.Fatalf("a socket that transmitted still has the netpoller's duplicate: %d fds, want %d", got, before)
		}
	}
}

// TestCloseReleasesEverything checks that after Close no fd, no mapping and
// no attached program remain, and that Close is idempotent.
func TestCloseReleasesEverything(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	before, err := testutil.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 256})
	if err != nil {
		t.Fatal(err)
	}
	ifindex := p.B.Ifindex(t)
	var s *xsk.Socket
	p.B.NS.MustDo(t, func() error {
		s, err = xsk.NewSocket(u, ifindex, 0, xsk.SocketOptions{Bind: bind()})
		return err
	})
	r, err := bpf.LoadRedirect(bpf.RedirectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.B.NS.MustDo(t, func() error { _, err := r.Attach(ifindex, bpf.AttachDriver); return err })
	if err := r.Register(0, s.FD()); err != nil {
		t.Fatal(err)
	}
	s.Refill()
	during, _ := testutil.Snapshot()
	if len(during.Mappings) < len(before.Mappings)+4 {
		t.Fatalf("expected 4 ring mappings, have %d more", len(during.Mappings)-len(before.Mappings))
	}
	fd := s.FD()
	for range 2 {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if err := u.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); err == nil {
		t.Fatalf("fd %d still open", fd)
	}
	after, err := testutil.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(after.FDs) > len(before.FDs) || len(after.Mappings) > len(before.Mappings) {
		t.Fatalf("leaked: fds %d -> %d, mappings %d -> %d\n%s", len(before.FDs), len(after.FDs),
			len(before.Mappings), len(after.Mappings), strings.Join(after.Mappings, "\n"))
	}
	if out := p.B.NS.MustRun(t, "ip", "link", "show", p.B.Name); strings.Contains(out, "prog/xdp") {
		t.Fatalf("program still attached:\n%s", out)
	}
	// Frames on the fill ring at close are accounted as lost, not leaked
	// silently; nothing else is out.
	if a := u.Accounting(); a.Check() != nil || a.Free+a.Lost != int64(a.Total) {
		t.Fatalf("after close: %+v (%v)", a, a.Check())
	}
}

// TestBindErrors checks the one-line errors for a busy queue, a queue the
// interface does not have and a missing interface, and that failed
// constructors leave nothing open (the package's TestMain checks fds and
// mappings).
func TestBindErrors(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	u1 := umemOn(t, xsk.UmemOptions{NumFrames: 64})
	u2 := umemOn(t, xsk.UmemOptions{NumFrames: 64})
	socketOn(t, &p.B, u1, 0, xsk.SocketOptions{Bind: bind()})
	ifindex := p.B.Ifindex(t)
	before, err := testutil.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	p.B.NS.MustDo(t, func() error {
		for _, c := range []struct {
			ifindex, queue int
			want           string
		}{
			{ifindex, 0, "queue 0 of xdpb already has an AF_XDP socket"},
			{ifindex, 7, "is queue 7 below the active queue count"},
			{ifindex + 1000, 0, "no interface with index"},
		} {
			s, err := xsk.NewSocket(u2, c.ifindex, c.queue, xsk.SocketOptions{Bind: bind(), Prefill: true})
			if err == nil {
				s.Close()
				return fmt.Errorf("ifindex %d queue %d: no error", c.ifindex, c.queue)
			}
			t.Logf("%v", err)
			if !strings.Contains(err.Error(), c.want) {
				return fmt.Errorf("got %q, want it to say %q", err, c.want)
			}
		}
		return nil
	})
	p.A.NS.MustRun(t, "ip", "link", "set", p.A.Name, "down")
	ifA := p.A.Ifindex(t)
	p.A.NS.MustDo(t, func() error {
		_, err := xsk.NewSocket(u2, ifA, 0, xsk.SocketOptions{Bind: bind()})
		t.Logf("%v", err)
		if err == nil || !strings.Contains(err.Error(), "interface xdpa is down") {
			return fmt.Errorf("bind on a down interface: got %v", err)
		}
		return nil
	})
	// The failed binds got as far as registering the UMEM, mapping the
	// rings and prefilling the fill ring; their cleanup stacks must have
	// undone all of it, the frames back on the free stack.
	if a := u2.Accounting(); a.Free != int64(a.Total) {
		t.Fatalf("failed binds kept prefilled frames: %+v", a)
	}
	after, err := testutil.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(after.FDs) != len(before.FDs) || len(after.Mappings) != len(before.Mappings) {
		t.Fatalf("failed constructors leaked: fds %d -> %d, mappings %d -> %d",
			len(before.FDs), len(after.FDs), len(before.Mappings), len(after.Mappings))
	}
	if a := u2.Accounting(); a.Free != 64 || a.Check() != nil {
		t.Fatalf("failed binds changed the umem: %+v", a)
	}
}

// TestBusyPoll runs traffic through sockets with busy polling on
// (SO_PREFER_BUSY_POLL, SO_BUSY_POLL, SO_BUSY_POLL_BUDGET) and the links'
// interrupts deferred as preferred busy polling wants (napi_defer_hard_irqs,
// gro_flush_timeout): the application's polls then drive the NAPI loop.
// The options are read back from the kernel. First on the receiver only,
// then on the sender too.
//
// A sender that busy-polls in zero-copy mode on virtio-net never transmits
// (Linux 7.3): with SO_PREFER_BUSY_POLL, sendto only busy-polls the queue's
// RX NAPI and skips the wakeup (xsk_no_wakeup), and virtio-net sends
// zero-copy frames from its TX NAPI alone. Drivers that transmit from the
// RX NAPI (veth, Intel's) do not have this.
func TestBusyPoll(t *testing.T) {
	for _, c := range []struct {
		name   string
		txBusy bool
	}{{"receiver", false}, {"both", true}} {
		t.Run(c.name, func(t *testing.T) {
			if c.txBusy && testutil.Link() == testutil.NIC && testutil.Bind() == "zerocopy" {
				t.Skip("virtio-net sends zero-copy frames from its TX NAPI, which a busy-polling sender's sendto never wakes (see the test's doc)")
			}
			p := testutil.NewLinkPair(t, testutil.LinkOptions{})
			for _, e := range []*testutil.LinkEnd{&p.A, &p.B} {
				e.SetSysfs(t, "napi_defer_hard_irqs", "2")
				e.SetSysfs(t, "gro_flush_timeout", "200000")
			}
			ua := umemOn(t, xsk.UmemOptions{NumFrames: 256, FrameSize: 2048})
			ub := umemOn(t, xsk.UmemOptions{NumFrames: 512, FrameSize: 2048, FillSize: 256})
			bp := xsk.SocketOptions{Bind: bind(), BusyPoll: true, BusyPollTimeout: 50 * time.Microsecond, BusyPollBudget: 32}
			txo := xsk.SocketOptions{Bind: bind()}
			if c.txBusy {
				txo = bp
			}
			tx := socketOn(t, &p.A, ua, 0, txo)
			rxo := bp
			rxo.Prefill = true
			rx := socketOn(t, &p.B, ub, 0, rxo)
			for _, o := range []struct {
				opt, want int
				name      string
			}{
				{unix.SO_PREFER_BUSY_POLL, 1, "SO_PREFER_BUSY_POLL"},
				{unix.SO_BUSY_POLL, 50, "SO_BUSY_POLL (µs)"},
				// SO_BUSY_POLL_BUDGET cannot be read back (getsockopt
				// answers ENOPROTOOPT); its setsockopt is checked.
			} {
				if got, err := unix.GetsockoptInt(rx.FD(), unix.SOL_SOCKET, o.opt); err != nil || got != o.want {
					t.Errorf("%s: %d, %v; want %d", o.name, got, err, o.want)
				}
			}
			redirectOn(t, &p.B, rx)
			if got := pump(t, p, []*xsk.Socket{tx}, []*xsk.Socket{rx}, 1000, 100); got[0][0] != 1000 {
				t.Fatalf("received %d of 1000", got[0][0])
			}
		})
	}
}

// TestStatsDrops sends frames to a socket whose fill ring is empty: the
// kernel drops them and XDP_STATISTICS says so.
func TestStatsDrops(t *testing.T) {
	if testutil.Bind() == "zerocopy" {
		t.Skip("copy mode only: in zero-copy mode the fill ring is the driver's RX buffers; without them frames never reach the socket to be counted")
	}
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	ua := umemOn(t, xsk.UmemOptions{NumFrames: 64, FrameSize: 2048})
	ub := umemOn(t, xsk.UmemOptions{NumFrames: 64, FrameSize: 2048})
	tx := socketOn(t, &p.A, ua, 0, xsk.SocketOptions{Bind: bind()})
	rx := socketOn(t, &p.B, ub, 0, xsk.SocketOptions{Bind: bind()})
	r := redirectOn(t, &p.B) // registered below, without a Refill
	if err := r.Register(0, rx.FD()); err != nil {
		t.Fatal(err)
	}
	const n = 10
	addrs := make([]uint64, n)
	descs := make([]xsk.Desc, n)
	ua.Alloc(addrs)
	for i, a := range addrs {
		f := testFrame(p, 100, 0, i)
		copy(ua.Frame(a)[ua.DataOffset():], f)
		descs[i] = xsk.Desc{Addr: a + ua.DataOffset(), Len: uint32(len(f))}
	}
	if q := tx.Transmit(descs); q != n {
		t.Fatalf("queued %d of %d", q, n)
	}
	done := 0
	testutil.EventuallyErr(t, 10*time.Second, func() error {
		tx.Transmit(nil)
		if done += tx.Complete(); done < n {
			return fmt.Errorf("%d of %d completed", done, n)
		}
		return nil
	})
	var st xsk.Statistics
	testutil.EventuallyErr(t, 10*time.Second, func() error {
		var err error
		if st, err = rx.Stats(); err != nil {
			t.Fatal(err)
		}
		if st.RxDropped < n {
			return fmt.Errorf("RxDropped %d after %d frames into an empty fill ring; stats %+v", st.RxDropped, n, st)
		}
		return nil
	})
	t.Logf("receiver stats %+v", st)
	if k := rx.Receive(descs); k != 0 {
		t.Fatalf("received %d frames without a fill ring", k)
	}
}

// TestBindModes: copy mode binds anywhere. On veth, zero-copy fails with a
// clear error that errors.Is sees as ErrNotSupported, and auto falls back
// to copy; on zero-copy NICs, zero-copy binds and auto gets it.
func TestBindModes(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	u := umemOn(t, xsk.UmemOptions{NumFrames: 256})
	ifindex := p.B.Ifindex(t)
	zc := p.Kind == testutil.NIC
	p.B.NS.MustDo(t, func() error {
		s, err := xsk.NewSocket(u, ifindex, 0, xsk.SocketOptions{Bind: xsk.BindZeroCopy})
		switch {
		case zc && err != nil:
			return fmt.Errorf("zero-copy bind on %s: %w", p.B.Name, err)
		case zc:
			if err := s.Close(); err != nil {
				return err
			}
		case err == nil:
			s.Close()
			return errors.New("zero-copy bind on veth succeeded")
		default:
			t.Logf("zero-copy: %v", err)
			if !errors.Is(err, xsk.ErrNotSupported) || !strings.Contains(err.Error(), "zero-copy: the driver does not support zero-copy (EOPNOTSUPP); use copy or auto mode") {
				return fmt.Errorf("zero-copy error not clear: %w", err)
			}
		}
		auto := xsk.BindCopy
		if zc {
			auto = xsk.BindZeroCopy
		}
		for mode, want := range map[xsk.BindMode]xsk.BindMode{xsk.BindCopy: xsk.BindCopy, xsk.BindAuto: auto} {
			s, err = xsk.NewSocket(u, ifindex, 0, xsk.SocketOptions{Bind: mode})
			if err != nil {
				return fmt.Errorf("bind %v: %w", mode, err)
			}
			got := s.Mode()
			if err := s.Close(); err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("bind %v on %s got %v, want %v", mode, p.Kind, got, want)
			}
		}
		return nil
	})
	if a := u.Accounting(); a.Check() != nil || a.Free != 256 {
		t.Fatalf("after binds: %+v", a)
	}
}

// TestJumboZeroCopyOneSegment: on an interface whose MTU needs multi-buffer
// and a driver whose zero-copy takes one segment (xdp-zc-max-segs 1, as
// virtio-net's), zero-copy is refused in one line before any bind, and
// auto binds copy mode saying why: never a zero-copy socket that would
// drop every jumbo frame. veth has no zero-copy, so the driver facts are
// given as virtio-net reports them; the socket, MTU and bind are real.
func TestJumboZeroCopyOneSegment(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{MTU: 9000})
	u := umemOn(t, xsk.UmemOptions{NumFrames: 64, FillSize: 32, CompletionSize: 32})
	drv := xsk.Driver{Known: true, Name: "virtio_net", ZeroCopy: true, ZeroCopyMaxSegs: 1, Queues: 1}
	ifindex := p.A.Ifindex(t)
	p.A.NS.MustDo(t, func() error {
		_, err := xsk.NewSocket(u, ifindex, 0, xsk.SocketOptions{RXSize: 32, TXSize: 32, Bind: xsk.BindZeroCopy, MultiBuffer: true, Driver: drv})
		want := "bind " + p.A.Name + " queue 0: zero-copy: MTU 9000 needs multi-buffer (3 segments of a 4096-byte frame), driver virtio_net's zero-copy takes 1 segment(s); lower the MTU or use copy mode (--bind copy): not supported"
		if err == nil || err.Error() != want || !errors.Is(err, xsk.ErrNotSupported) {
			return fmt.Errorf("zero-copy with MTU 9000: %v\nwant %s", err, want)
		}
		s, err := xsk.NewSocket(u, ifindex, 0, xsk.SocketOptions{RXSize: 32, TXSize: 32, MultiBuffer: true, Driver: drv})
		if err != nil {
			return fmt.Errorf("auto with MTU 9000: %w", err)
		}
		mode, why := s.Mode(), s.Fallback()
		if err := s.Close(); err != nil {
			return err
		}
		if mode != xsk.BindCopy || !strings.HasPrefix(why, "MTU 9000 needs multi-buffer") {
			return fmt.Errorf("auto with MTU 9000: mode %v, fallback %q", mode, why)
		}
		return nil
	})
}
