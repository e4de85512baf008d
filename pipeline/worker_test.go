package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/monotime"
	"github.com/xdpipe/xdpipe/internal/testutil"
)

func runWorker(t *testing.T, w *Worker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestWorkerL2fwdFake(t *testing.T) {
	const frames = 10000
	mem := newUmem(t, 512, 2048, 128)
	tmpl := udp4(t, 53)
	wire := wireOf(tmpl, frames)
	swapped := append(append(append([]byte(nil), tmpl[6:12]...), tmpl[0:6]...), tmpl[12:]...)
	good, bad := 0, 0 // counted on the worker's goroutine, read after it stopped
	wire.OnSend = func(d []byte) {
		if bytes.Equal(d, swapped) {
			good++
		} else {
			bad++
		}
	}
	port, _ := newPort(t, mem, wire, 128, 128)
	w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{"a", port}}, Mem: mem, Stages: []Stage{&MacSwap{}}, Poll: PollWakeup})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	testutil.Eventually(t, 10*time.Second, func() bool { return w.PortStats(0).TxPackets.Load() == frames }, "not all frames transmitted")
	stop()
	if good != frames || bad != 0 {
		t.Fatalf("%d frames swapped right, %d wrong", good, bad)
	}
	ps := w.PortStats(0)
	if ps.RxPackets.Load() != frames || ps.RxBytes.Load() != uint64(frames*len(tmpl)) || ps.TxBytes.Load() != uint64(frames*len(tmpl)) {
		t.Fatalf("rx %d/%d tx bytes %d", ps.RxPackets.Load(), ps.RxBytes.Load(), ps.TxBytes.Load())
	}
	if w.InFlight() != 0 {
		t.Fatalf("%d in flight after stop", w.InFlight())
	}
	checkAccounting(t, mem)
	var hist uint64
	for i := range w.Stats().Bursts {
		hist += w.Stats().Bursts[i].Load()
	}
	if hist == 0 {
		t.Error("empty burst histogram")
	}
}

func TestWorkerForwardFake(t *testing.T) {
	mem := newUmem(t, 1024, 2048, 128)
	tmpl := udp4(t, 53)
	aWire, bWire := wireOf(tmpl, 5000), wireOf(tmpl, 0)
	a, _ := newPort(t, mem, aWire, 128, 128)
	b, _ := newPort(t, mem, bWire, 128, 128)
	w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{"a", a}, {"b", b}}, Mem: mem, Stages: []Stage{&Count{}, &Forward{To: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	testutil.Eventually(t, 10*time.Second, func() bool { return w.PortStats(1).TxPackets.Load() == 5000 }, "frames not forwarded")
	stop()
	if aWire.Sent() != 0 || bWire.Sent() != 5000 || w.PortStats(0).RxPackets.Load() != 5000 {
		t.Fatalf("a tx %d, b tx %d, a rx %d", aWire.Sent(), bWire.Sent(), w.PortStats(0).RxPackets.Load())
	}
	checkAccounting(t, mem)
	if _, err := NewWorker(WorkerConfig{Ports: []NamedPort{{"a", a}}, Mem: mem, Stages: []Stage{&Forward{To: "zz"}}}); err == nil {
		t.Fatal("forward to an unknown port accepted")
	}
}

// TestWorkerTXRingFull: a tiny TX ring completed rarely forces TX-ring-full
// drops; every frame is still accounted for, none leaked.
func TestWorkerTXRingFull(t *testing.T) {
	const frames = 20000
	mem := newUmem(t, 512, 2048, 128)
	wire := wireOf(udp4(t, 9), frames)
	wire.SendEvery = 7
	port, _ := newPort(t, mem, wire, 128, 8)
	w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{"a", port}}, Mem: mem, Stages: []Stage{&MacSwap{}}})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	testutil.Eventually(t, 10*time.Second, func() bool { return w.PortStats(0).RxPackets.Load() == frames }, "not all frames received")
	stop()
	ps := w.PortStats(0)
	rx, tx, full := ps.RxPackets.Load(), ps.TxPackets.Load(), ps.TxRingFull.Load()
	if rx != frames || tx+full != rx || full == 0 {
		t.Fatalf("rx %d tx %d tx-ring-full %d", rx, tx, full)
	}
	checkAccounting(t, mem)
	t.Logf("rx %d, tx %d, tx ring full drops %d", rx, tx, full)
}

