package xsk_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/xsk"
	"github.com/xdpipe/xdpipe/xsk/xsktest"
)

// newFake makes a Umem and a socket on it driven by xsktest's fake kernel,
// closed when the test ends.
func newFake(t testing.TB, uo xsk.UmemOptions, so xsk.SocketOptions, fo xsktest.Options) (*xsk.Umem, *xsk.Socket, *xsktest.Kernel) {
	t.Helper()
	u, err := xsk.NewUmem(uo)
	if err != nil {
		t.Fatal(err)
	}
	s, k, err := xsktest.NewSocket(u, so, fo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("socket close: %v", err)
		}
		if err := u.Close(); err != nil {
			t.Errorf("umem close: %v", err)
		}
	})
	return u, s, k
}

func checkAcct(t *testing.T, u *xsk.Umem, want xsk.Accounting) {
	t.Helper()
	a := u.Accounting()
	if err := a.Check(); err != nil {
		t.Fatal(err)
	}
	want.Total = a.Total
	if a != want {
		t.Fatalf("accounting\n got %+v\nwant %+v", a, want)
	}
}

// TestFrameAccounting moves frames through every place and checks the
// counts after each step.
func TestFrameAccounting(t *testing.T) {
	u, s, k := newFake(t, xsk.UmemOptions{NumFrames: 64, FrameSize: 2048, FillSize: 32, CompletionSize: 32, Debug: true},
		xsk.SocketOptions{RXSize: 16, TXSize: 16}, xsktest.Options{StartIndex: 0xFFFFFFF0})
	checkAcct(t, u, xsk.Accounting{Free: 64})
	if n := s.Refill(); n != 32 {
		t.Fatalf("refill: %d", n)
	}
	checkAcct(t, u, xsk.Accounting{Free: 32, Fill: 32})
	pkt := bytes.Repeat([]byte{0xab}, 60)
	if n := k.Deliver(pkt, 20); n != 16 { // RX ring of 16
		t.Fatalf("deliver: %d", n)
	}
	if st, _ := s.Stats(); st.RxRingFull != 4 {
		t.Fatalf("stats: %+v", st)
	}
	checkAcct(t, u, xsk.Accounting{Free: 32, Fill: 16, RX: 16})
	descs := make([]xsk.Desc, 10)
	if n := s.Receive(descs); n != 10 {
		t.Fatalf("receive: %d", n)
	}
	for _, d := range descs {
		if !bytes.Equal(u.Bytes(d), pkt) || d.Addr%2048 != u.DataOffset() {
			t.Fatalf("received %+v: wrong bytes or offset", d)
		}
	}
	checkAcct(t, u, xsk.Accounting{Free: 32, App: 10, Fill: 16, RX: 6})
	if n := s.Transmit(descs[:4]); n != 4 {
		t.Fatalf("transmit: %d", n)
	}
	checkAcct(t, u, xsk.Accounting{Free: 32, App: 6, Fill: 16, RX: 6, TX: 4})
	sent := make([]xsk.Desc, 8)
	if n := k.Send(sent); n != 4 || sent[0] != descs[0] {
		t.Fatalf("fake send: %d %+v", n, sent[0])
	}
	checkAcct(t, u, xsk.Accounting{Free: 32, App: 6, Fill: 16, RX: 6, Completion: 4})
	if n := s.Complete(); n != 4 {
		t.Fatalf("complete: %d", n)
	}
	checkAcct(t, u, xsk.Accounting{Free: 36, App: 6, Fill: 16, RX: 6})
	if n := s.Recycle(descs[4:10]); n != 6 {
		t.Fatalf("recycle: %d", n)
	}
	checkAcct(t, u, xsk.Accounting{Free: 36, Fill: 22, RX: 6})
	held := make([]uint64, 3)
	u.Alloc(held)
	checkAcct(t, u, xsk.Accounting{Free: 33, App: 3, Fill: 22, RX: 6})
	u.Free(held)
	// Closing a fake socket returns every frame.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkAcct(t, u, xsk.Accounting{Free: 64})
}

