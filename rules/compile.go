package rules

import (
	"math/bits"
	"net/netip"
	"slices"
	"sort"
)

// Tables are a Set compiled to the bit-vector scheme (Lakshman and
// Stiliadis) that the steering program (bpf/steer.c) and Matcher run:
// rules are numbered 0..n-1 in priority order, and for each match field
// every value a frame can carry maps to the bitmap of the rules accepting
// it (rule i is bit i%64 of word i/64; Words words). A frame's rules are
// the AND of its fields' bitmaps, the lowest set bit the winner. Fields no
// rule uses have no tables. Tables are immutable once compiled.
type Tables struct {
	Set   *Set
	Used  Field // fields some rule matches on
	Words int   // uint64 words per bitmap
	// Wild, by field bit (0 FieldIfindex .. 7 FieldDport): the rules
	// leaving the field unset, which is what a frame without the field
	// (untagged, non-IP, no ports) or with a value no rule names matches.
	Wild [8][]uint64
	// Exact, by field bit (ifindex, VLAN id, EtherType, IP protocol): the
	// bitmap of each value some rule names; other values match Wild.
	Exact [4]map[uint32][]uint64
	// Prefix, source then destination: the bitmap of each prefix some rule
	// names, with the rules of every shorter prefix containing it, and /0
	// of both families always. The longest stored prefix containing an
	// address is the address's bitmap.
	Prefix [2]map[netip.Prefix][]uint64
	// Ports, source then destination: the elementary intervals the rules'
	// ranges cut the port space into (at most 2n+1).
	Ports [2]Intervals
}

// Intervals partition the port space: ports Starts[i]..Starts[i+1]-1 (the
// last up to 65535) match Bitmaps[i].
type Intervals struct {
	Starts  []uint16 // ascending, Starts[0] == 0
	Bitmaps [][]uint64
}

// fieldBit is the index of field f (one bit) in Tables' arrays.
func fieldBit(f Field) int { return bits.TrailingZeros32(uint32(f)) }

// Compile compiles set, which must be normalized (Normalize, or Parse and
// LoadFile). The Tables keep set: do not change it afterwards.
func Compile(set *Set) *Tables {
	n := len(set.Rules)
	t := &Tables{Set: set, Words: max(1, (n+63)/64)}
	for _, r := range set.Rules {
		t.Used |= r.Fields
	}
	setBit := func(b []uint64, i int) { b[i/64] |= 1 << (i % 64) }
	for f := FieldIfindex; f <= FieldDport; f <<= 1 {
		if t.Used&f == 0 {
			continue
		}
		b := make([]uint64, t.Words)
		for i := range set.Rules {
			if set.Rules[i].Fields&f == 0 {
				setBit(b, i)
			}
		}
		t.Wild[fieldBit(f)] = b
	}
	for _, ef := range []struct {
		f     Field
		value func(*Rule) uint32
	}{
		{FieldIfindex, func(r *Rule) uint32 { return r.Ifindex }},
		{FieldVLAN, func(r *Rule) uint32 { return uint32(r.VLAN) }},
		{FieldEtherType, func(r *Rule) uint32 { return uint32(r.EtherType) }},
		{FieldProto, func(r *Rule) uint32 { return uint32(r.Proto) }},
	} {
		if t.Used&ef.f == 0 {
			continue
		}
		k := fieldBit(ef.f)
		values := map[uint32][]uint64{}
		for i := range set.Rules {
			if r := &set.Rules[i]; r.Fields&ef.f != 0 {
				v := ef.value(r)
				b, ok := values[v]
				if !ok {
					b = slices.Clone(t.Wild[k])
					values[v] = b
				}
				setBit(b, i)
			}
		}
		t.Exact[k] = values
	}
	for dir, f := range []Field{FieldSrc, FieldDst} {
		if t.Used&f == 0 {
			continue
		}
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
		bm := make(map[netip.Prefix][]uint64, len(byPrefix))
		for p := range byPrefix {
			b := slices.Clone(t.Wild[fieldBit(f)])
			for l := 0; l <= p.Bits(); l++ {
				q, _ := p.Addr().Prefix(l)
				for _, i := range byPrefix[q] {
					setBit(b, i)
				}
			}
			bm[p] = b
		}
		t.Prefix[dir] = bm
	}
	for dir, f := range []Field{FieldSport, FieldDport} {
		if t.Used&f == 0 {
			continue
		}
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
		var iv Intervals
		for b := range bounds {
			iv.Starts = append(iv.Starts, uint16(b))
		}
		slices.Sort(iv.Starts)
		cur := slices.Clone(t.Wild[fieldBit(f)])
		for _, start := range iv.Starts {
			for _, i := range ends[int(start)] {
				cur[i/64] &^= 1 << (i % 64)
			}
			for _, i := range starts[int(start)] {
				setBit(cur, i)
			}
			iv.Bitmaps = append(iv.Bitmaps, slices.Clone(cur))
		}
		t.Ports[dir] = iv
	}
	return t
}

// PrefixLengths returns the lengths of the stored prefixes of direction
// dir (0 source, 1 destination) and family (IPv6 or not), longest first.
func (t *Tables) PrefixLengths(dir int, v6 bool) []int {
	var lens []int
	for p := range t.Prefix[dir] {
		if p.Addr().Is6() == v6 && !slices.Contains(lens, p.Bits()) {
			lens = append(lens, p.Bits())
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(lens)))
	return lens
}