// TestWorkerDrain: a partial TX batch waits for the drain interval while
// frames keep coming, and goes out with the first pass after it. The
// worker reads its clock once a pass, against the time of its last flush:
// the test moves that back by the interval instead of sleeping through it.
func TestWorkerDrain(t *testing.T) {
	const drain = time.Hour // no pass lasts that long: only the test moves the clock
	mem := newUmem(t, 256, 2048, 64)
	w, port, k := macSwapWorker(t, mem, drain)
	tmpl := udp4(t, 9)
	w.lastTX = monotime.Now()
	port.Refill()
	k.Deliver(tmpl, 3)
	if n := w.pass(); n != 3 || w.PortStats(0).TxPackets.Load() != 0 {
		t.Fatalf("pass got %d, sent %d before the drain interval", n, w.PortStats(0).TxPackets.Load())
	}
	w.lastTX -= int64(drain)
	k.Deliver(tmpl, 3)
	if n := w.pass(); n != 3 || w.PortStats(0).TxPackets.Load() != 6 {
		t.Fatalf("pass got %d, sent %d of 6 once the drain interval had passed", n, w.PortStats(0).TxPackets.Load())
	}
}

// TestWorkerSendsAtOnce: without a drain interval, a pass sends what it
// buffered before it ends, though frames keep coming and the batch is not
// full.
func TestWorkerSendsAtOnce(t *testing.T) {
	mem := newUmem(t, 256, 2048, 64)
	w, port, k := macSwapWorker(t, mem, 0)
	port.Refill()
	k.Deliver(udp4(t, 9), 3)
	if n := w.pass(); n != 3 || w.PortStats(0).TxPackets.Load() != 3 {
		t.Fatalf("pass got %d, sent %d of them", n, w.PortStats(0).TxPackets.Load())
	}
	if _, err := NewWorker(WorkerConfig{Ports: []NamedPort{{"a", port}}, Mem: mem, DrainInterval: -1}); err == nil {
		t.Fatal("a negative drain interval was accepted")
	}
}

// TestWorkerSendsBeforeNextPort: without a drain interval, a port's burst
// is on its TX ring before the worker reads the next port: a reply does
// not wait for the other ports' bursts.
func TestWorkerSendsBeforeNextPort(t *testing.T) {
	mem := newUmem(t, 256, 2048, 64)
	a, ka := newPort(t, mem, nil, 64, 64)
	b, kb := newPort(t, mem, nil, 64, 64)
	var w *Worker
	sentBefore := -1 // port a's frames sent when port b's burst came through the stages
	probe := stageFunc(func(bu *Burst) {
		if bu.Len() > 0 && bu.Pkts[0].Port == 1 {
			sentBefore = int(w.PortStats(0).TxPackets.Load())
		}
	})
	w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{"a", a}, {"b", b}}, Mem: mem, Stages: []Stage{probe, &MacSwap{}}})
	if err != nil {
		t.Fatal(err)
	}
	a.Refill()
	b.Refill()
	ka.Deliver(udp4(t, 9), 3)
	kb.Deliver(udp4(t, 9), 2)
	if n := w.pass(); n != 5 {
		t.Fatalf("pass got %d frames, want 5", n)
	}
	if sentBefore != 3 {
		t.Fatalf("port a had sent %d of its 3 frames when port b's burst was processed", sentBefore)
	}
}

// TestWorkerIdleUpkeep: a spinning worker that receives nothing does its
// upkeep one pass in idleUpkeep, no less often: frames another worker on
// the UMEM frees reach this worker's fill ring within that many passes,
// and the pass counters are published whole after a pass that received.
func TestWorkerIdleUpkeep(t *testing.T) {
	mem := newUmem(t, 128, 2048, 64)
	w, port, k := macSwapWorker(t, mem, 0)
	port.Refill() // 64 frames on the fill ring, 64 free
	held := make([]uint64, 64)
	if n := mem.Alloc(held); n != 64 {
		t.Fatalf("took %d free frames, want 64", n)
	}
	k.Deliver(udp4(t, 9), 64) // the fill ring's frames, sent back and not completed
	if n := w.pass(); n != 64 {
		t.Fatalf("pass got %d frames, want 64", n)
	}
	mem.Free(held) // as another worker on the UMEM would
	passes := 0
	for mem.FreeCount() > 0 {
		if passes == idleUpkeep {
			t.Fatalf("%d idle passes left %d freed frames off the fill ring", passes, mem.FreeCount())
		}
		w.pass()
		passes++
	}
	k.Deliver(udp4(t, 9), 1)
	if n := w.pass(); n != 1 {
		t.Fatalf("pass got %d frames, want 1", n)
	}
	st := w.Stats()
	if p, i := st.Passes.Load(), st.IdlePasses.Load(); p != uint64(passes+2) || i != uint64(passes) {
		t.Fatalf("passes %d (idle %d) published, want %d (%d)", p, i, passes+2, passes)
	}
}

