package rules

import (
	"math/bits"
	"net/netip"
	"slices"
	"sort"
)

// Matcher is a Set compiled for fast matching: the steering program's
// bit-vector scheme in Go. Match costs one map lookup per field in use (a
// few more for prefixes of several lengths, a binary search for port
// ranges) and an AND of bitmaps, whatever the number of rules; Set.Match is
// a linear scan. Same semantics as Set.Match (fuzzed against it). Safe for
// concurrent use; immutable.
type Matcher struct {
	set   *Set
	used  Field
	words int
	sums  int           // summary words at the start of each bitmap: bit j set when word j is non-zero
	exact [4]exactField // ifindex, VLAN, EtherType, proto
	pfx   [2]prefixField
	ports [2]portField
}

type exactField struct {
	wild   []uint64
	values map[uint32][]uint64
}

type prefixField struct {
	wild []uint64 // non-IP frames
	// Per family (0 IPv4, 1 IPv6): the stored prefixes' lengths, longest
	// first, and each prefix's bitmap (its rules and those of every
	// shorter prefix containing it, plus the wildcards); /0 always stored.
	lens [2][]int
	bm   map[netip.Prefix][]uint64
}

type portField struct {
	wild   []uint64 // frames without ports
	starts []uint16 // interval starts, ascending, starts[0] == 0
	bm     [][]uint64
}

// Compile compiles set, which must be normalized (Normalize, or Parse and
// LoadFile). The Matcher keeps set: do not change it afterwards.
func Compile(set *Set) *Matcher {
	n := len(set.Rules)
	m := &Matcher{set: set, words: max(1, (n+63)/64)}
	m.sums = (m.words + 63) / 64
	// A bitmap is m.sums summary words then m.words rule words; the
	// summaries are filled in by finish, once the rule bits are final.
	newBM := func() []uint64 { return make([]uint64, m.sums+m.words) }
	setBit := func(b []uint64, i int) { b[m.sums+i/64] |= 1 << (i % 64) }
	clearBit := func(b []uint64, i int) { b[m.sums+i/64] &^= 1 << (i % 64) }
	for _, r := range set.Rules {
		m.used |= r.Fields
	}
	wild := func(f Field) []uint64 {
		b := newBM()
		for i := range set.Rules {
			if set.Rules[i].Fields&f == 0 {
				setBit(b, i)
			}
		}
		return b
	}
	for k, ef := range []struct {
		f     Field
		value func(*Rule) uint32
	}{
		{FieldIfindex, func(r *Rule) uint32 { return r.Ifindex }},
		{FieldVLAN, func(r *Rule) uint32 { return uint32(r.VLAN) }},
		{FieldEtherType, func(r *Rule) uint32 { return uint32(r.EtherType) }},
		{FieldProto, func(r *Rule) uint32 { return uint32(r.Proto) }},
	} {
		if m.used&ef.f == 0 {
			continue
		}
		x := exactField{wild: wild(ef.f), values: map[uint32][]uint64{}}
		for i := range set.Rules {
			if r := &set.Rules[i]; r.Fields&ef.f != 0 {
				v := ef.value(r)
				b, ok := x.values[v]
				if !ok {
					b = slices.Clone(x.wild)
					x.values[v] = b
				}
				setBit(b, i)
			}
		}
		m.exact[k] = x
	}
	for dir, f := range []Field{FieldSrc, FieldDst} {
		if m.used&f == 0 {
			continue
		}
		pf := prefixField{wild: wild(f), bm: map[netip.Prefix][]uint64{}}
		byPrefix := map[netip.Prefix][]int{
			netip.PrefixFrom(netip.IPv4Unspecified(), 0): nil,
			netip.PrefixFrom(netip.IPv6Unspecified(), 0): nil,
		}
		for i := range set.Rules {
			if r := &set.Rules[i]; r.Fields&f != 0 {
				p := r.Src
				if dir == 1 {
					p = r.Dst
				}
				byPrefix[p] = append(byPrefix[p], i)
			}
		}
		seen := [2]map[int]bool{{}, {}}
		for p := range byPrefix {
			b := slices.Clone(pf.wild)
			for l := 0; l <= p.Bits(); l++ {
				q, _ := p.Addr().Prefix(l)
				for _, i := range byPrefix[q] {
					setBit(b, i)
				}
			}
			pf.bm[p] = b
			fam := 0
			if p.Addr().Is6() {
				fam = 1
			}
			if !seen[fam][p.Bits()] {
				seen[fam][p.Bits()] = true
				pf.lens[fam] = append(pf.lens[fam], p.Bits())
			}
		}
		for fam := range pf.lens {
			sort.Sort(sort.Reverse(sort.IntSlice(pf.lens[fam])))
		}
		m.pfx[dir] = pf
	}
	for dir, f := range []Field{FieldSport, FieldDport} {
		if m.used&f == 0 {
			continue
		}
		pf := portField{wild: wild(f)}
		starts := map[int][]int{} // boundary -> rules whose range starts there
		ends := map[int][]int{}   // boundary -> rules whose range ended just before
		bounds := map[int]bool{0: true}
		for i := range set.Rules {
			if r := &set.Rules[i]; r.Fields&f != 0 {
				pr := r.Sport
				if dir == 1 {
					pr = r.Dport
				}
				starts[int(pr.Lo)] = append(starts[int(pr.Lo)], i)
				bounds[int(pr.Lo)] = true
				if int(pr.Hi) < 0xffff {
					ends[int(pr.Hi)+1] = append(ends[int(pr.Hi)+1], i)
					bounds[int(pr.Hi)+1] = true
				}
			}
		}
		for b := range bounds {
			pf.starts = append(pf.starts, uint16(b))
		}
		slices.Sort(pf.starts)
		cur := slices.Clone(pf.wild)
		for _, start := range pf.starts {
			for _, i := range ends[int(start)] {
				clearBit(cur, i)
			}
			for _, i := range starts[int(start)] {
				setBit(cur, i)
			}
			pf.bm = append(pf.bm, slices.Clone(cur))
		}
		m.ports[dir] = pf
	}
	m.finish()
	return m
}

