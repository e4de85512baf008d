//go:build linux

package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xdpipe/xdpipe/rules/rulestest"
)

// TestSteerMemoryMatchesKernel: SteerMemory, worked out from the map
// specs, is within 15% of what the kernel accounts for a loaded steering
// program's maps (the memlock lines of their fdinfo, map_mem_usage); and
// the per-map model holds with rules applied, when the maps without
// preallocation hold entries.
func TestSteerMemoryMatchesKernel(t *testing.T) {
	s := newSteer(t)
	cpus := ebpfPossibleCPUs()
	est, err := SteerMemory(cpus)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := loadSteer()
	if err != nil {
		t.Fatal(err)
	}
	sizeSteerMaps(spec, cpus)
	compare := func(what string, est uint64, entries bool) {
		t.Helper()
		var kernel, model uint64
		for name, m := range steerMapsByName(&s.maps) {
			k := memlock(t, m)
			var n uint64
			switch {
			case entries && m.Type() == ebpf.XSKMap:
				n = 1 // the socket newSteer registers
			case entries:
				n = countKeys(t, m)
			}
			e := mapMemory(spec.Maps[name], cpus, n)
			t.Logf("%s: %-18s %6d entries: kernel %9d, model %9d", what, name, n, k, e)
			kernel += k
			model += e
		}
		if entries {
			est = model
		}
		t.Logf("%s on %d possible CPUs: estimate %d (%.1f MiB), kernel %d (%.1f MiB), %+.1f%%", what, cpus,
			est, float64(est)/(1<<20), kernel, float64(kernel)/(1<<20), 100*(float64(est)-float64(kernel))/float64(kernel))
		if d := float64(est) - float64(kernel); d > 0.15*float64(kernel) || d < -0.15*float64(kernel) {
			t.Errorf("%s: estimate %d bytes, the kernel accounts %d: more than 15%% apart", what, est, kernel)
		}
	}
	compare("loaded", est, false)
	set := rulestest.SeededSet(1, 4096, rulestest.SampleTuples(progIfindex), progIfindex)
	apply(t, s, set)
	compare(fmt.Sprintf("%d rules", len(set.Rules)), 0, true)
}

// steerMapsByName lists the maps of m by their names in steer.c.
func steerMapsByName(m *steerMaps) map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		out[v.Type().Field(i).Tag.Get("ebpf")] = v.Field(i).Interface().(*ebpf.Map)
	}
	return out
}

// memlock is the kernel's accounting of m's memory: the memlock line of
// its fdinfo (bpf_map_memory_usage since Linux 6.4).
func memlock(tb testing.TB, m *ebpf.Map) uint64 {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/self/fdinfo/%d", m.FD()))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "memlock:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				tb.Fatalf("fdinfo of %s: memlock %q: %v", m, v, err)
			}
			return n
		}
	}
	tb.Fatalf("fdinfo of %s: no memlock line", m)
	return 0
}

// countKeys counts the keys of m.
func countKeys(tb testing.TB, m *ebpf.Map) uint64 {
	tb.Helper()
	var n uint64
	var key []byte
	var prev any // nil: first key
	for {
		if err := m.NextKey(prev, &key); errors.Is(err, ebpf.ErrKeyNotExist) {
			return n
		} else if err != nil {
			tb.Fatalf("iterate %s: %v", m, err)
		}
		n++
		prev = slices.Clone(key)
	}
}
