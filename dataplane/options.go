package dataplane

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/xsk"
)

// Options configure a Daemon (Open, Check, Reload). The zero value of
// every field is its default; only Interfaces and Stages must be set.
// Open and Check validate them all before anything is attached.
type Options struct {
	// Interfaces are the ports: one AF_XDP socket per interface and queue.
	Interfaces []string
	// Queues are the RX queues served, one worker each, in this order
	// (nil: every queue all the interfaces have).
	Queues []int
	// Umem says which sockets share a UMEM (default UmemPerQueue).
	Umem UmemMode
	// Ring is the RX, TX and fill ring size, a power of two of 64 or more
	// (0: DefaultRing); completion rings get twice as many entries, and
	// each socket 4x ring frames.
	Ring uint32
	// FillLow lets a spinning worker keep as few as this many frames on
	// each fill ring while traffic is light, up to Ring (0: the whole
	// ring). The kernel writes into those frames in turn: fewer stay in
	// the caches, for lower latency, but a worker that stalls loses what
	// arrives beyond them until the depth has grown. See
	// xsk.SocketOptions.FillLow.
	FillLow uint32
	// FrameSize is the UMEM frame size: 2048 or 4096 (0:
	// xsk.DefaultFrameSize).
	FrameSize uint32
	// Bind is the sockets' bind mode (default xsk.BindAuto).
	Bind xsk.BindMode
	// Attach is the XDP attach mode (default bpf.AttachAuto).
	Attach bpf.AttachMode
	// Poll is how an idle worker waits (default pipeline.PollSpin).
	Poll pipeline.PollMode
	// Coalesce is wakeup mode's longest nap while frames keep coming,
	// instead of sleeping in poll(2), at most MaxCoalesce (0:
	// xsk.DefaultCoalesce; negative: never nap). See xsk.Idler.
	Coalesce time.Duration
	// BusyPoll turns on socket busy polling (SO_PREFER_BUSY_POLL): the
	// kernel's NAPI runs in the worker's context on each kick.
	BusyPoll bool
	// CPUs pins the workers, one CPU each in queue order (nil: no worker
	// is pinned).
	CPUs []int
	// Burst is the RX burst size (0: pipeline.DefaultBurstSize); TXBatch
	// the TX buffer (0: Burst).
	Burst, TXBatch int
	// Drain lets partial TX batches wait up to this long for more packets
	// (0: they go out as soon as the burst that filled them is
	// processed).
	Drain time.Duration
	// Default is the verdict for frames no stage decided:
	// pipeline.VerdictDrop (the zero value, VerdictKeep, means drop too)
	// or pipeline.VerdictTransmit.
	Default pipeline.Verdict
	// Rules, if set, attaches the steering program: only frames its rules
	// redirect reach the sockets. nil: the redirect program sends every
	// frame. The daemon works on a copy; the caller may reuse the set.
	Rules *rules.Set
	// PinDir is the bpffs directory under which the steering program's
	// rule maps are pinned while the daemon runs, one subdirectory per
	// interface named by its namespace and index (bpf.PinPathFor), so
	// that another process can change the rules (`xdpipe rules`; empty:
	// bpf.DefaultPinPath).
	PinDir string
	// RxDelay has the XDP program stamp frames it redirects with the time
	// and the workers count, per queue, how long they took from the XDP
	// hook to the stage chain: xdpipe_rx_delay_seconds. A stamp costs the
	// program a clock read, so it stamps one frame in RxDelaySample on each
	// CPU (a power of two up to 65536; 0: DefaultRxDelaySample; 1: every
	// frame).
	RxDelay       bool
	RxDelaySample int
	// RxMetadata has each interface's XDP program read the driver's RX
	// hash and timestamp (the XDP metadata kfuncs) into the packets'
	// RxHash and RxTimestamp, for the stages: the program is then bound to
	// its interface and attached in driver mode. An interface whose driver
	// offers none gets the plain program, with a warning.
	RxMetadata bool
	// RuleSeries is how many steering rules, those with the most hits,
	// get a hits series each (0: DefaultRuleSeries; -1: every rule); the
	// others' hits add up in one series.
	RuleSeries int
	// Stages are the stage chain, in order; every worker runs its own.
	Stages []Stage
}

// UmemMode says which sockets share a UMEM.
type UmemMode int

const (
	// UmemPerQueue gives each worker a UMEM, shared by its interfaces'
	// sockets so that forwarding between them copies nothing.
	UmemPerQueue UmemMode = iota
	// UmemShared gives every socket one UMEM.
	UmemShared
)

