package dataplane

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/netdev"
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/rdma"
	"github.com/xdpipe/xdpipe/xsk"
	"github.com/xdpipe/xdpipe/xsk/xsktest"
)

func TestMain(m *testing.M) { os.Exit(testutil.CheckLeaks(m)) }

// fakeSystem stands in for the kernel: interfaces with two queues each,
// UMEMs in process memory (xsk.NewUmem, registered with no kernel), and
// each queue's socket on xsk's fake kernel (xsktest). All sockets share
// one Wire: what the test makes arrive on it (wire.Arrive) is split over
// the sockets as they take it, and each transmit completes at once.
type fakeSystem struct {
	mu      sync.Mutex
	mems    []*xsk.Umem
	ports   []*fakePort
	wire    *xsktest.Wire // made by the first openPort
	opened  int           // ports opened
	closed  int           // ports closed
	opts    []PortOptions // of the ports opened
	memlock uint64        // the RLIMIT_MEMLOCK it reports; 0: no bound
	// available, if set, is the machine's MemAvailable before the fake's
	// UMEMs took theirs (taken).
	available, taken uint64
}

func (f *fakeSystem) caps(bool) error { return nil }

func (f *fakeSystem) checkPort(*net.Interface, PortOptions, uint32) error { return nil }

// memoryLimits is the machine's available memory, and no bound on locked
// memory unless the test sets memlock: the fake's UMEMs are registered
// with no kernel, so the test process's RLIMIT_MEMLOCK says nothing about
// them.
func (f *fakeSystem) memoryLimits() (xsk.MemoryLimits, error) {
	lim, err := xsk.ReadMemoryLimits()
	lim.Memlock = cmp.Or(f.memlock, math.MaxUint64)
	if f.available > 0 {
		f.mu.Lock()
		lim.Available = f.available - f.taken
		f.mu.Unlock()
	}
	return lim, err
}

func (f *fakeSystem) iface(name string) (*net.Interface, int, error) {
	if strings.HasPrefix(name, "nosuch") {
		return nil, 0, errors.New("interface not found")
	}
	mtu := 1500
	if strings.HasPrefix(name, "jumbo") {
		mtu = 9000
	}
	return &net.Interface{Name: name, Index: 10 + len(name), MTU: mtu, Flags: net.FlagUp}, 2, nil
}

// fakeMaxFrames bounds the fake's UMEMs: a test never allocates a size
// that validation should have refused.
const fakeMaxFrames = 1 << 16

func (f *fakeSystem) umem(o xsk.UmemOptions) (umem, error) {
	if o.NumFrames > fakeMaxFrames {
		return nil, fmt.Errorf("test fake: refusing a UMEM of %d frames that validation let through", o.NumFrames)
	}
	u, err := xsk.NewUmem(o)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.mems = append(f.mems, u)
	f.taken += uint64(u.NumFrames()) * uint64(u.FrameSize())
	f.mu.Unlock()
	return u, nil
}

// openPort opens a socket on the fake kernel for each queue, on the
// system's wire, and fills its fill ring.
func (f *fakeSystem) openPort(o PortOptions, mems []umem) (_ port, err error) {
	p := &fakePort{sys: f, fault: make(chan netdev.LinkEvent, 1)}
	defer func() {
		if err != nil {
			p.closeSockets()
		}
	}()
	if o.Rules != nil {
		p.st = &fakeSteer{}
		p.st.Apply(o.Rules)
	}
	f.mu.Lock()
	if f.wire == nil {
		f.wire = &xsktest.Wire{Frame: frame}
	}
	wire := f.wire
	f.mu.Unlock()
	for i := range o.Queues {
		s, k, err := xsktest.NewSocket(mems[i].(*xsk.Umem), o.Socket, xsktest.Options{Wire: wire})
		if err != nil {
			return nil, fmt.Errorf("open port %s queue %d: %w", o.Iface, o.Queues[i], err)
		}
		s.Refill()
		p.socks, p.kernels = append(p.socks, s), append(p.kernels, k)
	}
	f.mu.Lock()
	f.opened++
	f.opts = append(f.opts, o)
	f.ports = append(f.ports, p)
	f.mu.Unlock()
	return p, nil
}

