//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/frame/frametest"
	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/rules/rulestest"
)

// Kernel features the steering tests need (all present since 6.4; this
// machine runs 6.18): BPF_PROG_RUN for XDP with multi-buffer frames
// (xdp.frags, 5.18), bpf_xdp_get_buff_len (5.18), bounded loops (5.3),
// global BPF functions with packet access (5.10), LPM tries, XSKMAP,
// bpf_link for XDP (5.9), membarrier(MEMBARRIER_CMD_GLOBAL).

// progIfindex is the ingress ifindex BPF_PROG_RUN gives a frame run without
// a context: the loopback device of the calling namespace.
const progIfindex = 1

// newSteer loads the steering program with an (unbound) AF_XDP socket
// registered on queue 0, so that redirect decisions show as XDP_REDIRECT.
func newSteer(tb testing.TB) *Steer {
	tb.Helper()
	return newSteerEdited(tb, nil)
}

// newSteerTablesOnly is newSteer with the flow cache off: the rule tables
// decide every frame.
func newSteerTablesOnly(tb testing.TB) *Steer {
	tb.Helper()
	return newSteerEdited(tb, func(spec *ebpf.CollectionSpec) error { return spec.Variables["flow_cache"].Set(uint32(0)) })
}

func newSteerEdited(tb testing.TB, edit func(*ebpf.CollectionSpec) error) *Steer {
	tb.Helper()
	testutil.RequireRoot(tb)
	s, err := loadSteerEdited(SteerOptions{}, edit)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
	})
	if err := s.Register(0, unboundXSK(tb)); err != nil {
		tb.Fatal(err)
	}
	return s
}

func xdpCode(a rules.Action) uint32 {
	switch a {
	case rules.ActionDrop:
		return xdpDrop
	case rules.ActionRedirect:
		return xdpRedirect
	}
	return xdpPass
}

// apply applies set and returns the normalized copy the reference uses.
func apply(tb testing.TB, s *Steer, set *rules.Set) *rules.Set {
	tb.Helper()
	if err := s.Apply(set); err != nil {
		tb.Fatalf("apply: %v", err)
	}
	ref := *set
	ref.Rules = append([]rules.Rule(nil), set.Rules...)
	if err := ref.Normalize(); err != nil {
		tb.Fatal(err)
	}
	return &ref
}

// checkFrame runs frame through the program and the reference matcher and
// requires the same action and exactly the counter the reference names to
// move by one frame, twice: the second run usually decided by the flow
// cache (on another CPU than the first, by the tries again).
func checkFrame(tb testing.TB, s *Steer, ref *rules.Set, name string, frame []byte) {
	tb.Helper()
	checkRun(tb, s, ref, name, frame)
	checkRun(tb, s, ref, name+" (again)", frame)
}