func (m UmemMode) String() string {
	switch m {
	case UmemPerQueue:
		return "per-queue"
	case UmemShared:
		return "shared"
	}
	return fmt.Sprintf("UmemMode(%d)", int(m))
}

// ParseUmemMode parses "per-queue" (or "", the default) or "shared".
func ParseUmemMode(s string) (UmemMode, error) {
	switch s {
	case "", "per-queue":
		return UmemPerQueue, nil
	case "shared":
		return UmemShared, nil
	}
	return 0, fmt.Errorf("umem %q: want per-queue or shared", s)
}

// MaxCoalesce is the longest Options.Coalesce.
const MaxCoalesce = time.Second

// CheckCoalesce is the one check of the coalesce setting of every
// command: wakeup mode's longest nap, up to MaxCoalesce (0: default;
// negative: never nap).
func CheckCoalesce(d time.Duration) error {
	if d > MaxCoalesce {
		return fmt.Errorf("coalesce %v: want 0 to %v", d, MaxCoalesce)
	}
	return nil
}

// DefaultRxDelaySample is Options.RxDelaySample's default: one frame in 64
// stamped, on each CPU.
const DefaultRxDelaySample = 64

// rxStamp is the XDP programs' stamp setting (bpf.RedirectOptions).
func (o Options) rxStamp() uint32 {
	if !o.RxDelay {
		return 0
	}
	if o.RxDelaySample == 0 {
		return DefaultRxDelaySample
	}
	return uint32(o.RxDelaySample)
}

// Stage is one stage of the chain: a kind of pipeline's registry with
// its options, or the caller's own.
type Stage struct {
	// Kind names the stage: a kind of pipeline's registry
	// (pipeline.LookupStage), or with New the caller's name for its own.
	Kind string
	// Options is a registry kind's options value, as its
	// pipeline.StageKind.Options makes them (nil: the kind's defaults).
	Options any
	// New, if set, builds the caller's own stage for one worker: each
	// worker calls it once (a stage runs on its worker's goroutine
	// only). Check calls it too, with env.CheckOnly set: it may then
	// return nil. A stage that is an io.Closer is closed with its chain.
	New func(env pipeline.StageEnv) (pipeline.Stage, error)
	// Sends says the caller's own stage may send packets out of an
	// interface (VerdictTransmit or VerdictForward), as
	// pipeline.StageKind.Sends does for the registry's.
	Sends bool
	// Where says where the stage was set, for errors ("line 7"); empty:
	// nothing.
	Where string
}

// NewStage is the registry's stage of kind with its default options.
func NewStage(kind string) (Stage, error) {
	k, ok := pipeline.LookupStage(kind)
	if !ok {
		return Stage{}, fmt.Errorf("unknown stage %q (known: %s)", kind, pipeline.StageNames())
	}
	return Stage{Kind: kind, Options: k.Options()}, nil
}

// where names the stage in errors.
func (s Stage) where() string {
	if s.Where == "" {
		return "stage " + s.Kind
	}
	return fmt.Sprintf("stage %s (%s)", s.Kind, s.Where)
}

// resolved is s with a registry kind's default options filled in, and
// what the registry says of its kind.
func (s Stage) resolved() (Stage, pipeline.StageKind, error) {
	if s.New != nil {
		return s, pipeline.StageKind{Name: s.Kind, Sends: s.Sends}, nil
	}
	k, ok := pipeline.LookupStage(s.Kind)
	if !ok {
		return s, k, fmt.Errorf("unknown stage %q (known: %s)", s.Kind, pipeline.StageNames())
	}
	if s.Options == nil {
		s.Options = k.Options()
	}
	return s, k, nil
}

// StageList names the stages, comma-separated.
func StageList(s []Stage) string {
	n := make([]string, len(s))
	for i, st := range s {
		n[i] = st.Kind
	}
	return strings.Join(n, ",")
}

// ErrNoInterfaces and ErrNoStages refuse Options without interfaces or
// without stages.
var (
	ErrNoInterfaces = errors.New("no interfaces")
	ErrNoStages     = errors.New("no stages")
)

// RestartError refuses a Reload whose Options change settings that only a
// new Daemon applies: sockets, UMEMs, workers, program attachments and
// pins are made once.
type RestartError struct {
	// Settings name the settings that changed: Options field names, in
	// their order, or a configuration's words for them.
	Settings []string
}

func (e *RestartError) Error() string {
	return strings.Join(e.Settings, ", ") + " changed: a restart applies them, a reload does not; nothing was reloaded"
}
