package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/monotime"
	"github.com/xdpipe/xdpipe/xsk"
)

// Port is one AF_XDP socket as the worker drives it: *xsk.Socket implements
// it; tests substitute a fake kernel (wireguard-go's bindtest idea). Every
// method is called from the worker goroutine only and must not allocate.
type Port interface {
	// Receive takes up to len(descs) RX descriptors; the frames are then
	// held by the caller.
	Receive(descs []Desc) int
	// Transmit queues up to len(descs) on the TX ring, kicking the kernel
	// only when it asks (need_wakeup), and returns how many were queued;
	// the rest are still the caller's.
	Transmit(descs []Desc) int
	// Complete drains the completion ring into the UMEM free stack.
	Complete() int
	// Refill moves free frames into the fill ring.
	Refill() int
	// Wait blocks until RX has frames or the timeout passes (wakeup mode).
	Wait(timeout time.Duration) error
}

// PollMode is how a worker waits when a pass received nothing.
type PollMode int

const (
	// PollSpin busy-polls: lowest latency, one CPU at 100%.
	PollSpin PollMode = iota
	// PollWakeup naps or sleeps in poll(2) until RX has frames
	// (need_wakeup mode; see xsk.Idler).
	PollWakeup
)

func (m PollMode) String() string {
	switch m {
	case PollSpin:
		return "spin"
	case PollWakeup:
		return "wakeup"
	}
	return fmt.Sprintf("PollMode(%d)", int(m))
}

// ParsePollMode parses "spin" (the default) or "wakeup", every command's
// words for the two modes. "wait" is accepted for wakeup, the word of
// config files written for earlier releases.
func ParsePollMode(s string) (PollMode, error) {
	switch s {
	case "spin", "":
		return PollSpin, nil
	case "wakeup", "wait":
		return PollWakeup, nil
	}
	return 0, fmt.Errorf("poll mode %q: want spin or wakeup", s)
}

// NamedPort is a worker port with the name (interface) Forward stages use.
type NamedPort struct {
	Name string
	Port Port
}

// WorkerConfig configures one worker. Zero values of the optional fields
// work.
type WorkerConfig struct {
	// Queue is the RX queue this worker serves (on every port).
	Queue int
	// Ports are the sockets of this queue, one per interface, all on Mem.
	// Packets received on port i have Packet.Port i; Forward resolves
	// output names against Ports[i].Name.
	Ports []NamedPort
	// Mem is the UMEM the ports share.
	Mem Memory
	// Stages run in order on every burst.
	Stages []Stage
	// BurstSize is the burst capacity (default 64).
	BurstSize int
	// TXBatch is how many descriptors (frames: a multi-buffer packet
	// counts its segments) are buffered per port before a TX flush
	// (default BurstSize).
	TXBatch int
	// DrainInterval, if set, lets partly filled TX buffers wait for more
	// packets up to this long after the last flush (DPDK l2fwd's
	// BURST_TX_DRAIN_US), or until a pass receives nothing. By default
	// (0) they go out as soon as the burst that filled them is processed,
	// before the next port is read: a packet never waits for others to
	// share its kick.
	DrainInterval time.Duration
	// Default is the verdict of packets the stages left at VerdictKeep
	// (default VerdictDrop).
	Default Verdict
	// Poll selects spinning or waiting when idle.
	Poll PollMode
	// WaitTimeout bounds one wait in PollWakeup mode (default 10ms).
	WaitTimeout time.Duration
	// Coalesce is PollWakeup's longest nap while frames keep coming, instead
	// of a poll(2) (default xsk.DefaultCoalesce; negative: always poll).
	// See xsk.Idler.
	Coalesce time.Duration
	// RXRing is the ports' RX ring size: naps stay short enough not to fill
	// half of it (0: naps are bounded by Coalesce only).
	RXRing int
	// CPU pins the worker's OS thread with sched_setaffinity (zero: not
	// pinned).
	CPU CPU
	// RxDelay reads the rx stamp in front of one received packet per
	// burst (the XDP program's, loaded with bpf.RedirectOptions.RxStamp;
	// with RxMetadata, of every packet) and counts its delay, from the
	// XDP hook to the stage chain, in RxDelay's histogram, weighted by
	// the burst's size when one packet stands for the burst. Packets
	// without a stamp are not counted.
	RxDelay bool
	// RxMetadata reads the driver's RX metadata the XDP program put in
	// front of each received packet (loaded bound to its interface,
	// bpf.RedirectOptions.RxMetadataIfindex) into the Packet's Rx fields.
	RxMetadata bool
	// Logger for stage errors and the stop report (default slog.Default()).
	Logger *slog.Logger
}