// TestSocketWraparound runs the burst loop through a fake kernel whose ring
// indices start near 2^32, for many laps of every ring, checking content.
func TestSocketWraparound(t *testing.T) {
	u, s, k := newFake(t, xsk.UmemOptions{NumFrames: 128, FrameSize: 2048, FillSize: 64, CompletionSize: 64, Debug: true},
		xsk.SocketOptions{RXSize: 32, TXSize: 32}, xsktest.Options{StartIndex: 0xFFFFFF00})
	descs := make([]xsk.Desc, 24)
	sent := make([]xsk.Desc, 24)
	pkt := make([]byte, 64)
	var seq, want uint32
	for range 200 {
		s.Refill()
		for range 3 {
			pkt[0], pkt[1], pkt[2], pkt[3] = byte(seq), byte(seq>>8), byte(seq>>16), byte(seq>>24)
			seq += uint32(k.Deliver(pkt, 1))
		}
		n := s.Receive(descs)
		for _, d := range descs[:n] {
			b := u.Bytes(d)
			if got := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24; got != want {
				t.Fatalf("packet %d carries sequence %d", want, got)
			}
			want++
		}
		s.Transmit(descs[:n])
		k.Send(sent)
		s.Complete()
		if err := u.Accounting().Check(); err != nil {
			t.Fatal(err)
		}
	}
	// From 0xFFFFFF00, 256 packets take every ring past 2^32.
	if want < 500 {
		t.Fatalf("only %d packets: no wraparound", want)
	}
}

// TestNeedWakeupKicks checks the socket kicks the kernel only when a ring's
// flag asks, and always without need_wakeup.
func TestNeedWakeupKicks(t *testing.T) {
	u, s, k := newFake(t, xsk.UmemOptions{NumFrames: 64, FrameSize: 2048, FillSize: 16, CompletionSize: 16},
		xsk.SocketOptions{RXSize: 16, TXSize: 16}, xsktest.Options{})
	var a [4]uint64
	u.Alloc(a[:])
	tx := []xsk.Desc{{Addr: a[0], Len: 60}, {Addr: a[1], Len: 60}}
	s.Refill()
	s.Transmit(tx[:1])
	if f, x := k.Kicks(); f != 0 || x != 0 {
		t.Fatalf("kicked without the flag: fill %d tx %d", f, x)
	}
	k.SetNeedWakeup(true, true)
	k.Deliver(make([]byte, 60), 4)
	s.Refill()
	s.Transmit(tx[1:])
	if f, x := k.Kicks(); f != 1 || x != 1 {
		t.Fatalf("with the flag: fill %d tx %d kicks, want 1 and 1", f, x)
	}

	u2, s2, k2 := newFake(t, xsk.UmemOptions{NumFrames: 64, FrameSize: 2048, FillSize: 16, CompletionSize: 16},
		xsk.SocketOptions{RXSize: 16, TXSize: 16, NoNeedWakeup: true}, xsktest.Options{})
	u2.Alloc(a[:])
	s2.Transmit([]xsk.Desc{{Addr: a[0], Len: 60}})
	if _, x := k2.Kicks(); x != 1 {
		t.Fatalf("without need_wakeup: %d tx kicks, want 1", x)
	}
}