func (f *fakeSystem) rdma() error { return nil }

// dialRDMA connects nowhere: it waits for its context, as a connection
// to a sink that does not answer would.
func (f *fakeSystem) dialRDMA(ctx context.Context, _ string, _ umem, _ rdma.DialOptions) (rdmaConn, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// frame is the UDP frame that arrives on the fake's wire.
var frame = func() []byte {
	b := make([]byte, 60)
	copy(b, []byte{0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00})
	ip := b[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], 46)
	copy(ip[12:], net.IPv4(198, 18, 0, 1).To4())
	copy(ip[16:], net.IPv4(198, 18, 0, 2).To4())
	binary.BigEndian.PutUint16(ip[20:], 10000)
	binary.BigEndian.PutUint16(ip[22:], 9)
	binary.BigEndian.PutUint16(ip[24:], 26)
	return b
}()

type fakePort struct {
	sys      *fakeSystem
	socks    []*xsk.Socket
	kernels  []*xsktest.Kernel // of socks
	detached bool
	fault    chan netdev.LinkEvent // what the test makes happen to the interface
	st       *fakeSteer            // with rules
	// unboundFrames is what the program counts as arriving on queues
	// without a socket.
	unboundFrames bpf.Unbound
}

func (p *fakePort) sockets() []socket {
	out := make([]socket, len(p.socks))
	for i, s := range p.socks {
		out[i] = s
	}
	return out
}
func (p *fakePort) info() PortInfo                  { return PortInfo{XDP: "fake", Mode: "fake mode"} }
func (p *fakePort) faults() <-chan netdev.LinkEvent { return p.fault }
func (p *fakePort) detach() error                   { p.detached = true; return nil }
func (p *fakePort) unbound() (bpf.Unbound, error)   { return p.unboundFrames, nil }
func (p *fakePort) steer() steerer {
	if p.st == nil {
		return nil
	}
	return p.st
}

// close closes the port's sockets, as Port.Close does.
func (p *fakePort) close() error {
	p.sys.mu.Lock()
	p.sys.closed++
	p.sys.mu.Unlock()
	return p.closeSockets()
}