// finish computes every bitmap's summary words.
func (m *Matcher) finish() {
	sum := func(b []uint64) {
		if b == nil {
			return
		}
		clear(b[:m.sums])
		for j, w := range b[m.sums:] {
			if w != 0 {
				b[j/64] |= 1 << (j % 64)
			}
		}
	}
	for k := range m.exact {
		sum(m.exact[k].wild)
		for _, b := range m.exact[k].values {
			sum(b)
		}
	}
	for k := range m.pfx {
		sum(m.pfx[k].wild)
		for _, b := range m.pfx[k].bm {
			sum(b)
		}
	}
	for k := range m.ports {
		sum(m.ports[k].wild)
		for _, b := range m.ports[k].bm {
			sum(b)
		}
	}
}

// Set returns the compiled set.
func (m *Matcher) Set() *Set { return m.set }

// Match returns the index in Set().Rules of the first rule matching t and
// its action, or -1 and the default action, exactly as Set.Match. It
// allocates nothing.
func (m *Matcher) Match(t *Tuple) (int, Action) {
	set := m.set
	if len(set.Rules) == 0 {
		return -1, set.Default
	}
	if m.used == 0 {
		return 0, set.Rules[0].Action
	}
	var bms [8][]uint64
	n := 0
	add := func(b []uint64) { bms[n] = b; n++ }
	for k, f := range []Field{FieldIfindex, FieldVLAN, FieldEtherType, FieldProto} {
		if m.used&f == 0 {
			continue
		}
		x := &m.exact[k]
		var v uint32
		present := true
		switch f {
		case FieldIfindex:
			v = t.Ifindex
		case FieldVLAN:
			v, present = uint32(t.VLAN), t.HasVLAN
		case FieldEtherType:
			v = uint32(t.EtherType)
		case FieldProto:
			v, present = uint32(t.Proto), t.Family != 0
		}
		b, ok := x.values[v]
		if !present || !ok {
			b = x.wild
		}
		add(b)
	}
	for dir, f := range []Field{FieldSrc, FieldDst} {
		if m.used&f == 0 {
			continue
		}
		pf := &m.pfx[dir]
		if t.Family == 0 {
			add(pf.wild)
			continue
		}
		a := t.Src
		if dir == 1 {
			a = t.Dst
		}
		fam := 0
		if t.Family == 6 {
			fam = 1
		}
		for _, l := range pf.lens[fam] {
			p, _ := a.Prefix(l)
			if b, ok := pf.bm[p]; ok {
				add(b)
				break
			}
		}
	}
	for dir, f := range []Field{FieldSport, FieldDport} {
		if m.used&f == 0 {
			continue
		}
		pf := &m.ports[dir]
		if !t.HasPorts {
			add(pf.wild)
			continue
		}
		port := t.Sport
		if dir == 1 {
			port = t.Dport
		}
		// The last interval starting at or below port.
		i := sort.Search(len(pf.starts), func(i int) bool { return pf.starts[i] > port }) - 1
		add(pf.bm[i])
	}
	// Only words whose summary bit is set in every bitmap can match.
	for sw := 0; sw < m.sums; sw++ {
		s := ^uint64(0)
		for _, b := range bms[:n] {
			s &= b[sw]
		}
		for ; s != 0; s &= s - 1 {
			w := sw*64 + bits.TrailingZeros64(s)
			x := ^uint64(0)
			for _, b := range bms[:n] {
				x &= b[m.sums+w]
			}
			if x != 0 {
				i := w*64 + bits.TrailingZeros64(x)
				return i, set.Rules[i].Action
			}
		}
	}
	return -1, set.Default
}

// Decide is Set.Decide through the compiled matcher.
func (m *Matcher) Decide(frame []byte, ifindex uint32) Decision {
	t, reason := ParseFrame(frame, ifindex)
	if reason != ReasonNone {
		return Decision{Action: m.set.Malformed, Rule: -1, Reason: reason}
	}
	i, a := m.Match(&t)
	return Decision{Action: a, Rule: i}
}