func checkRun(tb testing.TB, s *Steer, ref *rules.Set, name string, frame []byte) {
	tb.Helper()
	rs0, err := s.RuleStats()
	if err != nil {
		tb.Fatal(err)
	}
	st0, err := s.Stats()
	if err != nil {
		tb.Fatal(err)
	}
	ret, err := s.Program().Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		tb.Fatalf("%s: BPF_PROG_RUN: %v", name, err)
	}
	want := ref.Decide(frame, progIfindex)
	if ret != xdpCode(want.Action) {
		t, _ := rules.ParseFrame(frame, progIfindex)
		tb.Fatalf("%s: program returned %d, reference %+v (action %v -> %d)\ntuple %+v\nframe %x\nrules:\n%s",
			name, ret, want, want.Action, xdpCode(want.Action), t, frame, rules.Format(ref))
	}
	rs1, err := s.RuleStats()
	if err != nil {
		tb.Fatal(err)
	}
	st1, err := s.Stats()
	if err != nil {
		tb.Fatal(err)
	}
	one := Counter{Packets: 1, Bytes: uint64(len(frame))}
	var wantSt SteerStats
	switch {
	case want.Reason != rules.ReasonNone:
		wantSt.Malformed[want.Reason] = one
	case want.Rule < 0:
		wantSt.NoMatch = one
	}
	var gotSt SteerStats
	gotSt.NoMatch = st1.NoMatch.Sub(st0.NoMatch)
	for i := range gotSt.Malformed {
		gotSt.Malformed[i] = st1.Malformed[i].Sub(st0.Malformed[i])
	}
	if gotSt.NoMatch != wantSt.NoMatch || gotSt.Malformed != wantSt.Malformed {
		tb.Fatalf("%s: stats moved by %+v, want %+v (decision %+v)", name, gotSt, wantSt, want)
	}
	if st1.Unbound.Total() != st0.Unbound.Total() {
		tb.Fatalf("%s: unbound frames went from %v to %v with a socket on the queue", name, st0.Unbound, st1.Unbound)
	}
	for i := range rs1 {
		d := rs1[i].Counter.Sub(rs0[i].Counter)
		if i == want.Rule && want.Reason == rules.ReasonNone {
			if d != one {
				tb.Fatalf("%s: counter of matching rule %d moved by %+v, want %+v", name, i, d, one)
			}
		} else if d != (Counter{}) {
			tb.Fatalf("%s: counter of rule %d (%v) moved by %+v; decision %+v", name, i, rs1[i].Rule.String(), d, want)
		}
	}
}

func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// fieldSet uses every match field, so every lookup path of the program runs.
func fieldSet() *rules.Set {
	return &rules.Set{Default: rules.ActionRedirect, Malformed: rules.ActionDrop, Rules: []rules.Rule{
		{Priority: 10, Fields: rules.FieldVLAN | rules.FieldProto, VLAN: 200, Proto: 6, Action: rules.ActionDrop},
		{Priority: 20, Fields: rules.FieldVLAN, VLAN: 100, Action: rules.ActionPass},
		{Priority: 30, Fields: rules.FieldProto, Proto: 1, Action: rules.ActionDrop},
		{Priority: 40, Fields: rules.FieldDst | rules.FieldDport, Dst: prefix("198.18.2.0/24"), Dport: rules.PortRange{Lo: 53, Hi: 53}, Action: rules.ActionRedirect},
		{Priority: 50, Fields: rules.FieldSrc | rules.FieldSport, Src: prefix("2001:2::/64"), Sport: rules.PortRange{Lo: 1000, Hi: 1010}, Action: rules.ActionDrop},
		{Priority: 60, Fields: rules.FieldEtherType, EtherType: 0x0806, Action: rules.ActionDrop},
		{Priority: 70, Fields: rules.FieldIfindex | rules.FieldProto, Ifindex: progIfindex, Proto: 47, Action: rules.ActionDrop},
		{Priority: 80, Fields: rules.FieldIfindex, Ifindex: 99, Action: rules.ActionDrop},
		{Priority: 90, Fields: rules.FieldSrc, Src: prefix("198.18.0.0/15"), Action: rules.ActionPass},
		{Priority: 100, Fields: rules.FieldDst | rules.FieldProto, Dst: prefix("2001:2::2/128"), Proto: 58, Action: rules.ActionPass},
		{Priority: 110, Fields: rules.FieldSport | rules.FieldDport, Sport: rules.PortRange{Lo: 1000, Hi: 1006}, Dport: rules.PortRange{Lo: 50, Hi: 60}, Action: rules.ActionPass},
	}}
}