// allStages is every built-in stage but pcap, in an order where each sees
// live packets: 3 of 4 frames pass the filter, every one is rewritten twice,
// swapped and forwarded.
func allStages(t testing.TB) []Stage {
	f := portFilter(t, 53)
	s, err := NewSample(16, 8, 128)
	if err != nil {
		t.Fatal(err)
	}
	return []Stage{&Count{}, f, s,
		&Rewrite{PushVLAN: true, VLANTCI: 10, SetDSCP: true, DSCP: 8, SetTTL: 30},
		&Rewrite{PopVLAN: true, DecTTL: true, SrcMAC: macA},
		&MacSwap{}, &Forward{To: "b"}, &Count{}}
}

// TestWorkerPassAllocs proves a worker pass allocates nothing, with every
// built-in stage except pcap writing, and with the drop stage.
func TestWorkerPassAllocs(t *testing.T) {
	for _, chain := range []struct {
		name   string
		stages []Stage
	}{{"all", allStages(t)}, {"drop", []Stage{&Count{}, &Drop{}}},
		{"ipfix", []Stage{newTestIPFIX(t, newCollector(t), IPFIXOptions{MaxFlows: 16}), &Drop{}}}} {
		t.Run(chain.name, func(t *testing.T) {
			mem := newUmem(t, 1024, 2048, 256)
			a, _ := newPort(t, mem, wireOf(udp4(t, 53), -1), 256, 256)
			b, _ := newPort(t, mem, wireOf(nil, 0), 256, 256)
			w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{"a", a}, {"b", b}}, Mem: mem, Stages: chain.stages})
			if err != nil {
				t.Fatal(err)
			}
			a.Refill()
			b.Refill()
			w.pass() // warm up
			if allocs := testing.AllocsPerRun(1000, func() { w.pass() }); allocs != 0 {
				t.Fatalf("worker pass allocates %v", allocs)
			}
			if w.PortStats(0).RxPackets.Load() < 1000*DefaultBurstSize {
				t.Fatalf("passes received only %d frames", w.PortStats(0).RxPackets.Load())
			}
		})
	}
}

// ticks is a Ticker that records its ticks.
type ticks struct {
	n    int
	last int64
}

func (*ticks) Process(*Burst)      {}
func (t *ticks) Tick(now int64)    { t.n, t.last = t.n+1, now }
func (t *ticks) StageName() string { return "ticks" }

// TestWorkerTicksWhenIdle: Tickers get the pass time once per pass, also
// when the pass received nothing (timers run without traffic).
func TestWorkerTicksWhenIdle(t *testing.T) {
	mem := newUmem(t, 64, 2048, 32)
	a, _ := newPort(t, mem, nil, 32, 32)
	tk := &ticks{}
	w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{"a", a}}, Mem: mem, Stages: []Stage{&Count{}, tk}})
	if err != nil {
		t.Fatal(err)
	}
	before := monotime.Now()
	for range 3 {
		if w.pass() != 0 {
			t.Fatal("the idle port received frames")
		}
	}
	if tk.n != 3 || tk.last < before {
		t.Fatalf("%d ticks, the last at %d; want 3, at or after %d", tk.n, tk.last, before)
	}
}

