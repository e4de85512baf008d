package pipeline

import (
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/xdpipe/xdpipe/internal/ifname"
	"github.com/xdpipe/xdpipe/rules"
)

// Matcher classifies a frame for the filter stage. It must not allocate.
// RuleMatcher adapts the steering rules (package rules, the match language
// the XDP steering program implements), so the filter stage and the kernel
// agree on what a rule means.
type Matcher interface {
	// Match returns the index of the rule that decided (-1: none) and the
	// verdict for a frame received on ifindex.
	Match(frame []byte, ifindex uint32) (rule int, v Verdict)
	// NumRules is the number of rules (for per-rule hit counters).
	NumRules() int
}

// RuleMatcher evaluates a steering rule set compiled to bitmap tables, as
// the XDP steering program does (rules.Compile, rules.Matcher): its cost
// per frame does not grow with the number of rules, and it allocates
// nothing. A frame
// whose decision is drop gets VerdictDrop; pass and redirect leave it to
// later stages (VerdictKeep): in the pipeline the frame is already in user
// space, and "pass to the kernel" has no meaning there.
type RuleMatcher struct {
	m *rules.Matcher
}

var _ Matcher = (*RuleMatcher)(nil)

// NewRuleMatcher wraps a normalized rule set (rules.LoadFile or
// rules.Parse, then ResolveIfaces if rules name interfaces).
func NewRuleMatcher(set *rules.Set) (*RuleMatcher, error) {
	if set == nil {
		return nil, fmt.Errorf("filter: no rule set")
	}
	if err := set.Normalize(); err != nil {
		return nil, fmt.Errorf("filter: %w", err)
	}
	return &RuleMatcher{m: rules.NewMatcher(rules.Compile(set))}, nil
}

// Match implements Matcher.
func (m *RuleMatcher) Match(frame []byte, ifindex uint32) (int, Verdict) {
	d := m.m.Decide(frame, ifindex)
	if d.Action == rules.ActionDrop {
		return d.Rule, VerdictDrop
	}
	return d.Rule, VerdictKeep
}

// NumRules implements Matcher.
func (m *RuleMatcher) NumRules() int { return len(m.m.Set().Rules) }

// Set returns the rule set.
func (m *RuleMatcher) Set() *rules.Set { return m.m.Set() }

// Filter sets verdicts with a Matcher and counts hits per rule. The index of
// the deciding rule is stored in Packet.Rule.
type Filter struct {
	match Matcher
	// Ifindexes maps a worker port index (Packet.Port) to the interface
	// index rules match on; ports beyond it match as ifindex 0.
	Ifindexes []uint32
	// Hits counts decisions per rule; Misses the frames no rule decided;
	// Dropped the frames the filter dropped.
	Hits            []atomic.Uint64
	Misses, Dropped atomic.Uint64
	// Per-burst scratch, folded into Hits once per burst: the hits per
	// rule, and the rules hit (so the fold costs the burst, not the rule
	// count).
	hits []uint64
	hit  []int32
}

var (
	_ Stage   = (*Filter)(nil)
	_ Metered = (*Filter)(nil)
)

// NewFilter makes a filter stage.
func NewFilter(m Matcher) (*Filter, error) {
	if m == nil {
		return nil, fmt.Errorf("filter: no matcher")
	}
	n := m.NumRules()
	return &Filter{match: m, Hits: make([]atomic.Uint64, n), hits: make([]uint64, n)}, nil
}

// StageName implements Named.
func (*Filter) StageName() string { return "filter" }

// Process implements Stage.
func (f *Filter) Process(b *Burst) {
	var miss, dropped uint64
	if cap(f.hit) < len(b.Pkts) {
		f.hit = make([]int32, 0, cap(b.Pkts)) // once: bursts keep their capacity
	}
	for i := range b.Pkts {
		p := &b.Pkts[i]
		if p.Verdict == VerdictDrop {
			continue
		}
		var ifindex uint32
		if int(p.Port) < len(f.Ifindexes) {
			ifindex = f.Ifindexes[p.Port]
		}
		r, v := f.match.Match(p.Data, ifindex)
		if r >= 0 && r < len(f.hits) {
			if f.hits[r] == 0 {
				f.hit = append(f.hit, int32(r))
			}
			f.hits[r]++
			p.Rule = int16(min(r, 1<<15-1))
		} else {
			miss++
		}
		if v != VerdictKeep {
			p.Verdict = v
			if v == VerdictDrop {
				dropped++
			}
		}
	}
	for _, r := range f.hit {
		f.Hits[r].Add(f.hits[r])
		f.hits[r] = 0
	}
	f.hit = f.hit[:0]
	if miss != 0 {
		f.Misses.Add(miss)
	}
	if dropped != 0 {
		f.Dropped.Add(dropped)
	}
}

var (
	mRuleHits   = NewCounterDesc("xdpipe_filter_rule_hits_total", "Frames decided by each filter rule.", "rule")
	mRuleMisses = NewCounterDesc("xdpipe_filter_misses_total", "Frames no filter rule decided.")
)

// Counters implements Metered: hits per rule, labelled with the rule's
// name (or priority), and misses.
func (f *Filter) Counters(emit func(d *CounterDesc, v uint64, labels ...string)) {
	var set *rules.Set
	if rm, ok := f.match.(*RuleMatcher); ok {
		set = rm.Set()
	}
	for r := range f.Hits {
		label := strconv.Itoa(r)
		if set != nil && r < len(set.Rules) {
			label = ruleLabel(set.Rules[r].Priority, set.Rules[r].Name)
		}
		emit(mRuleHits, f.Hits[r].Load(), label)
	}
	emit(mRuleMisses, f.Misses.Load())
}

// FilterOptions are the filter stage's options in a configuration file.
type FilterOptions struct {
	// Rules is a rules file (package rules' YAML), read by each build
	// (for each worker, and again on reload).
	Rules string `yaml:"rules"`
}

func newFilterStage(o *FilterOptions, env StageEnv) (Stage, error) {
	if o.Rules == "" {
		return nil, fmt.Errorf("needs rules: a rules file")
	}
	set, _, err := rules.LoadFile(o.Rules)
	if err != nil {
		return nil, err
	}
	if err := set.ResolveIfaces(ifname.Index); err != nil {
		return nil, err
	}
	m, err := NewRuleMatcher(set)
	if err != nil {
		return nil, err
	}
	f, err := NewFilter(m)
	if err != nil {
		return nil, err
	}
	f.Ifindexes = env.Ifindexes
	return f, nil
}