// prefixSet has more distinct prefix lengths per family and direction than
// the prefix hash takes (HASH_PLENS), so both the hash and the LPM trie
// decide, with priorities not in length order.
func prefixSet() *rules.Set {
	set := &rules.Set{Default: rules.ActionPass, Malformed: rules.ActionPass}
	acts := []rules.Action{rules.ActionDrop, rules.ActionRedirect}
	prio := uint32(1000)
	for i, p := range []string{"198.18.2.2/32", "198.18.2.0/30", "198.18.2.0/28", "198.18.0.0/24", "198.18.0.0/16", "198.0.0.0/8",
		"198.18.3.0/24", "198.18.2.3/32", "2001:2::2/128", "2001:2::/126", "2001:2::/120", "2001:2::/112", "2001:2::/64", "2001:2::/48",
		"2001:2::3/128", "2001:2:0:1::/64"} {
		prio -= 7
		if i%3 == 0 {
			prio += 50
		}
		set.Rules = append(set.Rules, rules.Rule{Priority: prio, Fields: rules.FieldDst, Dst: prefix(p), Action: acts[i%2]})
	}
	for i, p := range []string{"198.18.1.1/32", "198.18.1.0/24", "198.16.0.0/13", "198.18.1.0/31", "198.18.1.0/29", "2001:2::1/128", "2001:2::/100"} {
		set.Rules = append(set.Rules, rules.Rule{Priority: uint32(2000 + i), Fields: rules.FieldSrc | rules.FieldProto, Src: prefix(p),
			Proto: []uint8{6, 17, 1, 58, 47}[i%5], Action: acts[(i+1)%2]})
	}
	return set
}

// TestSteerFrames runs every sample frame (each protocol combination, each
// malformed case) through the program under several rule sets, checking
// the action and the counters against the reference matcher; with the
// flow cache and without (as the benchmarks of the rule tables load it).
func TestSteerFrames(t *testing.T) {
	t.Run("flow-cache", func(t *testing.T) { testSteerFrames(t, newSteer(t)) })
	t.Run("tables-only", func(t *testing.T) {
		s := newSteerTablesOnly(t)
		testSteerFrames(t, s)
		if m := cacheMisses(t, s); m != 0 {
			t.Errorf("the flow cache counted %d misses with the cache off", m)
		}
	})
}

func testSteerFrames(t *testing.T, s *Steer) {
	sets := map[string]*rules.Set{
		"empty":          {Default: rules.ActionPass, Malformed: rules.ActionDrop},
		"empty-redirect": {Default: rules.ActionRedirect, Malformed: rules.ActionPass},
		"catch-all":      {Rules: []rules.Rule{{Priority: 1, Action: rules.ActionDrop}}},
		"fields":         fieldSet(),
		"prefixes":       prefixSet(),
	}
	for name, set := range sets {
		t.Run(name, func(t *testing.T) {
			ref := apply(t, s, set)
			for _, smp := range frametest.SampleFrames() {
				checkFrame(t, s, ref, smp.Name, smp.Frame)
			}
		})
	}
}

// TestSteerMultiBuffer: a 9000-byte frame (multi-buffer in BPF_PROG_RUN)
// is steered on its headers and counted with its full length.
func TestSteerMultiBuffer(t *testing.T) {
	s := newSteer(t)
	ref := apply(t, s, fieldSet())
	f := frametest.BuildFrame(frametest.FrameSpec{Src: netip.MustParseAddr("198.18.1.1"), Dst: netip.MustParseAddr("198.18.2.9"),
		Proto: 17, Sport: 7, Dport: 53, Payload: 9000 - 42})
	checkFrame(t, s, ref, "jumbo", f)
}

// TestSteerShortFrame: BPF_PROG_RUN refuses frames shorter than an
// Ethernet header, so the truncated-ethernet path is covered by the
// reference's tests only; this pins the kernel's behaviour down.
func TestSteerShortFrame(t *testing.T) {
	s := newSteer(t)
	if _, err := s.Program().Run(&ebpf.RunOptions{Data: make([]byte, 13)}); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("BPF_PROG_RUN of 13 bytes: %v, want EINVAL", err)
	}
}

