package pipeline

import (
	"fmt"
	"sync/atomic"
)

// Matcher evaluates steering rules against a frame in Go, with the same
// match language as the XDP steering program, so a filter stage and the
// kernel agree on what a rule means. It must not allocate.
//
// The rule model and its Go reference matcher belong to the bpf package; the
// command adapts it to this interface, so pipeline does not depend on bpf.
type Matcher interface {
	// Match returns the index of the first rule the frame matches, or
	// ok false.
	Match(frame []byte) (rule int, ok bool)
	// NumRules is the number of rules (for per-rule hit counters).
	NumRules() int
}

// Filter sets verdicts by rule match: OnMatch for frames that match a rule,
// OnMiss for the others. VerdictKeep leaves a packet to later stages. The
// rule index of a match is stored in Packet.Rule.
type Filter struct {
	match   Matcher
	onMatch Verdict
	onMiss  Verdict
	// Hits counts matches per rule; Misses the frames that matched none.
	Hits   []atomic.Uint64
	Misses atomic.Uint64
	hits   []uint64 // per-burst scratch, folded into Hits once per burst
}

var _ Stage = (*Filter)(nil)

// NewFilter makes a filter stage. The usual shapes are (Keep, Drop), an
// allow list, and (Drop, Keep), a deny list.
func NewFilter(m Matcher, onMatch, onMiss Verdict) (*Filter, error) {
	if m == nil {
		return nil, fmt.Errorf("filter: no matcher")
	}
	if onMatch == VerdictForward || onMiss == VerdictForward {
		return nil, fmt.Errorf("filter: forward is a stage, not a filter verdict")
	}
	n := m.NumRules()
	return &Filter{match: m, onMatch: onMatch, onMiss: onMiss, Hits: make([]atomic.Uint64, n), hits: make([]uint64, n)}, nil
}

// StageName implements Named.
func (*Filter) StageName() string { return "filter" }

// Process implements Stage.
func (f *Filter) Process(b *Burst) {
	var miss uint64
	for i := range b.Pkts {
		p := &b.Pkts[i]
		if p.Verdict == VerdictDrop {
			continue
		}
		r, ok := f.match.Match(p.Data)
		if !ok || r < 0 || r >= len(f.hits) {
			miss++
			if f.onMiss != VerdictKeep {
				p.Verdict = f.onMiss
			}
			continue
		}
		f.hits[r]++
		p.Rule = int16(r)
		if f.onMatch != VerdictKeep {
			p.Verdict = f.onMatch
		}
	}
	for r, n := range f.hits {
		if n != 0 {
			f.Hits[r].Add(n)
			f.hits[r] = 0
		}
	}
	if miss != 0 {
		f.Misses.Add(miss)
	}
}
