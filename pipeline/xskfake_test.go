package pipeline

import (
	"bytes"
	"sync"
	"testing"

	"github.com/xdpipe/xdpipe/xsk"
	"github.com/xdpipe/xdpipe/xsk/xsktest"
)

// newPort makes a socket on u whose kernel is xsk's fake (xsktest), with
// RX and TX rings of rx and tx entries, closed when the test ends. With a
// wire the fake kernel receives and sends on its own, from the socket's
// calls; without one the test drives it (Deliver, Send).
func newPort(tb testing.TB, u *xsk.Umem, wire *xsktest.Wire, rx, tx uint32) (*xsk.Socket, *xsktest.Kernel) {
	tb.Helper()
	s, k, err := xsktest.NewSocket(u, xsk.SocketOptions{RXSize: rx, TXSize: tx}, xsktest.Options{StartIndex: 0xFFFFFF00, Wire: wire})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
	})
	return s, k
}

// wireOf is a wire on which n copies of frame arrive (n < 0: without end).
func wireOf(frame []byte, n int) *xsktest.Wire {
	w := &xsktest.Wire{Frame: frame}
	w.Arrive(n)
	return w
}

// checkAccounting: every frame of u is in exactly one place.
func checkAccounting(t *testing.T, u *xsk.Umem) {
	t.Helper()
	if err := u.Accounting().Check(); err != nil {
		t.Fatal(err)
	}
}

// newXskFake makes a worker on a real xsk.Socket whose kernel is xsk's
// fake kernel (xsktest), so the worker runs the production ring code in plain memory.
func newXskFake(t *testing.T, stages []Stage) (*Worker, *xsk.Umem, *xsktest.Kernel) {
	return newXskFakeB(t, stages)
}

func newXskFakeB(t testing.TB, stages []Stage) (*Worker, *xsk.Umem, *xsktest.Kernel) {
	t.Helper()
	return newXskFakeWith(t, stages, xsk.SocketOptions{})
}

// newXskFakeWith is newXskFakeB with the socket's options.
func newXskFakeWith(t testing.TB, stages []Stage, so xsk.SocketOptions) (*Worker, *xsk.Umem, *xsktest.Kernel) {
	t.Helper()
	u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	s, k, err := xsktest.NewSocket(u, so, xsktest.Options{StartIndex: 0xFFFFFF00})
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{"fake0", s}}, Mem: u, Stages: stages})
	if err != nil {
		t.Fatal(err)
	}
	s.Refill()
	return w, u, k
}

// TestWorkerXskFakeL2fwd runs l2fwd over xsk's fake kernel: every frame
// comes back with MACs swapped, the accounting of the real UMEM holds, and
// a pass (with the fake kernel's delivery and send) allocates nothing.
func TestWorkerXskFakeL2fwd(t *testing.T) {
	w, u, k := newXskFake(t, []Stage{&Count{}, &MacSwap{}})
	tmpl := udp4(t, 53)
	swapped := append(append(append([]byte(nil), tmpl[6:12]...), tmpl[0:6]...), tmpl[12:]...)
	sent := make([]xsk.Desc, 256)
	total, good := 0, 0
	step := func() {
		k.Deliver(tmpl, 64)
		w.pass()
		n := k.Send(sent)
		for _, d := range sent[:n] {
			if bytes.Equal(u.Bytes(d), swapped) {
				good++
			}
		}
		total += n
	}
	for i := 0; i < 100; i++ {
		step()
	}
	if a := testing.AllocsPerRun(1000, step); a != 0 {
		t.Fatalf("worker pass over xsk fake kernel allocates %v", a)
	}
	w.shutdown()
	total += k.Send(sent)
	w.pass() // collect completions
	rx := w.PortStats(0).RxPackets.Load()
	if rx == 0 || uint64(total) != rx || good != total {
		t.Fatalf("rx %d, sent %d, swapped right %d", rx, total, good)
	}
	if err := u.Accounting().Check(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d frames through l2fwd over the xsk fake kernel; accounting %+v", total, u.Accounting())
}

// BenchmarkWorkerXskFake: one worker pass over xsk's fake kernel per
// iteration (64 frames delivered, processed, sent, completed), per chain.
func BenchmarkWorkerXskFake(b *testing.B) {
	for _, c := range []struct {
		name   string
		stages func() []Stage
	}{
		{"drop", func() []Stage { return []Stage{&Drop{}} }},
		{"macswap", func() []Stage { return []Stage{&MacSwap{}} }},
		{"count+filter+rewrite+macswap", func() []Stage {
			f := portFilter(b, 53)
			return []Stage{&Count{}, f, &Rewrite{SetTTL: 9, SetDSCP: true, DSCP: 1}, &MacSwap{}}
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			w, _, k := newXskFakeB(b, c.stages())
			tmpl := udp4(b, 53)
			sent := make([]xsk.Desc, 256)
			b.ReportAllocs()
			for b.Loop() {
				k.Deliver(tmpl, DefaultBurstSize)
				w.pass()
				k.Send(sent)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*DefaultBurstSize), "ns/pkt")
		})
	}
}