// cacheLine is the padding unit for per-worker counters.
const cacheLine = 64

// BurstBuckets are the upper bounds of the burst-size histogram buckets.
var BurstBuckets = [...]int{1, 2, 4, 8, 16, 32, 64, 128, 256, MaxBurstSize}

// PortStats are one port's counters, written by its worker only (atomic
// adds once per burst or flush) and read by any goroutine.
type PortStats struct {
	_          [cacheLine]byte
	RxPackets  atomic.Uint64
	RxBytes    atomic.Uint64
	TxPackets  atomic.Uint64
	TxBytes    atomic.Uint64
	TxRingFull atomic.Uint64 // packets dropped because the TX ring was full
	// TxSegments counts the descriptors put on the TX ring: TxPackets
	// plus the further segments of multi-buffer packets. TxDone counts
	// them back from the completion ring (one per UMEM frame).
	TxSegments atomic.Uint64
	TxDone     atomic.Uint64
	_          [cacheLine]byte
}

// WorkerStats are a worker's counters, cache-line padded so that workers on
// different CPUs never share a line; written by the worker, read atomically
// by a stats goroutine.
type WorkerStats struct {
	_          [cacheLine]byte
	Passes     atomic.Uint64
	IdlePasses atomic.Uint64
	Dropped    atomic.Uint64 // frames freed by verdict (drop, or keep with a drop default)
	BadOutput  atomic.Uint64 // forward verdicts to a port that does not exist (dropped)
	Reloads    atomic.Uint64
	// Bursts is the burst-size histogram: Bursts[i] counts non-empty
	// bursts of size <= BurstBuckets[i] (and > the previous bound).
	Bursts [len(BurstBuckets)]atomic.Uint64
	_      [cacheLine]byte
}

type workerPort struct {
	name     string
	port     Port
	tx       []Desc // buffered TX, flushed at TXBatch descriptors; room for one more packet
	inFlight int    // frames on the TX ring or in the kernel, not yet completed
	stats    PortStats
}

type stageSet struct {
	stages  []Stage
	tickers []Ticker // the stages that are Tickers, in chain order
	gen     uint64
}

// Worker drains the ports of one queue run-to-completion: RX burst, stages,
// buffered TX, completion, fill. One goroutine; see Run.
type Worker struct {
	cfg     WorkerConfig
	pollFds []unix.PollFd // every port's fd, when all ports have one (PollWakeup)
	idler   xsk.Idler     // PollWakeup's choice between spinning, napping and poll(2)
	ports   []workerPort
	burst   *Burst
	free    []uint64 // frames to return to the free stack, flushed in batches
	now     int64    // the clock as upkeep last read it
	quiet   int      // passes in a row that received nothing
	back    bool     // frames went back to the free stack since the last refill
	passes  uint64   // stats.Passes and IdlePasses as upkeep publishes them
	idle    uint64
	lastTX  int64
	drain   int64
	cur     *stageSet                // worker goroutine only
	active  atomic.Pointer[stageSet] // cur, published for other goroutines
	next    atomic.Pointer[stageSet]
	seen    atomic.Uint64            // generation of the stage set the worker runs
	gens    atomic.Uint64            // generations handed out
	handed  atomic.Pointer[stageSet] // the last set handed to the worker (SetStages)
	retired retired                  // the counters of the chains swapped out
	stop    atomic.Bool
	running atomic.Bool
	stats   WorkerStats
	delays  delayBurst
	delay   DelayStats
	log     *slog.Logger
}

