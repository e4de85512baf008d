package gen

import (
	"context"
	"testing"

	"github.com/xdpipe/xdpipe/xsk"
	"github.com/xdpipe/xdpipe/xsk/xsktest"
)

// TestXSKKicksPerBatchNotPerPacket: the xsk engine queues a burst of
// multi-buffer packets with one Transmit, so the kernel is woken (sendto)
// once per burst, not once per packet. The fake kernel transmits inside
// each kick, as copy mode does, and asks for a kick every time.
func TestXSKKicksPerBatchNotPerPacket(t *testing.T) {
	for _, size := range []int{64, 9000} {
		tp, err := NewTemplate(testConfig(UDP4, size))
		if err != nil {
			t.Fatal(err)
		}
		opts := XSKOptions{Frames: 1024, TXSize: 512, Burst: 32}
		opts.defaults()
		uo := xsk.UmemOptions{NumFrames: opts.Frames, FrameSize: xskFrameSize, FillSize: 64, CompletionSize: opts.TXSize}
		u, err := xsk.NewUmem(uo)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		segs := segments(tp, uo)
		s, k, err := xsktest.NewSocket(u, xsk.SocketOptions{RXSize: 64, TXSize: opts.TXSize, MultiBuffer: segs > 1}, xsktest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		k.SetNeedWakeup(false, true)
		sent := make([]xsk.Desc, opts.TXSize)
		var packets, descs int
		k.OnWakeTX = func() {
			n := k.Send(sent)
			descs += n
			for range xsk.Packets(sent[:n]) {
				packets++
			}
		}
		e, err := NewXSK(tp, s, opts)
		if err != nil {
			t.Fatal(err)
		}
		const count = 320
		res, err := e.Send(context.Background(), Run{Count: count})
		if err != nil || res.Sent != count || packets != count || descs != count*segs {
			t.Fatalf("%d bytes: sent %d (%v); the kernel saw %d packets in %d descriptors, want %d in %d", size, res.Sent, err, packets, descs, count, count*segs)
		}
		if _, kicks := k.Kicks(); kicks > uint64(count/opts.Burst+1) {
			t.Errorf("%d-byte packets in %d segments: %d TX kicks for %d packets in bursts of %d, want one a burst", size, segs, kicks, count, opts.Burst)
		}
	}
}
