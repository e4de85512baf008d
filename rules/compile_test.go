package rules_test

import (
	"fmt"
	"testing"

	"github.com/xdpipe/xdpipe/internal/frame/frametest"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/rules/rulestest"
)

// genSet is FuzzSet for interface 1, normalized.
func genSet(data []byte, tuples []rules.Tuple) *rules.Set {
	set := rulestest.FuzzSet(data, tuples, 1)
	if err := set.Normalize(); err != nil {
		panic(err)
	}
	return set
}

func sampleTuples() ([]frametest.Sample, []rules.Tuple) {
	return frametest.SampleFrames(), rulestest.SampleTuples(1)
}

// TestMatcherAgrees: the compiled matcher decides every sample frame like
// the reference under many generated rule sets.
func TestMatcherAgrees(t *testing.T) {
	samples, tuples := sampleTuples()
	matched := 0
	for seed := range 200 {
		set := rulestest.SeededSet(uint32(seed*2654435761+7), 2048, tuples, 1)
		if err := set.Normalize(); err != nil {
			t.Fatal(err)
		}
		m := rules.NewMatcher(rules.Compile(set))
		for _, s := range samples {
			want, got := set.Decide(s.Frame, 1), m.Decide(s.Frame, 1)
			if got != want {
				t.Fatalf("seed %d, frame %s: matcher %+v, reference %+v\n%s", seed, s.Name, got, want, rules.Format(set))
			}
			if want.Rule >= 0 {
				matched++
			}
		}
	}
	// Without rules that match, agreement would only test the defaults.
	if matched < 1000 {
		t.Fatalf("only %d decisions by a rule: the generated sets hardly match", matched)
	}
	t.Logf("%d decisions by a rule", matched)
}

// FuzzMatcher: random rule sets and frames, compiled matcher against the
// reference. Run: go test ./rules/ -run '^$' -fuzz FuzzMatcher
func FuzzMatcher(f *testing.F) {
	samples, tuples := sampleTuples()
	for i, s := range samples {
		if i%9 == 0 {
			f.Add([]byte(fmt.Sprint(i*7919)), s.Frame)
		}
	}
	f.Fuzz(func(t *testing.T, ruleData, frame []byte) {
		ts := tuples
		if tu, r := rules.ParseFrame(frame, 1); r == rules.ReasonNone {
			ts = []rules.Tuple{tu}
		}
		set := genSet(ruleData, ts)
		if want, got := set.Decide(frame, 1), rules.NewMatcher(rules.Compile(set)).Decide(frame, 1); got != want {
			t.Fatalf("matcher %+v, reference %+v\n%s", got, want, rules.Format(set))
		}
	})
}

func TestMatcherAllocs(t *testing.T) {
	_, tuples := sampleTuples()
	set := genSet([]byte("some rules with prefixes and ports and more bytes to go around"), tuples)
	m := rules.NewMatcher(rules.Compile(set))
	f := frametest.BuildFrame(frametest.FrameSpec{Src: frametest.Src6, Dst: frametest.Dst6, Proto: 17, Sport: 5, Dport: 53})
	if n := testing.AllocsPerRun(100, func() { m.Decide(f, 1) }); n != 0 {
		t.Fatalf("%v allocations per Decide", n)
	}
}

// BenchmarkMatcher: the compiled matcher on the same 100 rules as
// BenchmarkDecide (the reference's linear scan), and on 10,000.
func BenchmarkMatcher(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			set := &rules.Set{}
			for i := range n {
				set.Rules = append(set.Rules, rules.Rule{Priority: uint32(i), Fields: rules.FieldProto | rules.FieldDport, Proto: 17,
					Dport: rules.PortRange{uint16(1000 + i), uint16(1000 + i)}, Action: rules.ActionRedirect})
			}
			if err := set.Normalize(); err != nil {
				b.Fatal(err)
			}
			m := rules.NewMatcher(rules.Compile(set))
			f := frametest.BuildFrame(frametest.FrameSpec{Src: frametest.Src4, Dst: frametest.Dst4, Proto: 17, Sport: 1, Dport: uint16(1000 + n - 1)})
			b.ReportAllocs()
			for b.Loop() {
				if d := m.Decide(f, 1); d.Rule != n-1 {
					b.Fatal(d)
				}
			}
		})
	}
}