// NewWorker validates the configuration and allocates everything the loop
// needs; Run allocates nothing per pass.
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	if len(cfg.Ports) == 0 || len(cfg.Ports) > 256 {
		return nil, fmt.Errorf("worker queue %d: %d ports, want 1..256", cfg.Queue, len(cfg.Ports))
	}
	if cfg.Mem == nil {
		return nil, fmt.Errorf("worker queue %d: no memory", cfg.Queue)
	}
	b, err := NewBurst(cfg.BurstSize)
	if err != nil {
		return nil, fmt.Errorf("worker queue %d: %w", cfg.Queue, err)
	}
	if cfg.TXBatch == 0 {
		cfg.TXBatch = b.Cap()
	}
	if err := CheckBurst(0, cfg.TXBatch); err != nil {
		return nil, fmt.Errorf("worker queue %d: %w", cfg.Queue, err)
	}
	if cfg.DrainInterval < 0 {
		return nil, fmt.Errorf("worker queue %d: negative drain interval %v", cfg.Queue, cfg.DrainInterval)
	}
	if err := cfg.CPU.check(); err != nil {
		return nil, fmt.Errorf("worker queue %d: %w", cfg.Queue, err)
	}
	if cfg.Default == VerdictKeep {
		cfg.Default = VerdictDrop
	}
	if cfg.Default == VerdictForward {
		return nil, fmt.Errorf("worker queue %d: default verdict forward needs a stage", cfg.Queue)
	}
	if cfg.WaitTimeout == 0 {
		cfg.WaitTimeout = 10 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &Worker{cfg: cfg, burst: b, drain: int64(cfg.DrainInterval), log: cfg.Logger.With("queue", cfg.Queue),
		idler: xsk.Idler{Coalesce: cfg.Coalesce, Ring: cfg.RXRing}}
	w.free = make([]uint64, 0, 2*b.Cap())
	for i, p := range cfg.Ports {
		if p.Port == nil {
			return nil, fmt.Errorf("worker queue %d: port %d (%s) is nil", cfg.Queue, i, p.Name)
		}
		// A packet has at most b.Cap() segments (Port.Receive takes whole
		// packets into b.Descs): room for one more beyond the batch.
		w.ports = append(w.ports, workerPort{name: p.Name, port: p.Port, tx: make([]Desc, 0, cfg.TXBatch+b.Cap()-1)})
	}
	// In PollWakeup mode, a worker whose ports all have fds (xsk sockets)
	// sleeps in one poll(2) on all of them.
	for _, p := range cfg.Ports {
		f, ok := p.Port.(interface{ FD() int })
		if !ok || f.FD() < 0 {
			w.pollFds = nil
			break
		}
		w.pollFds = append(w.pollFds, unix.PollFd{Fd: int32(f.FD()), Events: unix.POLLIN})
	}
	set, err := w.bind(cfg.Stages, 1)
	if err != nil {
		return nil, err
	}
	w.cur = set
	w.active.Store(set)
	w.handed.Store(set)
	w.seen.Store(set.gen)
	return w, nil
}

// bind resolves output names of the stages against the ports.
func (w *Worker) bind(stages []Stage, gen uint64) (*stageSet, error) {
	lookup := func(name string) (int, bool) {
		for i := range w.ports {
			if w.ports[i].name == name {
				return i, true
			}
		}
		return 0, false
	}
	set := &stageSet{stages: append([]Stage(nil), stages...), gen: gen}
	for _, s := range stages {
		if s == nil {
			return nil, fmt.Errorf("worker queue %d: nil stage", w.cfg.Queue)
		}
		if t, ok := s.(Ticker); ok {
			set.tickers = append(set.tickers, t)
		}
		if ob, ok := s.(OutputBinder); ok {
			if err := ob.BindOutputs(lookup); err != nil {
				return nil, fmt.Errorf("worker queue %d: %w", w.cfg.Queue, err)
			}
		}
	}
	return set, nil
}

// Queue is the queue the worker serves.
func (w *Worker) Queue() int { return w.cfg.Queue }

// Stats returns the worker's counters (read them with atomic loads).
func (w *Worker) Stats() *WorkerStats { return &w.stats }

// RxDelay returns the worker's rx delay histogram (read it with atomic
// loads), or nil when WorkerConfig.RxDelay is off.
func (w *Worker) RxDelay() *DelayStats {
	if !w.cfg.RxDelay {
		return nil
	}
	return &w.delay
}

