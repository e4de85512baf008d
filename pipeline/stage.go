package pipeline

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

// Named stages report a short name for logs and metrics.
type Named interface {
	StageName() string
}
