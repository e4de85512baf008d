package xsk_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/xsk"
)

// TestZeroCopyNeedWakeup: in zero-copy mode the driver runs from the rings
// and asks for wakeups through their need_wakeup flags, and the socket
// kicks it when, and only when, they say so. A receiver that meets traffic
// with an empty fill ring finds the fill ring's flag raised (the driver has
// no buffers); Refill kicks it and every later frame arrives; once the
// sender's TX ring is drained the driver raises the TX ring's flag, so the
// next Transmit kicks. Runs in the VM stage (internal/vmtest).
func TestZeroCopyNeedWakeup(t *testing.T) {
	testutil.RequireZeroCopy(t)
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	ua := umemOn(t, xsk.UmemOptions{NumFrames: 512, FrameSize: 2048, Debug: true})
	ub := umemOn(t, xsk.UmemOptions{NumFrames: 1024, FrameSize: 2048, FillSize: 512, Debug: true})
	tx := socketOn(t, &p.A, ua, 0, xsk.SocketOptions{Bind: xsk.BindZeroCopy})
	rx := socketOn(t, &p.B, ub, 0, xsk.SocketOptions{Bind: xsk.BindZeroCopy, RXSize: 512})
	r := redirectOn(t, &p.B) // registered without a Refill: the fill ring stays empty
	if err := r.Register(0, rx.FD()); err != nil {
		t.Fatal(err)
	}

	// Frames of a stream pump does not know (stream 7); they may arrive
	// later, once the driver has buffers, and are drained below.
	addrs := make([]uint64, 8)
	descs := make([]xsk.Desc, len(addrs))
	ua.Alloc(addrs)
	for i, a := range addrs {
		f := testFrame(p, 100, 7, i)
		copy(ua.Frame(a)[ua.DataOffset():], f)
		descs[i] = xsk.Desc{Addr: a + ua.DataOffset(), Len: uint32(len(f))}
	}
	if q := tx.Transmit(descs); q != len(descs) {
		t.Fatalf("queued %d of %d", q, len(descs))
	}
	testutil.EventuallyErr(t, 10*time.Second, func() error {
		if rx.Fill().NeedWakeup() {
			return nil
		}
		tx.Complete()
		tx.Transmit(nil)
		st, _ := rx.Stats()
		return fmt.Errorf("fill ring empty under traffic, but its need_wakeup flag stayed down; stats %+v", st)
	})
	// A drain period, not a wait: frames that may never come leave no
	// condition to wait on.
	in := make([]xsk.Desc, 64)
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); {
		rx.Refill()
		k := rx.Receive(in)
		ub.FreeDescs(in[:k])
		tx.Complete()
		rx.Wait(10 * time.Millisecond)
	}

	n := testutil.Frames(2000)
	if got := pump(t, p, []*xsk.Socket{tx}, []*xsk.Socket{rx}, n, 100); got[0][0] != n {
		t.Fatalf("received %d of %d after the fill ring's wakeup", got[0][0], n)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		if tx.TX().NeedWakeup() {
			return true
		}
		tx.Complete()
		return false
	}, "TX ring drained, but its need_wakeup flag stayed down: the driver would never be kicked again")
	if err := ub.Accounting().Check(); err != nil {
		t.Fatal(err)
	}
}

// TestZeroCopyBindFindsFilledRing: a zero-copy driver posts its RX
// buffers from the fill ring when the socket binds (virtio-net: the queue
// is reset and refilled from the pool), so a receiver's frames must be on
// the fill ring before bind (SocketOptions.Prefill). Bound that way, the
// driver never meets an empty fill ring (RxFillRingEmptyDescs stays 0).
// Bound with an empty fill ring it does (virtio-net: at the refill and at
// the NAPI poll that follows), and its RX queue is left without buffers
// until something runs that poll again: no frame can arrive to do it.
// (The kernel publishes its fill ring consumer index lazily, so the ring
// words cannot show what it took.) Runs in the VM stage (internal/vmtest).
func TestZeroCopyBindFindsFilledRing(t *testing.T) {
	testutil.RequireZeroCopy(t)
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	for _, prefill := range []bool{true, false} {
		u := umemOn(t, xsk.UmemOptions{NumFrames: 1024, FrameSize: 2048, FillSize: 512, Debug: true})
		s := socketOn(t, &p.B, u, 0, xsk.SocketOptions{Bind: xsk.BindZeroCopy, RXSize: 512, Prefill: prefill})
		st, err := s.Stats()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("prefill %v: after bind %+v", prefill, st)
		switch {
		case prefill && st.RxFillRingEmptyDescs != 0:
			t.Errorf("bound with 512 frames on the fill ring, the driver found it empty %d times", st.RxFillRingEmptyDescs)
		case !prefill && st.RxFillRingEmptyDescs == 0:
			// The other half shows the check can fail: the driver fills
			// at bind. A driver that does not is no stall either.
			t.Logf("bound with an empty fill ring, the driver did not look at it at bind")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