func (p *fakePort) closeSockets() error {
	var errs []error
	for _, s := range p.socks {
		errs = append(errs, s.Close())
	}
	p.socks = nil
	return errors.Join(errs...)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func stages(t *testing.T, kinds ...string) []Stage {
	t.Helper()
	var out []Stage
	for _, k := range kinds {
		s, err := NewStage(k)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// running opens a daemon on the fake system and runs it until the test
// ends; stop stops it and returns Run's error.
func running(t *testing.T, cfg Options) (*Daemon, *fakeSystem, func() error) {
	t.Helper()
	sys := &fakeSystem{}
	d, err := open(context.Background(), cfg, quiet(), sys)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() {
		stop()
		d.Close()
	})
	return d, sys, stop
}

// waitRX waits until the daemon has received n frames.
func waitRX(t *testing.T, d *Daemon, n uint64) {
	t.Helper()
	testutil.EventuallyErr(t, 10*time.Second, func() error {
		var rx uint64
		for _, c := range d.Counts() {
			rx += c.RX
		}
		if rx < n {
			return fmt.Errorf("received %d of %d frames", rx, n)
		}
		return nil
	})
}

func baseConfig(t *testing.T, kinds ...string) Options {
	return Options{Interfaces: []string{"fake0"}, Ring: 64, Poll: pipeline.PollWakeup, Stages: stages(t, kinds...)}
}

// TestDaemonReloadUnderTrafficLosesNoFrame swaps the stage chain many
// times while frames flow: every frame is received once and then either
// transmitted or dropped by a verdict, the chains in between run, and
// every UMEM frame is back where it belongs after the stop.
func TestDaemonReloadUnderTrafficLosesNoFrame(t *testing.T) {
	d, sys, stop := running(t, baseConfig(t, "count", "macswap"))
	if q := d.Queues(); len(q) != 2 {
		t.Fatalf("queues %v, want both of the fake's two", q)
	}
	const perRound = 2000
	var sent uint64
	for i := range 20 {
		sys.wire.Arrive(perRound)
		sent += perRound
		waitRX(t, d, sent-perRound/2) // half of the round still to come
		next := baseConfig(t, "count", "macswap")
		if i%2 == 0 {
			next = baseConfig(t, "count", "drop")
		}
		if err := d.Reload(next); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	waitRX(t, d, sent)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var rx, tx, dropped, reloads uint64
	for i, c := range d.Counts() {
		rx, tx, dropped = rx+c.RX, tx+c.TX, dropped+c.Dropped()
		reloads += d.workers[i].Stats().Reloads.Load()
	}
	if rx != sent || tx+dropped != rx || tx == 0 || dropped == 0 {
		t.Errorf("sent %d: received %d, transmitted %d, dropped %d", sent, rx, tx, dropped)
	}
	if reloads == 0 {
		t.Error("no worker ran a reloaded chain")
	}
	accts, err := d.Account()
	if err != nil || len(accts) != 2 {
		t.Fatalf("accounting %v: %v", accts, err)
	}
	for _, a := range accts {
		if a.App != 0 || a.Free+a.Fill != int64(a.Total) {
			t.Errorf("umem %s after the stop: %+v, want every frame free or on the fill ring", a.Name, a.Accounting)
		}
	}
}

// sample is one counter sample: its labels and value.
type sample struct {
	labels map[string]string
	value  float64
}

// counters gathers c through a pedantic registry and returns the samples of
// the counter name.
func counters(t *testing.T, c prometheus.Collector, name string) []sample {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []sample
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			out = append(out, sample{l, m.GetCounter().GetValue()})
		}
	}
	return out
}

// TestDaemonAccountCountsStages: the Collector exports the stages' own
// counters, labelled with their kind and place in the chain.
func TestDaemonAccountCountsStages(t *testing.T) {
	cfg := baseConfig(t, "count", "drop")
	cfg.Queues = []int{1}
	d, sys, stop := running(t, cfg)
	sys.wire.Arrive(500)
	waitRX(t, d, 500)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	samples := counters(t, d.Collector(), "xdpipe_stage_packets_total")
	found := false
	for _, m := range samples {
		if m.labels["queue"] == "1" && m.labels["stage"] == "count" && m.labels["index"] == "0" && m.value == 500 {
			found = true
		}
	}
	if !found {
		t.Errorf("no xdpipe_stage_packets_total{queue=1,stage=count,index=0} = 500 in %v", samples)
	}
	c := d.Counts()
	if len(c) != 1 || c[0].Queue != 1 || c[0].Verdict != 500 {
		t.Errorf("counts %+v, want queue 1 with 500 dropped by verdict", c)
	}
}

// TestDaemonCountsTheKernelsDrops: what the kernel dropped before the
// workers (XDP_STATISTICS: RX ring full, other drops) is in each queue's
// Counts, apart from the workers' drops, and in the metrics by reason.
func TestDaemonCountsTheKernelsDrops(t *testing.T) {
	d, sys, stop := running(t, baseConfig(t, "count"))
	sys.ports[0].kernels[1].SetStatistics(xsk.Statistics{RxRingFull: 5, RxDropped: 3, RxInvalidDescs: 2})
	sys.wire.Arrive(100)
	waitRX(t, d, 100)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	c := d.Counts()
	if len(c) != 2 || c[0].Kernel() != 0 || c[1].Queue != 1 || c[1].RingFull != 5 || c[1].KernelOther != 3 ||
		c[1].Kernel() != 8 || c[0].Dropped()+c[1].Dropped() != 100 {
		t.Fatalf("counts %+v, want the 100 frames dropped by the chain's verdict, and queue 1 with 5 dropped on a full RX ring and 3 otherwise by the kernel", c)
	}
	seen := map[string]float64{}
	for _, m := range counters(t, d.Collector(), "xdpipe_drops_total") {
		seen[m.labels["queue"]+"/"+m.labels["reason"]] += m.value
	}
	for key, want := range map[string]float64{"1/xsk_rx_ring_full": 5, "1/xsk_rx_dropped": 3, "1/xsk_rx_invalid_descs": 2, "0/xsk_rx_ring_full": 0} {
		if seen[key] != want {
			t.Errorf("xdpipe_drops_total %s = %v, want %v (all: %v)", key, seen[key], want, seen)
		}
	}
}

// TestDaemonExportsUnboundQueues: frames the program counted on queues
// without a socket are in Unbound and in the metrics, per interface and
// queue, and still there after the stop, which detaches the program.
func TestDaemonExportsUnboundQueues(t *testing.T) {
	d, _, stop := running(t, baseConfig(t, "count"))
	want := bpf.Unbound{{Queue: 2, Packets: 7}, {Queue: 5, Packets: 1}}
	d.mu.Lock()
	d.ports[0].(*fakePort).unboundFrames = want
	d.mu.Unlock()
	check := func(when string) {
		t.Helper()
		got, err := d.Unbound()
		if err != nil || len(got) != 1 || got[0].Iface != "fake0" || got[0].String() != want.String() {
			t.Fatalf("%s: Unbound() = %+v, %v; want fake0 %v", when, got, err, want)
		}
		seen := map[string]float64{}
		for _, m := range counters(t, d.Collector(), "xdpipe_unbound_frames_total") {
			seen[m.labels["iface"]+"/"+m.labels["queue"]] = m.value
		}
		if len(seen) != 2 || seen["fake0/2"] != 7 || seen["fake0/5"] != 1 {
			t.Fatalf("%s: xdpipe_unbound_frames_total %v, want fake0/2 7 and fake0/5 1", when, seen)
		}
	}
	check("running")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	check("stopped")
}

// TestDaemonStageErrors: a stage whose options are wrong fails Open before
// any port is opened, and fails a Reload with the running chain kept.
func TestDaemonStageErrors(t *testing.T) {
	bad := func(t *testing.T) Options {
		c := baseConfig(t, "count")
		s, _ := NewStage("pcap")
		s.Where = "line 7"
		s.Options.(*pipeline.PcapStageOptions).Path = filepath.Join(t.TempDir(), "no", "such", "dir.pcap")
		c.Stages = append(c.Stages, s)
		return c
	}
	sys := &fakeSystem{}
	if _, err := open(context.Background(), bad(t), quiet(), sys); err == nil || !strings.Contains(err.Error(), "stage pcap (line 7)") {
		t.Fatalf("open with a bad pcap path: %v", err)
	}
	if sys.opened != 0 || len(sys.mems) != 0 {
		t.Fatalf("a bad stage opened %d ports and %d UMEMs", sys.opened, len(sys.mems))
	}
	d, sys, stop := running(t, baseConfig(t, "count", "macswap"))
	if err := d.Reload(bad(t)); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("reload with a bad pcap path: %v", err)
	}
	fwd, _ := NewStage("forward")
	fwd.Options.(*pipeline.ForwardOptions).To = "eth9"
	c := baseConfig(t)
	c.Stages = []Stage{fwd}
	if err := d.Reload(c); err == nil || !strings.Contains(err.Error(), `output "eth9" is not one of the interfaces`) {
		t.Fatalf("reload forwarding to an unknown interface: %v", err)
	}
	sys.wire.Arrive(300)
	waitRX(t, d, 300)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var tx uint64
	for _, c := range d.Counts() {
		tx += c.TX
	}
	if tx != 300 {
		t.Errorf("transmitted %d of 300: the chain before the failed reloads (macswap) should run", tx)
	}
	if err := d.Close(); err != nil || sys.closed != 1 {
		t.Errorf("close: %v, %d ports closed", err, sys.closed)
	}
}

