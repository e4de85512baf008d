package pipeline

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpipe/xdpipe/internal/monotime"
	"github.com/xdpipe/xdpipe/xsk/xsktest"
)

// putStamp writes an rx stamp of ns into m, as bpf/xsk.h's stamp does.
func putStamp(m []byte, ns int64) {
	binary.NativeEndian.PutUint64(m, uint64(ns))
	binary.NativeEndian.PutUint64(m[8:], uint64(ns)^rxStampMagic)
}

// TestDelayBucket: each bucket holds the delays above the previous bound
// up to its own, inclusive; below the first bound (negative skew
// included) is the first, beyond the last bound the overflow bucket.
func TestDelayBucket(t *testing.T) {
	for _, c := range []struct {
		ns   int64
		want int
	}{
		{math.MinInt64, 0}, {-5000, 0}, {0, 0}, {1, 0}, {256, 0},
		{257, 1}, {512, 1}, {513, 2}, {1024, 2}, {1025, 3},
		{1 << 20, 12}, {1<<20 + 1, 13},
		{1 << 30, DelayBuckets - 1}, {1<<30 + 1, DelayBuckets}, {math.MaxInt64, DelayBuckets},
	} {
		if got := delayBucket(c.ns); got != c.want {
			t.Errorf("delayBucket(%d) = %d, want %d", c.ns, got, c.want)
		}
	}
	for i := range DelayBuckets {
		b := DelayBound(i)
		if delayBucket(b) != i || delayBucket(b+1) != i+1 {
			t.Errorf("bound %d of bucket %d: buckets %d and %d around it", b, i, delayBucket(b), delayBucket(b+1))
		}
	}
}

// TestDelayBurstAdd: a burst's delays reach the histogram whole at add,
// the burst's own counts emptied for the next.
func TestDelayBurstAdd(t *testing.T) {
	var d delayBurst
	var s DelayStats
	for _, ns := range []int64{100, 300, 300, 5000, -7, 2 << 30} {
		d.observe(ns, 1)
	}
	d.add(&s)
	want := map[int]uint64{0: 2, 1: 2, 5: 1, DelayBuckets: 1}
	for i := range s.Counts {
		if got := s.Counts[i].Load(); got != want[i] {
			t.Errorf("bucket %d: %d, want %d", i, got, want[i])
		}
	}
	if got, want := s.SumNanos.Load(), uint64(100+300+300+5000+2<<30); got != want {
		t.Errorf("sum %d ns, want %d (a negative delay adds 0)", got, want)
	}
	d.add(&s)
	d.observe(1000, 1)
	d.add(&s)
	if got := s.Counts[2].Load(); got != 1 || s.Counts[0].Load() != 2 {
		t.Errorf("after a second burst: bucket 2 %d, bucket 0 %d; want 1 and 2", got, s.Counts[0].Load())
	}
}

// TestTakeStamp: a stamp is read once; a frame without one (garbage in
// the headroom, a stale stamp's invalidated check, data at the frame's
// start) gives none.
func TestTakeStamp(t *testing.T) {
	b, _ := burstOf(t, udp4(t, 53), udp4(t, 53), udp4(t, 53))
	p := &b.Pkts[0]
	putStamp(p.Frame[p.Off-RxStampLen:p.Off], 123456789)
	if ns, ok := takeMeta(p); !ok || ns != 123456789 {
		t.Fatalf("stamped packet: %d, %v", ns, ok)
	}
	if ns, ok := takeMeta(p); ok {
		t.Fatalf("a stamp read twice: %d", ns)
	}
	q := &b.Pkts[1]
	for i := range RxStampLen {
		q.Frame[int(q.Off)-RxStampLen+i] = byte(0xa0 + i)
	}
	if ns, ok := takeMeta(q); ok {
		t.Fatalf("garbage read as a stamp: %d", ns)
	}
	r := &b.Pkts[2]
	putStamp(r.Frame[r.Off-RxStampLen:r.Off], 42)
	if !r.Resize(-int(r.Off), len(r.Data)) {
		t.Fatal("resize to the frame's start")
	}
	if ns, ok := takeMeta(r); ok {
		t.Fatalf("data at the frame's start: stamp %d read from nowhere", ns)
	}
}