// PortStats returns port i's counters.
func (w *Worker) PortStats(i int) *PortStats { return &w.ports[i].stats }

// PortNames lists the worker's ports in index order.
func (w *Worker) PortNames() []string {
	n := make([]string, len(w.ports))
	for i := range w.ports {
		n[i] = w.ports[i].name
	}
	return n
}

// Stages returns the stage chain the worker currently runs (for metrics).
// Safe from any goroutine.
func (w *Worker) Stages() []Stage { return w.active.Load().stages }

// SetStages replaces the stage chain without stopping the worker or
// touching the sockets (SIGHUP reload). The worker takes the new chain at
// its next pass (a worker that is not running, at its first). SetStages
// returns the chain it replaces once the worker runs the new one or is not
// running: the worker never runs the old one again, and the caller may close
// it. When ctx ends before the worker took the new chain, SetStages takes
// it back and returns ctx's error: the worker keeps the old chain and never
// runs the new one, which the caller may close.
// Outputs are bound before the swap, so a bad chain is refused and the old
// one keeps running. New stages that are Continuers first take over from
// the ones they replace (a capture file goes on). Call it from one
// goroutine at a time.
func (w *Worker) SetStages(ctx context.Context, stages []Stage) (old []Stage, err error) {
	continueStages(w.handed.Load().stages, stages)
	set, err := w.bind(stages, w.gens.Add(1)+1)
	if err != nil {
		return nil, err
	}
	prev := w.handed.Swap(set)
	// Stored before running is read, and Run stores running before its
	// first pass reads next: a worker that starts meanwhile takes set. The
	// worker takes it by swapping next back to nil; taking it back the
	// same way tells whether the worker ever will run it.
	w.next.Store(set)
	for w.seen.Load() < set.gen && w.running.Load() {
		select {
		case <-ctx.Done():
			if w.next.CompareAndSwap(set, nil) {
				w.handed.Store(prev)
				return nil, ctx.Err()
			}
			return prev.stages, nil // taken: the worker is past the old chain
		case <-time.After(time.Millisecond):
		}
	}
	return prev.stages, nil
}

// Run runs the worker until ctx is cancelled: it locks its goroutine to an
// OS thread and pins it to cfg.CPU, loops over passes, and on stop flushes
// TX, waits briefly for completions and returns every frame it holds to the
// free stack. Frames in the kernel's rings stay there for the socket's
// owner to account for.
func (w *Worker) Run(ctx context.Context) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := w.cfg.CPU.Pin(); err != nil {
		return fmt.Errorf("worker queue %d: %w", w.cfg.Queue, err)
	}
	w.stop.Store(false)
	w.running.Store(true)
	defer w.running.Store(false)
	unregister := context.AfterFunc(ctx, func() { w.stop.Store(true) })
	defer unregister()
	for i := range w.ports {
		w.ports[i].port.Refill()
	}
	w.quiet = 0 // the first pass reads the clock
	w.lastTX = monotime.Now()
	for !w.stop.Load() {
		n := w.pass()
		if w.cfg.Poll != PollWakeup {
			continue
		}
		if n > 0 || !w.txIdle() {
			w.idler.Got(n)
		} else if w.idler.Idle() {
			w.wait()
		}
	}
	w.shutdown()
	return nil
}

// txIdle reports whether no port has frames buffered for TX or in flight.
func (w *Worker) txIdle() bool {
	for i := range w.ports {
		if w.ports[i].inFlight > 0 || len(w.ports[i].tx) > 0 {
			return false
		}
	}
	return true
}

// complete drains a port's completion ring.
func (w *Worker) complete(wp *workerPort) {
	if c := wp.port.Complete(); c > 0 {
		w.back = true
		wp.inFlight -= c
		wp.stats.TxDone.Add(uint64(c))
	}
}

// wait blocks in poll(2) until a port has frames or WaitTimeout passes: on
// all ports' fds at once when they have fds, else on the ports in turn, each
// for a share of the timeout.
func (w *Worker) wait() {
	if len(w.pollFds) > 1 {
		if _, err := xsk.Poll(w.pollFds, w.cfg.WaitTimeout); err != nil {
			w.log.Debug("poll", "err", err)
		}
		return
	}
	t := w.cfg.WaitTimeout / time.Duration(len(w.ports))
	p := &w.ports[w.idle%uint64(len(w.ports))]
	if err := p.port.Wait(t); err != nil && !errors.Is(err, unix.EINTR) {
		w.log.Debug("wait", "port", p.name, "err", err)
	}
}