// TestWorkerSetStages swaps the chain under traffic: nothing is lost.
func TestWorkerSetStages(t *testing.T) {
	const frames = 30000
	mem := newUmem(t, 512, 2048, 128)
	port, _ := newPort(t, mem, wireOf(udp4(t, 9), frames), 128, 128)
	c1 := &Count{}
	w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{"a", port}}, Mem: mem, Stages: []Stage{c1, &MacSwap{}}})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	// Scrape metrics all along: the collector reads the stage chain from
	// another goroutine while it is swapped (go test -race checks it).
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector([]*Worker{w}, nil))
	scraping := make(chan struct{})
	scraped := make(chan struct{})
	go func() {
		defer close(scraped)
		for {
			select {
			case <-scraping:
				return
			default:
			}
			if _, err := reg.Gather(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() { close(scraping); <-scraped }()
	testutil.Eventually(t, 10*time.Second, func() bool { return c1.Packets.Load() > 0 }, "no traffic")
	c2 := &Count{}
	old, err := w.SetStages(context.Background(), []Stage{c2, &MacSwap{}})
	if err != nil || len(old) != 2 || old[0] != c1 {
		t.Fatalf("SetStages: %v %v", old, err)
	}
	if _, err := w.SetStages(context.Background(), []Stage{&Forward{To: "nope"}}); err == nil {
		t.Fatal("bad chain accepted")
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return w.PortStats(0).RxPackets.Load() == frames }, "not all frames received")
	stop()
	ps := w.PortStats(0)
	if c1.Packets.Load()+c2.Packets.Load() != frames || ps.TxPackets.Load() != frames || w.Stats().Reloads.Load() != 1 {
		t.Fatalf("counts %d+%d, tx %d, reloads %d", c1.Packets.Load(), c2.Packets.Load(), ps.TxPackets.Load(), w.Stats().Reloads.Load())
	}
	checkAccounting(t, mem)
}

func TestParseCPUList(t *testing.T) {
	if got, err := ParseCPUList("0"); err != nil || len(got) != 1 {
		t.Fatalf("%v %v", got, err)
	}
	if got, err := ParseCPUList("0-1"); err != nil && len(got) != 2 {
		t.Logf("0-1: %v (machine may have 1 cpu)", err)
	}
	for _, bad := range []string{"x", "1-0", "0,0", "4096", "-1"} {
		if _, err := ParseCPUList(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// The order listed is kept: CPUs go to queues in that order.
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	var avail []int
	for c := 0; c < 1024 && len(avail) < 2; c++ {
		if set.IsSet(c) {
			avail = append(avail, c)
		}
	}
	if len(avail) < 2 {
		t.Skip("one CPU available: no order to keep")
	}
	list := fmt.Sprintf("%d,%d", avail[1], avail[0])
	if got, err := ParseCPUList(list); err != nil || !slices.Equal(got, []int{avail[1], avail[0]}) {
		t.Errorf("%s: %v %v, want the order kept", list, got, err)
	}
}

// TestPinThread: a locked goroutine pinned to one CPU runs only there.
func TestPinThread(t *testing.T) {
	cpus, err := ParseCPUList("0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Leave the thread locked: the runtime discards it when the
		// goroutine exits, so the pinning does not leak to other goroutines.
		if err := PinThread(cpus[0]); err != nil {
			done <- err
			return
		}
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil {
			done <- err
			return
		}
		if set.Count() != 1 || !set.IsSet(cpus[0]) {
			done <- fmt.Errorf("affinity %v after pinning to cpu %d", set, cpus[0])
			return
		}
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := PinThread(-1); err == nil {
		t.Fatal("cpu -1 accepted")
	}
}

// TestZeroCPUPinsNothing: the zero CPU leaves a thread's affinity as it
// was (it is not CPU 0), OnCPU(n) is CPU n, and a CPU out of range is
// refused by NewWorker, before anything runs.
func TestZeroCPUPinsNothing(t *testing.T) {
	var zero CPU
	if _, ok := zero.Get(); ok || zero.String() != "none" {
		t.Fatalf("zero CPU: %v", zero)
	}
	if n, ok := OnCPU(0).Get(); !ok || n != 0 || OnCPU(3).String() != "3" {
		t.Fatalf("OnCPU(0) = %d, %v; OnCPU(3) = %v", n, ok, OnCPU(3))
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // left locked: the thread goes with the goroutine
		var before, after unix.CPUSet
		if err := unix.SchedGetaffinity(0, &before); err != nil {
			done <- err
			return
		}
		if before.Count() < 2 {
			t.Log("one CPU allowed: pinning to it would change nothing either")
		}
		if err := zero.Pin(); err != nil {
			done <- err
			return
		}
		if err := unix.SchedGetaffinity(0, &after); err != nil {
			done <- err
			return
		}
		if after != before {
			done <- fmt.Errorf("the zero CPU changed the affinity from %d CPUs to %d", before.Count(), after.Count())
			return
		}
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mem := newUmem(t, 64, 2048, 16)
	port, _ := newPort(t, mem, nil, 16, 16)
	for _, c := range []CPU{OnCPU(-1), OnCPU(1024)} {
		_, err := NewWorker(WorkerConfig{Ports: []NamedPort{{"a", port}}, Mem: mem, CPU: c})
		if err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("CPU %v: %v, want out of range", c, err)
		}
	}
}

// TestWorkerFlushesWhenInputStops: in wait mode a worker must not go to
// sleep holding frames it buffered for TX; with the drain interval at an
// hour, the lone frame goes out only because the input went quiet.
func TestWorkerFlushesWhenInputStops(t *testing.T) {
	mem := newUmem(t, 64, 2048, 32)
	port, _ := newPort(t, mem, wireOf(udp4(t, 53), 1), 32, 32)
	w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{"a", port}}, Mem: mem, Stages: []Stage{&MacSwap{}},
		Poll: PollWakeup, DrainInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	defer stop()
	testutil.Eventually(t, 10*time.Second, func() bool { return w.PortStats(0).TxPackets.Load() == 1 }, "the frame was not transmitted")
}