// TestDaemonRxSettings: rx_delay and rx_metadata reach every port's
// program and every worker, and a reload that turns either on or off is
// refused (the programs would have to be reloaded), the chain kept.
func TestDaemonRxSettings(t *testing.T) {
	c := baseConfig(t, "count", "macswap")
	c.RxDelay, c.RxMetadata = true, true
	d, sys, _ := running(t, c)
	if len(sys.opts) == 0 || len(d.workers) == 0 {
		t.Fatalf("%d ports, %d workers", len(sys.opts), len(d.workers))
	}
	for _, o := range sys.opts {
		if o.RxStamp != DefaultRxDelaySample || !o.RxMetadata {
			t.Fatalf("port %s opened with RxStamp %v, RxMetadata %v", o.Iface, o.RxStamp, o.RxMetadata)
		}
	}
	for _, w := range d.workers {
		if w.RxDelay() == nil {
			t.Fatalf("worker of queue %d without the rx delay histogram", w.Queue())
		}
	}
	for _, off := range []func(*Options){func(c *Options) { c.RxDelay = false }, func(c *Options) { c.RxMetadata = false }} {
		next := c
		off(&next)
		if err := d.Reload(next); err == nil || !strings.Contains(err.Error(), "a restart applies them") {
			t.Fatalf("reload turning an rx setting off: %v", err)
		}
	}
	if err := d.Reload(c); err != nil {
		t.Fatalf("reload with the same rx settings: %v", err)
	}
}

