package pipeline

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// retired keeps the counters of the stage chains a worker swapped out, so
// that the metrics of a stage go on from the old one's values after a
// reload: a Prometheus counter never goes back within a process's life. A
// counter is a stage's place and kind and the metric with its labels.
type retired struct {
	mu   sync.Mutex // the swap against the Collector
	base map[retiredKey]uint64
}

type retiredKey struct {
	d      *CounterDesc
	labels string // stage kind, index, the metric's own labels
}

// swap folds old's counters in and publishes next as the active chain, in
// one step for the Collector: it sees the old chain and the counters before
// it, or the new one and the counters with the old one's. The worker calls
// it once old no longer runs.
func (r *retired) swap(old, next *stageSet, active *atomic.Pointer[stageSet]) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, s := range old.stages {
		meteredCounters(i, s, func(d *CounterDesc, v uint64, labels []string) {
			if r.base == nil {
				r.base = map[retiredKey]uint64{}
			}
			r.base[retiredKey{d, strings.Join(labels, "\x00")}] += v
		})
	}
	active.Store(next)
}

// counters emits the active chain's counters with the retired ones added;
// active is read under the lock swap holds.
func (r *retired) counters(active *atomic.Pointer[stageSet], emit func(d *CounterDesc, v uint64, labels []string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, s := range active.Load().stages {
		meteredCounters(i, s, func(d *CounterDesc, v uint64, labels []string) {
			emit(d, v+r.base[retiredKey{d, strings.Join(labels, "\x00")}], labels)
		})
	}
}

// meteredCounters calls emit with each counter of stage s at place i,
// labelled stage, index and the metric's own labels.
func meteredCounters(i int, s Stage, emit func(d *CounterDesc, v uint64, labels []string)) {
	m, ok := s.(Metered)
	if !ok {
		return
	}
	lv := []string{stageName(s), strconv.Itoa(i)}
	m.Counters(func(d *CounterDesc, v uint64, labels ...string) {
		emit(d, v, append(lv[:2:2], labels...))
	})
}