// idleUpkeep is how often a spinning worker that receives nothing does its
// upkeep: one idle pass in idleUpkeep reads the clock, tops the fill rings
// up and publishes the pass counters. The others only look at the rings:
// the spin that waits for a request stays short, and a request is seen
// sooner. Any pass that received, and the pass after it, do their upkeep.
const idleUpkeep = 16

// pass is one run-to-completion pass over every port. It returns the frames
// received. It allocates nothing.
func (w *Worker) pass() int {
	upkeep := w.quiet%idleUpkeep == 0 || w.cfg.Poll == PollWakeup // a wait may have passed
	if upkeep {
		w.now = monotime.Now()
	}
	now := w.now
	if s := w.next.Load(); s != nil && w.next.CompareAndSwap(s, nil) {
		w.retired.swap(w.cur, s, &w.active) // once per reload: it may lock
		w.cur = s
		w.seen.Store(s.gen)
		w.stats.Reloads.Add(1)
	}
	stages := w.cur.stages
	total := 0
	b := w.burst
	for pi := range w.ports {
		wp := &w.ports[pi]
		if wp.inFlight > 0 {
			w.complete(wp)
			if wp.inFlight > 0 {
				// Copy mode sends at most 32 frames per kick: kick again
				// for what is still on the TX ring (Transmit kicks only if
				// the ring holds frames and the kernel asks).
				wp.port.Transmit(nil)
			}
		}
		n := wp.port.Receive(b.Descs)
		if n == 0 {
			continue
		}
		total += n
		b.Reset()
		b.Load(w.cfg.Mem, uint8(pi), uint16(w.cfg.Queue), b.Descs[:n], now)
		var bytes uint64
		for i := range b.Pkts {
			bytes += uint64(b.Pkts[i].Len())
		}
		switch {
		case w.cfg.RxMetadata && w.cfg.RxDelay:
			// The clock once per burst: the pass's reading may precede
			// the stamps of frames that arrived since.
			w.delays.record(b, monotime.Now(), &w.delay)
		case w.cfg.RxMetadata:
			w.delays.record(b, 0, nil)
		case w.cfg.RxDelay:
			w.delays.sample(b, &w.delay)
		}
		for _, s := range stages {
			s.Process(b)
		}
		w.dispatch(b)
		if w.drain == 0 {
			w.flushAll()
		}
		// The counters after the kick: a reply does not wait for them.
		wp.stats.RxPackets.Add(uint64(b.Len()))
		wp.stats.RxBytes.Add(bytes)
		w.stats.Bursts[burstBucket(b.Len())].Add(1)
	}
	for _, t := range w.cur.tickers {
		t.Tick(now)
	}
	// With a drain interval, TX buffers go out once it has passed, or
	// when the input went quiet: nothing more is coming to fill them, and
	// a worker in wait mode is about to sleep. Without one they went out
	// with their burst.
	if total == 0 || now-w.lastTX >= w.drain {
		w.flushAll()
		w.lastTX = now
	}
	w.flushFree()
	if upkeep || w.back {
		for pi := range w.ports {
			w.ports[pi].port.Refill()
		}
		w.back = false
	}
	w.passes++
	if total == 0 {
		w.idle++
		w.quiet++
	} else {
		w.quiet = 0
	}
	if upkeep || total > 0 {
		w.publishPasses()
	}
	return total
}

// publishPasses stores the pass counters where other goroutines read them.
func (w *Worker) publishPasses() {
	w.stats.Passes.Store(w.passes)
	w.stats.IdlePasses.Store(w.idle)
}

func burstBucket(n int) int {
	for i, ub := range BurstBuckets {
		if n <= ub {
			return i
		}
	}
	return len(BurstBuckets) - 1
}