// TestSteerUnboundCountsRedirectsWithoutSocket: a frame the rules redirect
// to a queue without a socket goes to the kernel and is counted unbound; a
// frame they pass is not, nor one that finds its socket.
func TestSteerUnboundCountsRedirectsWithoutSocket(t *testing.T) {
	s := newSteer(t)
	f := frametest.BuildFrame(frametest.FrameSpec{Src: netip.MustParseAddr("198.18.1.1"), Dst: netip.MustParseAddr("198.18.2.9"), Proto: 17, Sport: 7, Dport: 53})
	for _, c := range []struct {
		name    string
		def     rules.Action
		socket  bool
		verdict uint32
		unbound uint64
	}{
		{"redirect to a socket", rules.ActionRedirect, true, xdpRedirect, 0},
		{"pass", rules.ActionPass, false, xdpPass, 0},
		{"redirect without a socket", rules.ActionRedirect, false, xdpPass, 1},
	} {
		if !c.socket {
			if err := s.Unregister(0); err != nil {
				t.Fatal(err)
			}
		}
		apply(t, s, &rules.Set{Default: c.def, Malformed: rules.ActionDrop})
		if got := run(t, s.Program(), f); got != c.verdict {
			t.Fatalf("%s: action %d, want %d", c.name, got, c.verdict)
		}
		wantUnbound(t, s.Unbound, c.unbound)
	}
}

// TestSteerUpdateKeepsCounters: a rule in both the old and the new set
// keeps its counter; a new rule starts from zero; Rules reads back the set.
func TestSteerUpdateKeepsCounters(t *testing.T) {
	s := newSteer(t)
	set := fieldSet()
	ref := apply(t, s, set)
	f := frametest.BuildFrame(frametest.FrameSpec{Src: netip.MustParseAddr("198.18.1.1"), Dst: netip.MustParseAddr("198.18.2.9"), Proto: 17, Sport: 7, Dport: 53})
	for range 3 {
		checkFrame(t, s, ref, "dns", f)
	}
	got, err := s.Rules()
	if err != nil {
		t.Fatal(err)
	}
	if rules.Format(got) != rules.Format(ref) {
		t.Fatalf("read back:\n%s\nwant:\n%s", rules.Format(got), rules.Format(ref))
	}
	set2 := fieldSet()
	set2.Rules = append(set2.Rules[:1], set2.Rules[2:]...) // drop priority 20
	set2.Rules = append(set2.Rules, rules.Rule{Priority: 5, Fields: rules.FieldProto, Proto: 6, Action: rules.ActionDrop})
	apply(t, s, set2)
	rs, err := s.RuleStats()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		want := uint64(0)
		if r.Rule.Priority == 40 {
			want = 6 // 3 checkFrames of 2 runs
		}
		if r.Packets != want {
			t.Errorf("rule %v: %d packets, want %d", r.Rule.String(), r.Packets, want)
		}
	}
}

