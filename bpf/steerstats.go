//go:build linux

package bpf

import (
	"fmt"
	"slices"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/rules"
)

// RuleStat is a running rule and its counter.
type RuleStat struct {
	Rule rules.Rule
	Counter
}

// RuleStats returns the running rules with their packet and byte counts
// (summed over CPUs), in priority order.
func (s *Steer) RuleStats() ([]RuleStat, error) { return s.RuleStatsInto(nil) }

// RuleStatsInto is RuleStats into out's array when it is large enough: a
// scrape every few seconds of ten thousand rules then allocates nothing
// for them.
func (s *Steer) RuleStatsInto(out []RuleStat) ([]RuleStat, error) {
	if err := s.p.lock(); err != nil {
		return nil, err
	}
	defer s.p.mu.Unlock()
	set, stored, err := s.active()
	if err != nil {
		return nil, err
	}
	var top uint32
	for i := range stored {
		top = max(top, stored[i].Slot)
	}
	slots, err := s.readCounters(int(top) + 1)
	if err != nil {
		return nil, err
	}
	out = slices.Grow(out[:0], len(stored))[:len(stored)]
	for i := range stored {
		out[i] = RuleStat{Rule: set.Rules[i], Counter: slots[stored[i].Slot]}
	}
	return out, nil
}

// counterWords maps steer_counters into this process, once (Close unmaps
// it), and returns it as words: for each CPU in turn, its COUNTER_SLOTS
// counters, each packets then bytes. The program adds to its CPU's words
// with plain stores; an aligned word is read and written whole. s.p.mu
// held.
func (s *Steer) counterWords() ([]uint64, error) {
	if s.words == nil {
		m := s.maps.SteerCounters
		size := int(m.MaxEntries()) * int(unsafe.Sizeof(dropcountCounter{}))
		b, err := unix.Mmap(m.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return nil, fmt.Errorf("map rule counters: %w", err)
		}
		s.counters = b
		s.words = unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(b))), size/8)
	}
	return s.words, nil
}

// readCounters reads the first n counter slots, summed over CPUs, from the
// mapped array: no system call, whatever the number of rules.
func (s *Steer) readCounters(n int) ([]Counter, error) {
	w, err := s.counterWords()
	if err != nil {
		return nil, fmt.Errorf("read rule counters: %w", err)
	}
	out := slices.Grow(s.slots[:0], n)[:n]
	s.slots = out
	clear(out)
	for cpu := range len(w) / (2 * counterSlots) {
		for i := range out {
			c := w[2*(cpu*counterSlots+i):]
			out[i].Packets += atomic.LoadUint64(&c[0])
			out[i].Bytes += atomic.LoadUint64(&c[1])
		}
	}
	return out, nil
}

// zeroCounter zeroes slot's counter on every CPU, for a rule that takes
// the slot. s.p.mu held.
func (s *Steer) zeroCounter(slot uint32) error {
	w, err := s.counterWords()
	if err != nil {
		return err
	}
	for cpu := range len(w) / (2 * counterSlots) {
		c := w[2*(cpu*counterSlots+int(slot)):]
		atomic.StoreUint64(&c[0], 0)
		atomic.StoreUint64(&c[1], 0)
	}
	return nil
}

// SteerStats are the frames no rule decided: unmatched, and malformed by
// reason (index rules.Reason; index 0, ReasonNone, is unused).
type SteerStats struct {
	NoMatch   Counter
	Malformed [rules.NumReasons]Counter
	// CacheMisses are the frames the flow cache missed (see
	// Steer.CacheMisses); the rest of those the rules and NoMatch
	// counted were hits.
	CacheMisses Counter
	// Unbound are the frames redirected towards a socket that found none
	// on their RX queue (Steer.Unbound).
	Unbound Unbound
}

// MalformedTotal sums the malformed counters.
func (st *SteerStats) MalformedTotal() Counter {
	var c Counter
	for _, m := range st.Malformed {
		c = c.Add(m)
	}
	return c
}

// Stats returns the unmatched, malformed, flow cache miss and unbound
// counters, summed over CPUs.
func (s *Steer) Stats() (SteerStats, error) {
	var st SteerStats
	if err := s.p.lock(); err != nil {
		return st, err
	}
	defer s.p.mu.Unlock()
	for i := 0; i < int(rules.NumReasons); i++ {
		var percpu []dropcountCounter
		if err := s.maps.SteerStats.Lookup(uint32(i), &percpu); err != nil {
			return st, fmt.Errorf("read steer stats: %w", err)
		}
		if i == 0 {
			st.NoMatch = sumCounters(percpu)
		} else {
			st.Malformed[i] = sumCounters(percpu)
		}
	}
	var err error
	if st.CacheMisses, err = s.cacheMisses(); err != nil {
		return st, err
	}
	st.Unbound, err = readUnbound(s.maps.XskUnbound)
	return st, err
}

// CacheMisses returns the frames the flow cache missed, summed over CPUs:
// those the rule tables decided, the cache then keeping the decision (a
// flow's first frame on a CPU, its first after a rule change or an
// eviction). Hits are not counted: they are the frames the rules and
// NoMatch counted, less these.
func (s *Steer) CacheMisses() (Counter, error) {
	if err := s.p.lock(); err != nil {
		return Counter{}, err
	}
	defer s.p.mu.Unlock()
	return s.cacheMisses()
}

// cacheMisses reads the miss counter; the caller holds the lock.
func (s *Steer) cacheMisses() (Counter, error) {
	var percpu []dropcountCounter
	if err := s.maps.SteerCacheMisses.Lookup(uint32(0), &percpu); err != nil {
		return Counter{}, fmt.Errorf("read flow cache misses: %w", err)
	}
	return sumCounters(percpu), nil
}
