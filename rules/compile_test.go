package rules

import (
	"fmt"
	"net/netip"
	"testing"
)

// genSet derives a normalized rule set from data, drawing field values from
// tuples three quarters of the time so that rules do match.
func genSet(data []byte, tuples []Tuple) *Set {
	i := 0
	next := func() byte {
		if i >= len(data) {
			return 0
		}
		i++
		return data[i-1]
	}
	set := &Set{Default: Action(next() % 3), Malformed: Action(next() % 3)}
	n := int(next() % 40)
	for k := range n {
		var tu Tuple
		if len(tuples) > 0 {
			tu = tuples[int(next())%len(tuples)]
		}
		a, b := next(), next()
		r := Rule{Priority: uint32(next())<<8 | uint32(k), Fields: Field(a & b), Action: Action(next() % 3)}
		c, d := next(), next()
		use := c | d
		pick := func(bit byte, fromTuple, random uint32) uint32 {
			if use&bit != 0 {
				return fromTuple
			}
			return random
		}
		r.Ifindex = pick(1, tu.Ifindex, uint32(next()%3))
		r.VLAN = uint16(pick(2, uint32(tu.VLAN), uint32(next()%4)*100))
		r.EtherType = uint16(pick(4, uint32(tu.EtherType), uint32([]uint16{0x0800, 0x86dd, 0x0806}[next()%3])))
		r.Proto = uint8(pick(8, uint32(tu.Proto), uint32([]uint8{6, 17, 1, 58, 47}[next()%5])))
		v6 := next()&1 == 1
		if use&16 != 0 && tu.Family != 0 {
			v6 = tu.Family == 6
		}
		pfx := func(a netip.Addr, useTuple bool) netip.Prefix {
			if !useTuple || !a.IsValid() || a.Is6() != v6 {
				if v6 {
					a = netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 15: next() % 4})
				} else {
					a = netip.AddrFrom4([4]byte{198, 18, next() % 4, next() % 4})
				}
			}
			p, _ := a.Prefix(int(next()) % (a.BitLen() + 1))
			return p
		}
		r.Src = pfx(tu.Src, use&16 != 0)
		r.Dst = pfx(tu.Dst, use&32 != 0)
		rng := func(p uint16, useTuple bool) PortRange {
			lo := uint16(next())<<8 | uint16(next())
			if useTuple && tu.HasPorts {
				lo = p - uint16(next()%3)
			}
			hi := lo + uint16(next()%4)
			if hi < lo {
				hi = 0xffff
			}
			return PortRange{lo, hi}
		}
		r.Sport = rng(tu.Sport, use&64 != 0)
		r.Dport = rng(tu.Dport, use&128 != 0)
		set.Rules = append(set.Rules, r)
	}
	if err := set.Normalize(); err != nil {
		panic(err)
	}
	return set
}

func sampleTuples() ([]Sample, []Tuple) {
	samples := SampleFrames()
	var tuples []Tuple
	for _, s := range samples {
		if tu, r := ParseFrame(s.Frame, 1); r == ReasonNone {
			tuples = append(tuples, tu)
		}
	}
	return samples, tuples
}

// TestMatcherAgrees: the compiled matcher decides every sample frame like
// the reference under many generated rule sets.
func TestMatcherAgrees(t *testing.T) {
	samples, tuples := sampleTuples()
	matched := 0
	for seed := range 200 {
		data := make([]byte, 2048)
		x := uint32(seed*2654435761 + 7)
		for i := range data {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			data[i] = byte(x)
		}
		set := genSet(data, tuples)
		m := Compile(set)
		for _, s := range samples {
			want, got := set.Decide(s.Frame, 1), m.Decide(s.Frame, 1)
			if got != want {
				t.Fatalf("seed %d, frame %s: matcher %+v, reference %+v\n%s", seed, s.Name, got, want, Format(set))
			}
			if want.Rule >= 0 {
				matched++
			}
		}
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
		if tu, r := ParseFrame(frame, 1); r == ReasonNone {
			ts = []Tuple{tu}
		}
		set := genSet(ruleData, ts)
		if want, got := set.Decide(frame, 1), Compile(set).Decide(frame, 1); got != want {
			t.Fatalf("matcher %+v, reference %+v\n%s", got, want, Format(set))
		}
	})
}

func TestMatcherAllocs(t *testing.T) {
	_, tuples := sampleTuples()
	set := genSet([]byte("some rules with prefixes and ports and more bytes to go around"), tuples)
	m := Compile(set)
	f := BuildFrame(FrameSpec{Src: src6, Dst: dst6, Proto: 17, Sport: 5, Dport: 53})
	if n := testing.AllocsPerRun(100, func() { m.Decide(f, 1) }); n != 0 {
		t.Fatalf("%v allocations per Decide", n)
	}
}

// BenchmarkMatcher: the compiled matcher on the same 100 rules as
// BenchmarkDecide (the reference's linear scan), and on 10,000.
func BenchmarkMatcher(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			set := &Set{}
			for i := range n {
				set.Rules = append(set.Rules, Rule{Priority: uint32(i), Fields: FieldProto | FieldDport, Proto: 17,
					Dport: PortRange{uint16(1000 + i), uint16(1000 + i)}, Action: ActionRedirect})
			}
			if err := set.Normalize(); err != nil {
				b.Fatal(err)
			}
			m := Compile(set)
			f := BuildFrame(FrameSpec{Src: src4, Dst: dst4, Proto: 17, Sport: 1, Dport: uint16(1000 + n - 1)})
			b.ReportAllocs()
			for b.Loop() {
				if d := m.Decide(f, 1); d.Rule != n-1 {
					b.Fatal(d)
				}
			}
		})
	}
}