// TestSteerCountsPerCPU: the program's per-CPU tables are sized for every
// possible CPU (the spec's entries are one CPU's), a frame run on each CPU
// is counted in that CPU's counters and its flow cached in that CPU's
// first-level table, and RuleStats sums the CPUs. A slot a new rule takes
// is zeroed on every CPU.
func TestSteerCountsPerCPU(t *testing.T) {
	spec, err := loadSteer()
	if err != nil {
		t.Fatal(err)
	}
	if e, c := spec.Maps["steer_emc"], spec.Maps["steer_counters"]; e.MaxEntries != emcEntries || e.ValueSize != 64 ||
		c.MaxEntries != counterSlots {
		t.Fatalf("steer.c: %d first-level entries of %d bytes and %d counter slots per CPU, want %d of 64 and %d",
			e.MaxEntries, e.ValueSize, c.MaxEntries, emcEntries, counterSlots)
	}
	s := newSteer(t)
	ref := apply(t, s, &rules.Set{Default: rules.ActionPass, Rules: []rules.Rule{{Priority: 1,
		Fields: rules.FieldProto, Proto: 17, Action: rules.ActionDrop}}})
	f := frametest.BuildFrame(frametest.FrameSpec{Src: netip.MustParseAddr("198.18.1.1"), Dst: netip.MustParseAddr("198.18.2.9"), Proto: 17, Sport: 7, Dport: 53})
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	var cpus []int
	for cpu := range 1024 {
		if set.IsSet(cpu) {
			cpus = append(cpus, cpu)
		}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer unix.SchedSetaffinity(0, &set)
	for i, cpu := range cpus {
		var one unix.CPUSet
		one.Set(cpu)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			t.Fatal(err)
		}
		for range i + 1 {
			checkFrame(t, s, ref, "udp", f) // two runs each
		}
	}
	rs, err := s.RuleStats()
	if err != nil {
		t.Fatal(err)
	}
	words := s.words
	var total uint64
	for i, cpu := range cpus {
		want := uint64(2 * (i + 1))
		total += want
		var got uint64
		for slot := range counterSlots {
			got += words[2*(cpu*counterSlots+slot)]
		}
		if got != want {
			t.Errorf("CPU %d: %d frames in its counters, want %d", cpu, got, want)
		}
		valid := 0
		for k := range emcEntries {
			var e steerEmcEntry
			if err := s.maps.SteerEmc.Lookup(uint32(cpu*emcEntries+k), &e); err != nil {
				t.Fatal(err)
			}
			if e.W.V.Flags != 0 {
				valid++
			}
		}
		if valid != 1 {
			t.Errorf("CPU %d: %d first-level entries written, want the flow's one", cpu, valid)
		}
	}
	if rs[0].Packets != total || rs[0].Bytes != total*uint64(len(f)) {
		t.Fatalf("RuleStats %+v, want %d packets of %d bytes over %d CPUs", rs[0].Counter, total, len(f), len(cpus))
	}
	// A rule of its own takes a fresh slot: zeroed on every CPU.
	ref2 := apply(t, s, &rules.Set{Default: rules.ActionPass, Rules: []rules.Rule{{Priority: 1,
		Fields: rules.FieldProto, Proto: 6, Action: rules.ActionDrop}}})
	for i := range words {
		words[i] = 1 // as if frames had been counted there
	}
	apply(t, s, ref)
	rs, err = s.RuleStats()
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Packets != 0 || rs[0].Bytes != 0 {
		t.Fatalf("a new rule's counter starts at %+v, want 0 (after %v)", rs[0].Counter, rules.Format(ref2))
	}
}

// TestSteerApplyErrorKeepsSet: an invalid set is refused and the running
// one stays.
func TestSteerApplyErrorKeepsSet(t *testing.T) {
	s := newSteer(t)
	ref := apply(t, s, fieldSet())
	bad := fieldSet()
	bad.Rules[1].Priority = bad.Rules[0].Priority
	if err := s.Apply(bad); err == nil {
		t.Fatal("duplicate priorities applied")
	}
	bad = fieldSet()
	bad.Rules[3].Dport = rules.PortRange{Lo: 60, Hi: 50}
	if err := s.Apply(bad); err == nil {
		t.Fatal("backwards range applied")
	}
	bad = &rules.Set{Rules: make([]rules.Rule, rules.MaxRules+1)}
	if err := s.Apply(bad); err == nil {
		t.Fatal("too many rules applied")
	}
	got, err := s.Rules()
	if err != nil {
		t.Fatal(err)
	}
	if rules.Format(got) != rules.Format(ref) {
		t.Fatalf("running set changed:\n%s", rules.Format(got))
	}
}

// TestSteerRandomSets: the fuzz test's comparison over many generated rule
// sets and every sample frame, for a deterministic run in `go test`.
func TestSteerRandomSets(t *testing.T) {
	s := newSteer(t)
	samples, tuples := frametest.SampleFrames(), rulestest.SampleTuples(progIfindex)
	for seed := range 12 {
		set := rulestest.SeededSet(uint32(seed*2654435761+1), 512, tuples, progIfindex)
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			ref := apply(t, s, set)
			matched, ran := 0, 0
			for i, smp := range samples {
				if i%7 == seed%7 { // a different seventh of the frames per set
					checkFrame(t, s, ref, smp.Name, smp.Frame)
					if ref.Decide(smp.Frame, progIfindex).Rule >= 0 {
						matched++
					}
					ran++
				}
			}
			t.Logf("%d rules: %d of %d frames matched a rule", len(ref.Rules), matched, ran)
		})
	}
}