// TestWorkerRxDelay: with RxDelay and every frame stamped, a worker's
// histogram counts every frame, once, though it looks at one frame per
// burst: frames received later into the same UMEM frames with zeros where
// the stamp goes add nothing. Without RxDelay it reads no stamp and has
// no histogram. A pass allocates nothing either way.
func TestWorkerRxDelay(t *testing.T) {
	for _, on := range []bool{false, true} {
		mem := newUmem(t, 256, 2048, 128)
		every := 1 // read by the fake kernel on this goroutine, in the worker's passes
		wire := wireOf(udp4(t, 53), 1000)
		stampEvery(wire, &every)
		port, _ := newPort(t, mem, wire, 128, 128)
		w, err := NewWorker(WorkerConfig{Queue: 2, Ports: []NamedPort{{"eth0", port}}, Mem: mem, Stages: []Stage{&Count{}}, RxDelay: on})
		if err != nil {
			t.Fatal(err)
		}
		port.Refill()
		for w.PortStats(0).RxPackets.Load() < 1000 {
			w.pass()
		}
		// The same frames again, none due a stamp: the program zeroed
		// their metadata, so nothing reads as a stamp.
		every = 0
		wire.Arrive(1000)
		for w.PortStats(0).RxPackets.Load() < 2000 {
			w.pass()
		}
		if rx := w.PortStats(0).RxPackets.Load(); rx != 2000 {
			t.Fatalf("received %d frames, want 2000", rx)
		}
		d := w.RxDelay()
		if !on {
			if d != nil {
				t.Fatal("RxDelay off: a histogram")
			}
			continue
		}
		var n uint64
		for i := range d.Counts {
			n += d.Counts[i].Load()
		}
		if n != 1000 {
			t.Fatalf("delays counted %d, want 1000 (the stamped frames)", n)
		}
		if d.SumNanos.Load() == 0 {
			t.Error("the delays sum to 0 ns")
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(NewCollector([]*Worker{w}, nil))
		if v, series := gathered(t, reg, "xdpipe_rx_delay_seconds", "queue=2"); v != 1000 || series != 1 {
			t.Fatalf("xdpipe_rx_delay_seconds: count %v in %d series, want 1000 in 1", v, series)
		}
		every = 1
		wire.Arrive(-1)
		w.pass()
		if a := testing.AllocsPerRun(1000, func() { w.pass() }); a != 0 {
			t.Fatalf("a pass counting rx delays allocates %v", a)
		}
	}
}

// TestWorkerRxDelaySampled: with one frame in 8 stamped, the worker's
// counts, one looked-at frame per burst weighted by the burst's size,
// estimate the stamped frames: within a quarter of them over 256,000
// frames, some 5 standard deviations of the estimate.
func TestWorkerRxDelaySampled(t *testing.T) {
	const frames = 256000
	every := 8
	mem := newUmem(t, 256, 2048, 128)
	wire := wireOf(udp4(t, 53), frames)
	stampEvery(wire, &every)
	port, _ := newPort(t, mem, wire, 128, 128)
	w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{"eth0", port}}, Mem: mem, Stages: []Stage{&Count{}}, RxDelay: true})
	if err != nil {
		t.Fatal(err)
	}
	port.Refill()
	for w.PortStats(0).RxPackets.Load() < frames {
		w.pass()
	}
	var n uint64
	for i := range w.RxDelay().Counts {
		n += w.RxDelay().Counts[i].Load()
	}
	if want := uint64(frames / every); n < want*3/4 || n > want*5/4 {
		t.Fatalf("delays counted %d, want about %d (the stamped frames)", n, want)
	}
	t.Logf("%d stamped frames estimated as %d", frames/every, n)
}