// TestDaemonStopDuringReload: a stop that comes while a reload waits for
// the workers neither fails the reload nor hangs the stop, and every frame
// is accounted for after it.
func TestDaemonStopDuringReload(t *testing.T) {
	for range 20 {
		d, sys, stop := running(t, baseConfig(t, "count", "macswap"))
		sys.wire.Arrive(1000)
		waitRX(t, d, 100)
		done := make(chan error, 1)
		go func() { done <- d.Reload(baseConfig(t, "count", "drop")) }()
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("reload during the stop: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("reload did not return after the stop")
		}
		if _, err := d.Account(); err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// stageFunc is a caller's own stage.
type stageFunc func(*pipeline.Burst)

func (f stageFunc) Process(b *pipeline.Burst) { f(b) }

// TestDaemonRunsTheCallersOwnStages: a Stage with New is built once per
// worker, for its queue, and sees every packet beside the registry's
// stages; its constructor's error fails Open naming the stage, before any
// port is opened.
func TestDaemonRunsTheCallersOwnStages(t *testing.T) {
	var queues []int // Open builds the chains on its own goroutine
	var seen atomic.Int64
	cfg := baseConfig(t, "count")
	cfg.Stages = append(cfg.Stages, Stage{Kind: "mine", New: func(env pipeline.StageEnv) (pipeline.Stage, error) {
		queues = append(queues, env.Queue)
		return stageFunc(func(b *pipeline.Burst) { seen.Add(int64(len(b.Pkts))) }), nil
	}})
	d, sys, stop := running(t, cfg)
	if fmt.Sprint(queues) != "[0 1]" {
		t.Errorf("the stage was built for queues %v, want one for each of [0 1]", queues)
	}
	sys.wire.Arrive(300)
	waitRX(t, d, 300)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if seen.Load() != 300 {
		t.Errorf("the caller's stage saw %d of 300 packets", seen.Load())
	}
	bad := baseConfig(t)
	bad.Stages = []Stage{{Kind: "mine", Where: "main.go", New: func(pipeline.StageEnv) (pipeline.Stage, error) {
		return nil, errors.New("no room")
	}}}
	sys = &fakeSystem{}
	if _, err := open(context.Background(), bad, quiet(), sys); err == nil || err.Error() != "stage mine (main.go): no room" {
		t.Errorf("open with a failing constructor: %v", err)
	}
	if sys.opened != 0 || len(sys.mems) != 0 {
		t.Errorf("a failing constructor after %d ports and %d UMEMs", sys.opened, len(sys.mems))
	}
}

// TestOpenEndsWithItsContext: Open's context bounds the opening: a
// connection to an rdma sink that does not answer ends with it, and Open
// undoes what it made.
func TestOpenEndsWithItsContext(t *testing.T) {
	cfg := baseConfig(t)
	cfg.Stages = stages(t, "rdma")
	cfg.Stages[0].Options.(*pipeline.RDMAOptions).Connect = "198.18.0.9:7471"
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sys := &fakeSystem{}
	if _, err := open(ctx, cfg, quiet(), sys); !errors.Is(err, context.Canceled) {
		t.Fatalf("open with a cancelled context: %v, want it to end with context.Canceled", err)
	}
	if sys.opened != 0 || sys.closed != 0 {
		t.Errorf("%d ports opened, %d closed", sys.opened, sys.closed)
	}
}