// TestSteerMaxRules: a full set (rules.MaxRules rules, IPv6) applies and
// its last rule decides a frame.
func TestSteerMaxRules(t *testing.T) {
	s := newSteer(t)
	set, frame := scaleSet(rules.MaxRules, true)
	ref := apply(t, s, set)
	checkFrame(t, s, ref, "last of MaxRules", frame)
	// A full set replaced by a full set of other rules: every rule needs a
	// fresh counter slot while the running set still holds its own.
	set2, frame2 := scaleSet(rules.MaxRules, false)
	ref2 := apply(t, s, set2)
	checkFrame(t, s, ref2, "last of another MaxRules", frame2)
}

// cacheMisses is the flow cache's miss count.
func cacheMisses(tb testing.TB, s *Steer) uint64 {
	tb.Helper()
	c, err := s.CacheMisses()
	if err != nil {
		tb.Fatal(err)
	}
	return c.Packets
}

// TestSteerCacheNoStaleVerdict: a flow's frames are decided by the flow
// cache once it holds the flow (the miss count stays), with the counters
// exact; after a rule change the next frame of the flow gets the new
// set's verdict and counts against the new rule. The thread stays on one
// CPU, whose cache entries every run meets.
func TestSteerCacheNoStaleVerdict(t *testing.T) {
	pinToCPU(t)
	s := newSteer(t)
	f := frametest.BuildFrame(frametest.FrameSpec{Src: netip.MustParseAddr("198.18.1.1"), Dst: netip.MustParseAddr("198.18.2.9"),
		Proto: 17, Sport: 7, Dport: 53})
	dns := rules.Rule{Priority: 10, Name: "dns", Fields: rules.FieldProto | rules.FieldDport, Proto: 17,
		Dport: rules.PortRange{Lo: 53, Hi: 53}, Action: rules.ActionDrop}
	before := rules.Rule{Priority: 5, Name: "before", Fields: rules.FieldDst, Dst: prefix("198.18.2.0/24"), Action: rules.ActionRedirect}
	sets := []*rules.Set{
		{Rules: []rules.Rule{dns}},
		{Rules: []rules.Rule{before, dns}}, // a rule before it takes the flow
		{Rules: []rules.Rule{dns}},         // and goes again
		{Default: rules.ActionRedirect},    // no rule: the default
		{Rules: []rules.Rule{before}},      // a fresh rule
		{Default: rules.ActionDrop, Rules: []rules.Rule{{Priority: 1, Fields: rules.FieldDport, // no match, other default
			Dport: rules.PortRange{Lo: 80, Hi: 80}, Action: rules.ActionPass}}},
	}
	for i, set := range sets {
		ref := apply(t, s, set)
		m0 := cacheMisses(t, s)
		checkRun(t, s, ref, fmt.Sprintf("set %d, first frame", i), f)
		m1 := cacheMisses(t, s)
		if len(set.Rules) > 0 && m1 != m0+1 {
			t.Fatalf("set %d: the first frame after the change missed the cache %d times, want 1", i, m1-m0)
		}
		for k := range 5 {
			checkRun(t, s, ref, fmt.Sprintf("set %d, frame %d", i, k+2), f)
		}
		if m := cacheMisses(t, s); m != m1 {
			t.Fatalf("set %d: %d later frames of the flow missed the cache", i, m-m1)
		}
	}
}