// TestMultiBufferFake receives and transmits a 9000-byte packet in
// segments through the fake kernel.
func TestMultiBufferFake(t *testing.T) {
	u, s, k := newFake(t, xsk.UmemOptions{NumFrames: 64, FrameSize: 4096, FillSize: 16, CompletionSize: 16, Debug: true},
		xsk.SocketOptions{RXSize: 16, TXSize: 16, MultiBuffer: true}, xsktest.Options{StartIndex: 0xFFFFFFFE})
	jumbo := make([]byte, 9000)
	for i := range jumbo {
		jumbo[i] = byte(i * 7)
	}
	s.Refill()
	if !k.DeliverPacket(jumbo) || !k.DeliverPacket(jumbo[:100]) {
		t.Fatal("deliver failed")
	}
	segs := make([]xsk.Desc, 2)
	if _, err := s.ReceivePacket(segs); !errors.Is(err, xsk.ErrShortBuffer) {
		t.Fatalf("3-segment packet into 2 slots: %v", err)
	}
	segs = make([]xsk.Desc, 8)
	n, err := s.ReceivePacket(segs)
	if err != nil || n != 3 {
		t.Fatalf("receive packet: %d segments, %v", n, err)
	}
	if !segs[0].Continues() || segs[2].Continues() || xsk.PacketLen(segs[:n]) != 9000 {
		t.Fatalf("segments %+v", segs[:n])
	}
	got := make([]byte, 9000)
	if u.CopyPacket(got, segs[:n]) != 9000 || !bytes.Equal(got, jumbo) {
		t.Fatal("reassembled packet differs")
	}
	if n2, _ := s.ReceivePacket(segs[3:]); n2 != 1 || segs[3].Len != 100 {
		t.Fatalf("second packet: %d segments %+v", n2, segs[3])
	}
	u.FreeDescs(segs[:4])

	// Send it back out in segments.
	addrs := make([]uint64, 3)
	u.Alloc(addrs)
	out := make([]xsk.Desc, 3)
	if m := u.WritePacket(out, addrs, jumbo); m != 3 {
		t.Fatalf("write packet: %d segments", m)
	}
	if !s.TransmitPacket(out) {
		t.Fatal("transmit packet")
	}
	sent := make([]xsk.Desc, 4)
	if m := k.Send(sent); m != 3 {
		t.Fatalf("fake sent %d segments", m)
	}
	if u.CopyPacket(got, sent[:3]) != 9000 || !bytes.Equal(got, jumbo) || sent[2].Continues() {
		t.Fatal("sent packet differs")
	}
	s.Complete()
	if err := u.Accounting().Check(); err != nil {
		t.Fatal(err)
	}

	// Without MultiBuffer a jumbo frame is dropped, as the kernel does.
	_, s3, k3 := newFake(t, xsk.UmemOptions{NumFrames: 16, FrameSize: 4096, FillSize: 16, CompletionSize: 16},
		xsk.SocketOptions{RXSize: 16, TXSize: 16}, xsktest.Options{})
	s3.Refill()
	if k3.DeliverPacket(jumbo) {
		t.Fatal("jumbo delivered without multi-buffer")
	}
	if st, _ := s3.Stats(); st.RxDropped != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestReceiveTakesWholePackets: Receive never ends inside a multi-buffer
// packet, whatever its buffer's length; a packet longer than the buffer is
// dropped (its frames freed, counted) and the next one arrives intact.
func TestReceiveTakesWholePackets(t *testing.T) {
	u, s, k := newFake(t, xsk.UmemOptions{NumFrames: 64, FrameSize: 4096, FillSize: 32, CompletionSize: 32, Debug: true},
		xsk.SocketOptions{RXSize: 32, TXSize: 32, MultiBuffer: true}, xsktest.Options{StartIndex: 0xFFFFFFFA})
	jumbo := make([]byte, 9000) // 3 segments
	s.Refill()
	for _, f := range [][]byte{jumbo[:100], jumbo, jumbo[:60], jumbo} {
		if !k.DeliverPacket(f) {
			t.Fatal("deliver failed")
		}
	}
	buf := make([]xsk.Desc, 3)
	var got []int // packet lengths, as Receive hands them out
	for range 8 {
		n := s.Receive(buf)
		if xsk.WholePackets(buf[:n]) != n {
			t.Fatalf("receive ended inside a packet: %+v", buf[:n])
		}
		for p := range xsk.Packets(buf[:n]) {
			got = append(got, xsk.PacketLen(p))
		}
		u.FreeDescs(buf[:n])
	}
	if want := []int{100, 9000, 60, 9000}; !slices.Equal(got, want) {
		t.Fatalf("packets %v, want %v", got, want)
	}

	// A 2-descriptor buffer cannot hold a 3-segment packet: it is dropped
	// and counted, and the packet after it arrives whole.
	s.Refill()
	k.DeliverPacket(jumbo)
	k.DeliverPacket(jumbo[:70])
	if n := s.Receive(buf[:2]); n != 1 || buf[0].Len != 70 || s.RxOversized() != 1 {
		t.Fatalf("after an oversized packet: %d descriptors %+v, oversized %d", n, buf[:n], s.RxOversized())
	}
	u.FreeDescs(buf[:1])
	if err := u.Accounting().Check(); err != nil {
		t.Fatal(err)
	}
}

// TestTransmitNeverSplitsAPacket: a TX ring short of room takes the whole
// packets that fit and none of the one that does not.
func TestTransmitNeverSplitsAPacket(t *testing.T) {
	u, s, k := newFake(t, xsk.UmemOptions{NumFrames: 64, FrameSize: 4096, FillSize: 16, CompletionSize: 16, Debug: true},
		xsk.SocketOptions{RXSize: 16, TXSize: 4, MultiBuffer: true}, xsktest.Options{})
	addrs := make([]uint64, 6)
	u.Alloc(addrs)
	descs := make([]xsk.Desc, 6)
	for i, a := range addrs {
		descs[i] = xsk.Desc{Addr: a + u.DataOffset(), Len: 100}
		if i != 2 && i != 5 {
			descs[i].Options = xsk.PktContd // two packets of three segments
		}
	}
	if n := s.Transmit(descs); n != 3 {
		t.Fatalf("a 4-entry ring took %d of two 3-segment packets, want 3", n)
	}
	sent := make([]xsk.Desc, 8)
	if m := k.Send(sent); m != 3 || sent[2].Continues() {
		t.Fatalf("kernel saw %d descriptors %+v", m, sent[:m])
	}
	if n := s.Transmit(descs[3:]); n != 3 {
		t.Fatalf("second packet: %d", n)
	}
	k.Send(sent)
	s.Complete()
	if err := u.Accounting().Check(); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentFakeKernel runs the fake kernel in its own goroutine
// against an application goroutine, the way the real kernel runs beside
// the process: every packet must arrive once, in order, with the content
// written before the producer index was published. Run with -race, this
// checks the atomics order descriptor and frame writes before the index.
func TestConcurrentFakeKernel(t *testing.T) {
	u, s, k := newFake(t, xsk.UmemOptions{NumFrames: 256, FrameSize: 2048, FillSize: 64, CompletionSize: 64},
		xsk.SocketOptions{RXSize: 64, TXSize: 64}, xsktest.Options{StartIndex: 0xFFFFF000})
	const total = 20000
	done := make(chan struct{})
	go func() {
		defer close(done)
		pkt := make([]byte, 64)
		sent := make([]xsk.Desc, 16)
		for seq := uint32(0); seq < total; {
			pkt[0], pkt[1], pkt[2], pkt[3] = byte(seq), byte(seq>>8), byte(seq>>16), byte(seq>>24)
			pkt[63] = byte(seq) ^ 0x5a
			seq += uint32(k.Deliver(pkt, 1))
			k.Send(sent)
		}
	}()
	descs := make([]xsk.Desc, 32)
	var want uint32
	for want < total {
		s.Refill()
		n := s.Receive(descs)
		for _, d := range descs[:n] {
			b := u.Bytes(d)
			got := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
			if got != want || b[63] != byte(want)^0x5a {
				t.Fatalf("packet %d: sequence %d, tail %#x", want, got, b[63])
			}
			want++
		}
		// Echo half the packets back out, free the rest.
		q := s.Transmit(descs[:n/2])
		u.FreeDescs(descs[q:n])
		s.Complete()
	}
	<-done
	for s.Complete() > 0 || u.Accounting().TX > 0 {
		var sent [64]xsk.Desc
		k.Send(sent[:])
	}
	if a := u.Accounting(); a.Check() != nil || a.App != 0 || a.Kernel != 0 {
		t.Fatalf("after the run: %+v (%v)", a, a.Check())
	}
}

// TestDebugFrameInTwoPlaces: with Debug, transmitting or recycling a frame
// that is on the free stack panics.
func TestDebugFrameInTwoPlaces(t *testing.T) {
	u, s, _ := newFake(t, xsk.UmemOptions{NumFrames: 16, FrameSize: 2048, FillSize: 16, CompletionSize: 16, Debug: true},
		xsk.SocketOptions{RXSize: 16, TXSize: 16}, xsktest.Options{})
	var a [1]uint64
	u.Alloc(a[:])
	u.Free(a[:])
	for name, f := range map[string]func(){
		"transmit": func() { s.Transmit([]xsk.Desc{{Addr: a[0] + 256, Len: 60}}) },
		"recycle":  func() { s.Recycle([]xsk.Desc{{Addr: a[0] + 256, Len: 60}}) },
	} {
		func() {
			defer func() {
				r, _ := recover().(string)
				if !strings.Contains(r, "on the free stack") {
					t.Errorf("%s of a free frame: recover() = %q", name, r)
				}
			}()
			f()
		}()
	}
}

func TestUmemCloseIdempotent(t *testing.T) {
	u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 16, FrameSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := xsktest.NewSocket(u, xsk.SocketOptions{RXSize: 16, TXSize: 16}, xsktest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Close(); err != nil { // closes s too
		t.Fatal(err)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := xsktest.NewSocket(u, xsk.SocketOptions{}, xsktest.Options{}); !errors.Is(err, xsk.ErrClosed) {
		t.Fatalf("socket on closed umem: %v", err)
	}
	if _, err := xsk.NewSocket(u, 1, 0, xsk.SocketOptions{}); !errors.Is(err, xsk.ErrClosed) {
		t.Fatalf("socket on closed umem: %v", err)
	}
}

// TestFakeWire: the fake kernel works a Wire from the socket's own calls.
// A Refill that kicks delivers what waits, as far as the rings take it,
// and the rest waits without counting as dropped; two sockets share the
// wire's packets; Meta writes in front of the data; a Transmit sends to
// OnSend, SendEvery holding back all but every n-th kick; a Wait delivers.
func TestFakeWire(t *testing.T) {
	u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 128, FrameSize: 2048, FillSize: 16, CompletionSize: 16, Debug: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	pkt := bytes.Repeat([]byte{0x5a}, 60)
	sent := 0
	w := &xsktest.Wire{Frame: pkt, SendEvery: 2,
		Meta: func(h []byte) { h[len(h)-1] = 0xee },
		OnSend: func(d []byte) {
			if !bytes.Equal(d, pkt) {
				t.Errorf("sent % x", d)
			}
			sent++
		}}
	w.Arrive(40)
	so := xsk.SocketOptions{RXSize: 8, TXSize: 8}
	s1, k1, err := xsktest.NewSocket(u, so, xsktest.Options{Wire: w})
	if err != nil {
		t.Fatal(err)
	}
	s2, _, err := xsktest.NewSocket(u, so, xsktest.Options{Wire: w})
	if err != nil {
		t.Fatal(err)
	}
	s1.Refill() // 16 frames on the fill ring, 8 delivered: the RX ring is full
	s2.Refill()
	if w.Delivered() != 16 || w.Waiting() != 24 {
		t.Fatalf("after two refills: %d delivered, %d waiting; want 16 and 24", w.Delivered(), w.Waiting())
	}
	descs := make([]xsk.Desc, 8)
	n := s1.Receive(descs)
	for _, d := range descs[:n] {
		f := u.Frame(d.Addr)
		if off := d.Addr % 2048; !bytes.Equal(u.Bytes(d), pkt) || f[off-1] != 0xee {
			t.Fatalf("received % x, metadata byte %#x", u.Bytes(d), f[off-1])
		}
	}
	if s1.Transmit(descs[:n]) != 8 || w.Sent() != 0 {
		t.Fatalf("first kick sent %d, want 0 (SendEvery 2)", w.Sent())
	}
	s1.Transmit(nil)
	if w.Sent() != 8 || sent != 8 || s1.Complete() != 8 {
		t.Fatalf("second kick: %d sent, %d seen", w.Sent(), sent)
	}
	if err := s1.Wait(time.Millisecond); err != nil || w.Delivered() != 24 {
		t.Fatalf("wait: %v, %d delivered, want 24", err, w.Delivered())
	}
	if st, err := k1.Statistics(); err != nil || st.RxDropped != 0 || st.RxRingFull != 0 || st.RxFillRingEmptyDescs != 0 {
		t.Fatalf("packets waiting on the wire counted as drops: %+v %v", st, err)
	}
	if err := u.Accounting().Check(); err != nil {
		t.Fatal(err)
	}
}

// TestRefillKeepsTheFillRingShallow: with FillLow 256, Refill fills a
// 2048-entry fill ring first; under a light load, one frame at a time, its
// depth decays to 256, and the frames the kernel receives into then come
// from that many. The decay takes three quarters of a second of the clock.
func TestRefillKeepsTheFillRingShallow(t *testing.T) {
	const low = 256
	u, s, k := newFake(t, xsk.UmemOptions{NumFrames: 8192}, xsk.SocketOptions{FillLow: low}, xsktest.Options{})
	if n := s.Refill(); n != 2048 || s.FillDepth() != 2048 {
		t.Fatalf("first refill put %d frames, depth %d; want the whole ring, 2048", n, s.FillDepth())
	}
	frame := make([]byte, 64)
	descs := make([]xsk.Desc, 1)
	seen := map[uint64]bool{}
	// one frame in and out, as a reflector under ping-pong sees them.
	one := func() {
		if k.Deliver(frame, 1) != 1 || s.Receive(descs) != 1 {
			t.Fatal("a frame did not come through")
		}
		seen[descs[0].Addr] = true
		u.Free([]uint64{descs[0].Addr})
		s.Refill()
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		for range 1000 {
			one()
		}
		return u.Accounting().Fill == low && s.FillDepth() == low
	}, "the fill ring never came down to %d frames", low)
	clear(seen)
	for range 4 * 2048 {
		one()
	}
	if len(seen) > low+1 {
		t.Fatalf("%d frames received into after the decay; want at most %d", len(seen), low+1)
	}
	checkAcct(t, u, xsk.Accounting{Free: 8192 - low, Fill: low})
}
