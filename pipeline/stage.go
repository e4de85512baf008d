package pipeline

import "fmt"

// Stage processes a burst in place: it reads and edits packet bytes and sets
// verdicts. Stages skip packets whose verdict is already VerdictDrop. Process runs on
// the worker goroutine and must not allocate or block in steady state (the
// pcap stage, which writes a file, is the documented exception for blocking).
// A stage that fails at run time (a full disk) counts and reports the error
// and leaves verdicts as they were: forwarding goes on.
//
// A stage instance belongs to one worker; build one chain per worker.
type Stage interface {
	Process(b *Burst)
}

// OutputBinder is implemented by stages that name output ports (Forward):
// the worker resolves names to port indexes once, before the first pass.
type OutputBinder interface {
	BindOutputs(lookup func(name string) (int, bool)) error
}

// Named stages report their kind (the registry's name for them): the
// Collector labels their counters with it.
type Named interface {
	StageName() string
}

// Ticker is implemented by stages with timers (the ipfix stage's flow
// expiry). The worker calls Tick on the worker goroutine once per pass,
// whether the pass received frames or not, with the pass time
// (Burst.Time's clock), after the bursts: in PollWakeup mode an idle
// worker still passes every WaitTimeout. Tick must be cheap when nothing
// is due, and must not allocate or block.
type Ticker interface {
	Tick(now int64)
}

// Continuer is implemented by stages whose state outlives a reload, such as
// an open capture file. Worker.SetStages calls Continue on each stage of the
// new chain with the stage it replaces (the old chain's stage of the same
// kind and rank among that kind), before the swap: the old stage may still
// be processing, and is closed after the new one took over.
type Continuer interface {
	Continue(old Stage)
}

// continueStages hands each new stage the old one of the same kind and rank.
func continueStages(old, next []Stage) {
	rank := func(chain []Stage, i int) int {
		n := 0
		for _, s := range chain[:i] {
			if stageName(s) == stageName(chain[i]) {
				n++
			}
		}
		return n
	}
	for i, s := range next {
		c, ok := s.(Continuer)
		if !ok {
			continue
		}
		for j, o := range old {
			if stageName(o) == stageName(s) && rank(old, j) == rank(next, i) {
				c.Continue(o)
				break
			}
		}
	}
}

// Metered is implemented by stages with counters. The Collector calls
// Counters at every scrape, from its own goroutine: read the counters with
// atomic loads. emit's labels are the values of d.Labels, in order.
type Metered interface {
	Counters(emit func(d *CounterDesc, v uint64, labels ...string))
}

// CounterDesc describes one of a stage's counters for metrics: its name,
// its help text and the labels its values carry of their own (a rule's
// name, say). The Collector exports it as a counter labelled queue, stage
// (the stage's kind) and index (its place in the chain) first, then
// Labels. Make one per counter, once (a package variable): the Collector
// knows a counter by its *CounterDesc.
type CounterDesc struct {
	Name, Help string
	Labels     []string
}

// NewCounterDesc describes a stage counter.
func NewCounterDesc(name, help string, labels ...string) *CounterDesc {
	return &CounterDesc{Name: name, Help: help, Labels: labels}
}

// The counters several stages share.
var (
	mStagePkts   = NewCounterDesc("xdpipe_stage_packets_total", "Frames seen by a count stage (pcap: written; reflect: sent back).")
	mStageErrors = NewCounterDesc("xdpipe_stage_errors_total", "Run-time stage failures (pcap write or open errors).")
	mStageLost   = NewCounterDesc("xdpipe_stage_lost_total", "Frames a stage could not handle (pcap not captured, VLAN push without room, TTL expired, reflect not answered).")
)

// stageName is a stage's kind for metrics: its StageName, or its Go type.
func stageName(s Stage) string {
	if n, ok := s.(Named); ok {
		return n.StageName()
	}
	return fmt.Sprintf("%T", s)
}

// Costly is implemented by stage options whose stage allocates memory
// that grows with them, so a configuration's cost is known before any
// stage is built (xsk.CheckMemory). MemoryCost is one stage instance's
// bytes, and the options that size it ("depth × snaplen").
type Costly interface {
	MemoryCost() (bytes uint64, setting string)
}

// costOf is a size option's value for MemoryCost: def when unset, 0 when
// negative (the constructor refuses it).
func costOf(v, def int) uint64 {
	if v == 0 {
		v = def
	}
	return uint64(max(v, 0))
}