// TestSteerEMCCollisions: twice as many flows as the flow cache's first
// level (direct-mapped) has entries, so that flows share entries, half of
// them dropped and half redirected; every frame, in two rounds, must get
// its own flow's verdict. The flows differ only in the destination's last
// bits: for IPv6 the last word of the key. After the first round the LRU
// holds every flow: the second round misses nothing.
func TestSteerEMCCollisions(t *testing.T) {
	s := newSteer(t)
	n := 2 * emcEntries // flows n/2 and up are outside the rule's prefix
	for _, fam := range []struct {
		name string
		dst  func(i int) netip.Addr
		rule netip.Prefix // holds flows 0 to n/2-1
	}{
		{"IPv4", func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}) },
			prefix("198.18.0.0/20")},
		{"IPv6", func(i int) netip.Addr {
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 14: byte(i >> 8), 15: byte(i)})
		},
			prefix("2001:2::/116")},
	} {
		t.Run(fam.name, func(t *testing.T) {
			pinToCPU(t) // this goroutine's: every run meets one CPU's entries
			ref := apply(t, s, &rules.Set{Default: rules.ActionRedirect, Rules: []rules.Rule{{Priority: 1,
				Fields: rules.FieldDst, Dst: fam.rule, Action: rules.ActionDrop}}})
			frames := make([][]byte, n)
			want := make([]uint32, n)
			for i := range frames {
				frames[i] = frametest.BuildFrame(frametest.FrameSpec{Src: fam.dst(0), Dst: fam.dst(i), Proto: 17, Sport: 7, Dport: 53})
				want[i] = xdpCode(ref.Decide(frames[i], progIfindex).Action)
			}
			if want[0] == want[n-1] {
				t.Fatalf("the first and last flows have one verdict (%d): the test would not see a mix-up", want[0])
			}
			var m1 uint64
			for round := range 2 {
				for i, f := range frames {
					ret, err := s.Program().Run(&ebpf.RunOptions{Data: f})
					if err != nil {
						t.Fatal(err)
					}
					if ret != want[i] {
						t.Fatalf("round %d, flow %d: program returned %d, want %d", round, i, ret, want[i])
					}
				}
				if round == 0 {
					m1 = cacheMisses(t, s)
				}
			}
			if m := cacheMisses(t, s); m != m1 {
				t.Fatalf("the second round missed the LRU %d times, want 0", m-m1)
			}
		})
	}
}

// TestSteerCacheWrap: steer_active counts rule changes in a u32; when it
// wraps, an entry decided 2^32 changes earlier carries the value again.
// Apply empties the cache at the wrap, so such an entry is never a hit.
func TestSteerCacheWrap(t *testing.T) {
	pinToCPU(t)
	s := newSteer(t)
	f4 := frametest.BuildFrame(frametest.FrameSpec{Src: netip.MustParseAddr("198.18.1.1"), Dst: netip.MustParseAddr("198.18.2.9"),
		Proto: 17, Sport: 7, Dport: 53})
	f6 := frametest.BuildFrame(frametest.FrameSpec{Src: netip.MustParseAddr("2001:2::1"), Dst: netip.MustParseAddr("2001:2::9"),
		Proto: 17, Sport: 7, Dport: 53})
	rule := func(a rules.Action) *rules.Set {
		return &rules.Set{Rules: []rules.Rule{{Priority: 1, Fields: rules.FieldDport, Dport: rules.PortRange{Lo: 53, Hi: 53}, Action: a}}}
	}
	ref := apply(t, s, rule(rules.ActionDrop)) // steer_active 1
	checkFrame(t, s, ref, "IPv4 before the wrap", f4)
	checkFrame(t, s, ref, "IPv6 before the wrap", f6)
	// 2^32 - 2 changes later, the same generation (bit 0) holds the set.
	if err := s.maps.SteerActive.Update(uint32(0), uint32(0xffffffff), ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	apply(t, s, rule(rules.ActionPass))           // wraps to 0
	ref = apply(t, s, rule(rules.ActionRedirect)) // 1 again
	checkFrame(t, s, ref, "IPv4 after the wrap", f4)
	checkFrame(t, s, ref, "IPv6 after the wrap", f6)
}
