package pipeline

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
)

// StageKind is one entry of the stage registry: the name a configuration
// file gives the stage, its options, and how to build one instance. A
// stage's counters are its Counters method (Metered), and its kind its
// StageName (Named). A new stage is one file (the type, Process, its
// options, its constructor, its counters) and one line in stageKinds.
type StageKind struct {
	// Name is the kind as configuration files and --stages spell it.
	Name string
	// Options returns a fresh options value: a pointer to a struct whose
	// yaml tags are the option names (no fields: the stage takes none).
	// A configuration decodes a stage's options into it and hands it to
	// New.
	Options func() any
	// New builds the stage for one worker from a value Options returned.
	// It checks every option and opens what the stage needs (files, rule
	// sets), so a bad option fails before anything is attached.
	New func(opts any, env StageEnv) (Stage, error)
	// Sends says the stage may send packets out of an interface
	// (VerdictTransmit, or VerdictForward to another interface), so the
	// worker's sockets transmit. The rdma stage forwards to the RDMA
	// output, not an interface, and does not send in this sense.
	Sends bool
}

// StageEnv is what a stage constructor knows of the worker it builds for.
type StageEnv struct {
	// Queue is the worker's queue.
	Queue int
	// PerQueue says there are several workers: a stage that writes a
	// file puts the queue in its name (cap.pcap: cap.q1.pcap).
	PerQueue bool
	// Ports are the names of the worker's ports (interfaces), in port
	// index order; Ifindexes their interface indexes.
	Ports     []string
	Ifindexes []uint32
	// CheckOnly builds for validation (xdpipe run --check): the constructor
	// checks the options and the paths it would open, creates nothing, and
	// may return a nil Stage.
	CheckOnly bool
}

// kind makes a registry entry for a stage whose options are O.
func kind[O any](name string, build func(o *O, env StageEnv) (Stage, error)) StageKind {
	return StageKind{
		Name:    name,
		Options: func() any { return new(O) },
		New: func(opts any, env StageEnv) (Stage, error) {
			o, ok := opts.(*O)
			if !ok {
				return nil, fmt.Errorf("stage %s: options are %T, want %T", name, opts, o)
			}
			return build(o, env)
		},
	}
}

// sends marks a kind whose stages send packets.
func sends(k StageKind) StageKind {
	k.Sends = true
	return k
}

// NoOptions are the options of a stage that takes none.
type NoOptions struct{}

// stageKinds is the registry, sorted by name.
var stageKinds = [...]StageKind{
	kind("count", func(*NoOptions, StageEnv) (Stage, error) { return &Count{}, nil }),
	kind("drop", func(*NoOptions, StageEnv) (Stage, error) { return &Drop{}, nil }),
	kind("filter", newFilterStage),
	sends(kind("forward", newForwardStage)),
	kind("ipfix", newIPFIXStage),
	sends(kind("macswap", func(*NoOptions, StageEnv) (Stage, error) { return &MacSwap{}, nil })),
	kind("pcap", newPcapStage),
	kind("rdma", newRDMAStage),
	sends(kind("reflect", newReflectStage)),
	kind("rewrite", newRewriteStage),
	kind("sample", newSampleStage),
}

// LookupStage returns the registry entry of a stage kind.
func LookupStage(name string) (StageKind, bool) {
	i, ok := slices.BinarySearchFunc(stageKinds[:], name, func(k StageKind, n string) int { return strings.Compare(k.Name, n) })
	if !ok {
		return StageKind{}, false
	}
	return stageKinds[i], true
}

// StageNames lists the registered stage kinds, sorted, comma-separated.
func StageNames() string {
	n := make([]string, len(stageKinds))
	for i, k := range stageKinds {
		n[i] = k.Name
	}
	return strings.Join(n, ", ")
}

// RDMAOutput is the name of the worker output port the rdma stage
// forwards to; whoever wires the workers (package dataplane) adds a port
// of that name that ships frames over RDMA.
const RDMAOutput = "rdma"

// RDMAOptions are the rdma stage's options.
type RDMAOptions struct {
	// Connect is the sink's host:port (xdpipe rdma-sink --listen).
	Connect string `yaml:"connect"`
}

// RDMA is the rdma stage: it forwards every live frame to the RDMA output
// port. The connection belongs to the port, which the daemon opens with
// the options' Connect.
type RDMA struct{ Forward }

// StageName implements Named.
func (*RDMA) StageName() string { return "rdma" }

func newRDMAStage(o *RDMAOptions, _ StageEnv) (Stage, error) {
	if o.Connect == "" {
		return nil, errors.New("needs connect: the sink's host:port (xdpipe rdma-sink --listen)")
	}
	if _, _, err := net.SplitHostPort(o.Connect); err != nil {
		return nil, fmt.Errorf("connect %q: %w", o.Connect, err)
	}
	return &RDMA{Forward{To: RDMAOutput}}, nil
}