// dispatch acts on the verdicts: TX buffers or the free batch.
func (w *Worker) dispatch(b *Burst) {
	var dropped, bad uint64
	for i := range b.Pkts {
		p := &b.Pkts[i]
		v := p.Verdict
		if v == VerdictKeep {
			v = w.cfg.Default
		}
		var out int
		switch v {
		case VerdictTransmit:
			out = int(p.Port)
		case VerdictForward:
			out = int(p.Out)
			if out >= len(w.ports) {
				bad++
				w.freePacket(p)
				continue
			}
		default:
			dropped++
			w.freePacket(p)
			continue
		}
		wp := &w.ports[out]
		wp.tx = append(wp.tx, p.Desc())
		wp.tx = append(wp.tx, p.More...)
		if len(wp.tx) >= w.cfg.TXBatch {
			w.flushTX(out)
		}
	}
	if dropped != 0 {
		w.stats.Dropped.Add(dropped)
	}
	if bad != 0 {
		w.stats.BadOutput.Add(bad)
	}
}

// freePacket frees the frames of every segment of p.
func (w *Worker) freePacket(p *Packet) {
	w.freeFrame(p.Addr)
	for i := range p.More {
		w.freeFrame(p.More[i].Addr)
	}
}

func (w *Worker) freeFrame(addr uint64) {
	w.free = append(w.free, addr)
	if len(w.free) == cap(w.free) {
		w.flushFree()
	}
}

func (w *Worker) flushFree() {
	if len(w.free) > 0 {
		w.back = true
		w.cfg.Mem.Free(w.free)
		w.free = w.free[:0]
	}
}

// flushAll flushes every port's TX buffer that holds frames.
func (w *Worker) flushAll() {
	for pi := range w.ports {
		if len(w.ports[pi].tx) > 0 {
			w.flushTX(pi)
		}
	}
}

// flushTX puts port pi's buffered frames on its TX ring. What the ring cannot
// take after one retry (the retry follows the kick Transmit made, and a
// completion drain) is dropped, counted as TX ring full, and its frames
// returned to the free stack: never leaked. Ports take multi-buffer packets
// whole (xsk.Socket.Transmit), so packets are counted by their last
// segment, the one without XDP_PKT_CONTD.
func (w *Worker) flushTX(pi int) {
	wp := &w.ports[pi]
	buf := wp.tx
	n := wp.port.Transmit(buf)
	if n < len(buf) {
		w.complete(wp)
		n += wp.port.Transmit(buf[n:])
	}
	wp.inFlight += n
	var bytes, pkts uint64
	for i := 0; i < n; i++ {
		bytes += uint64(buf[i].Len)
		if !buf[i].Continues() {
			pkts++
		}
	}
	if n > 0 {
		wp.stats.TxPackets.Add(pkts)
		wp.stats.TxSegments.Add(uint64(n))
		wp.stats.TxBytes.Add(bytes)
	}
	if n < len(buf) {
		var lost uint64
		for i := n; i < len(buf); i++ {
			if !buf[i].Continues() {
				lost++
			}
			w.freeFrame(buf[i].Addr)
		}
		wp.stats.TxRingFull.Add(lost)
	}
	wp.tx = wp.tx[:0]
}

// InFlight is the number of frames put on TX rings and not yet completed.
func (w *Worker) InFlight() uint64 {
	var n uint64
	for i := range w.ports {
		s := &w.ports[i].stats
		n += s.TxSegments.Load() - s.TxDone.Load()
	}
	return n
}

// shutdown flushes TX, waits up to 100ms for the kernel to complete what is
// in flight, and returns held frames to the free stack.
func (w *Worker) shutdown() {
	w.publishPasses()
	w.flushAll()
	w.flushFree()
	deadline := time.Now().Add(100 * time.Millisecond)
	for w.InFlight() > 0 && time.Now().Before(deadline) {
		for pi := range w.ports {
			wp := &w.ports[pi]
			wp.port.Transmit(nil) // kick if the kernel waits for one
			w.complete(wp)
		}
		time.Sleep(time.Millisecond)
	}
	if n := w.InFlight(); n > 0 {
		w.log.Warn("worker stopped with TX frames in flight", "frames", n)
	}
}

// CloseStages closes the stages that hold resources (pcap files).
func CloseStages(stages []Stage) error {
	var errs []error
	for _, s := range stages {
		if c, ok := s.(io.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