// BenchmarkWorkerXskFakeLatency: the passes a reflector makes in a ping-pong,
// over xsk's fake kernel: one with a single frame to reflect, and one with
// nothing received (the spin loop that waits for it).
func BenchmarkWorkerXskFakeLatency(b *testing.B) {
	b.Run("reflect1", func(b *testing.B) {
		w, _, k := newXskFakeB(b, []Stage{&Reflect{}})
		tmpl := udp4(b, 53)
		sent := make([]xsk.Desc, 4)
		b.ReportAllocs()
		for b.Loop() {
			k.Deliver(tmpl, 1)
			w.pass()
			if k.Send(sent) != 1 {
				b.Fatal("frame not reflected")
			}
		}
	})
	b.Run("idle", func(b *testing.B) {
		w, _, _ := newXskFakeB(b, []Stage{&Reflect{}})
		b.ReportAllocs()
		for b.Loop() {
			w.pass()
		}
	})
}

// BenchmarkWorkersUmem: two workers (queues) on two goroutines, each with
// its own socket on xsk's fake kernel, l2fwd; one UMEM per queue against one
// shared UMEM (whose free stack lock the workers then share). ns/pkt is
// wall time per frame over both workers.
func BenchmarkWorkersUmem(b *testing.B) {
	for _, shared := range []bool{false, true} {
		name := "per-queue"
		if shared {
			name = "shared"
		}
		b.Run(name, func(b *testing.B) {
			var umems []*xsk.Umem
			newUmem := func() *xsk.Umem {
				u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 8192})
				if err != nil {
					b.Fatal(err)
				}
				umems = append(umems, u)
				return u
			}
			defer func() {
				for _, u := range umems {
					u.Close()
				}
			}()
			var common *xsk.Umem
			if shared {
				common = newUmem()
			}
			type q struct {
				w *Worker
				k *xsktest.Kernel
			}
			var qs []q
			for i := 0; i < 2; i++ {
				u := common
				if u == nil {
					u = newUmem()
				}
				s, k, err := xsktest.NewSocket(u, xsk.SocketOptions{}, xsktest.Options{})
				if err != nil {
					b.Fatal(err)
				}
				w, err := NewWorker(WorkerConfig{Queue: i, Ports: []NamedPort{{"fake", s}}, Mem: u, Stages: []Stage{&MacSwap{}}})
				if err != nil {
					b.Fatal(err)
				}
				s.Refill()
				qs = append(qs, q{w, k})
			}
			tmpl := udp4(b, 53)
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for _, q := range qs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sent := make([]xsk.Desc, 256)
					for i := 0; i < b.N; i++ {
						q.k.Deliver(tmpl, DefaultBurstSize)
						q.w.pass()
						q.k.Send(sent)
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N*DefaultBurstSize), "ns/pkt")
		})
	}
}