// stampEvery fakes the XDP program's rx stamp on wire: it writes the
// metadata area in front of every arriving frame, the time in one in
// *every and zeros in the others (*every 0: zeros in all). The fake kernel
// calls it in the worker's passes, on the test's goroutine.
func stampEvery(wire *xsktest.Wire, every *int) {
	seen := 0
	wire.Meta = func(headroom []byte) {
		m := headroom[len(headroom)-RxStampLen:]
		if *every > 0 && seen%*every == 0 {
			putStamp(m, monotime.Now())
		} else {
			clear(m)
		}
		seen++
	}
}

// BenchmarkRxDelay: what counting one packet's delay costs, the worker's
// per-burst histogram against prometheus.Histogram.Observe per packet
// with the same buckets.
func BenchmarkRxDelay(b *testing.B) {
	delays := make([]int64, 1024)
	for i := range delays {
		delays[i] = int64(200 + i*i*37%2000000)
	}
	b.Run("burst", func(b *testing.B) {
		var d delayBurst
		var s DelayStats
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			d.observe(delays[i&1023], 1)
			if i++; i%DefaultBurstSize == 0 {
				d.add(&s)
			}
		}
	})
	b.Run("prometheus", func(b *testing.B) {
		bounds := make([]float64, DelayBuckets)
		for i := range bounds {
			bounds[i] = float64(DelayBound(i)) / 1e9
		}
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x", Buckets: bounds})
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			h.Observe(float64(delays[i&1023]) / 1e9)
			i++
		}
	})
}

// putMeta writes RX metadata and a stamp of ns (0: none) into m, the
// RxMetaLen bytes before a frame's data, as bpf/xsk.h's device-bound
// variant does.
func putMeta(m []byte, ts int64, hash uint32, typ, flags uint16, ns int64) {
	binary.NativeEndian.PutUint64(m, uint64(ts))
	binary.NativeEndian.PutUint32(m[8:], hash)
	binary.NativeEndian.PutUint16(m[12:], typ)
	binary.NativeEndian.PutUint16(m[14:], flags)
	binary.NativeEndian.PutUint64(m[16:], uint64(ns))
	binary.NativeEndian.PutUint64(m[24:], uint64(ns)^rxMetaMagic)
}

// TestTakeMeta: the driver's RX metadata reaches the Packet's fields as
// far as its flags say, with or without a stamp behind it, once.
func TestTakeMeta(t *testing.T) {
	b, _ := burstOf(t, udp4(t, 53), udp4(t, 53), udp4(t, 53))
	for i, c := range []struct {
		flags uint16
		ns    int64
		want  RxMeta
	}{{rxMetaHash | rxMetaTimestamp, 77, RxHasHash | RxHasTimestamp}, {rxMetaHash, 0, RxHasHash}, {0, 5, 0}} {
		p := &b.Pkts[i]
		putMeta(p.Frame[p.Off-RxMetaLen:p.Off], 1234, 0xabcdef01, 0x29, c.flags, c.ns)
		ns, ok := takeMeta(p)
		if ns != c.ns || ok != (c.ns != 0) || p.RxMeta != c.want {
			t.Fatalf("case %d: stamp %d %v, flags %b; want %d, flags %b", i, ns, ok, p.RxMeta, c.ns, c.want)
		}
		if c.want&RxHasHash != 0 && (p.RxHash != 0xabcdef01 || p.RxHashType != 0x29) {
			t.Errorf("case %d: hash %#x type %#x", i, p.RxHash, p.RxHashType)
		}
		if c.want&RxHasTimestamp != 0 && p.RxTimestamp != 1234 {
			t.Errorf("case %d: timestamp %d", i, p.RxTimestamp)
		}
		*p = Packet{Data: p.Data, Frame: p.Frame, Off: p.Off}
		if _, ok := takeMeta(p); ok || p.RxMeta != 0 {
			t.Fatalf("case %d: metadata read twice", i)
		}
	}
}
