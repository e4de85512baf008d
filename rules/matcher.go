package rules

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Matcher runs compiled Tables in Go, as the steering program does in the
// kernel: one table lookup per field in use (a few hash lookups for
// prefixes, one per prefix length in use) and an AND of bitmaps that skips
// words by their summaries. Its cost does not grow with the number of
// rules; Set.Match is a linear scan, which Match itself uses for sets of
// up to linearMax rules, where scanning is cheaper. Same semantics as
// Set.Match (fuzzed against it). Safe for concurrent use; immutable.
type Matcher struct {
	set    *Set
	used   Field
	sums   int // summary words at the start of each bitmap: bit j set when word j is non-zero
	stride int // sums + rule words
	// arena holds every bitmap, stride words each; the tables below hold
	// bitmap numbers (offset = number * stride).
	arena   []uint64
	wild    [8]uint32
	ifindex map[uint32]uint32
	vlan    []uint32    // by VLAN id, 4096 entries
	ether   []uint32    // by EtherType, 65536 entries
	proto   []uint32    // by IP protocol, 256 entries
	ports   [2][]uint32 // by port, 65536 entries
	pfx     [2]prefixIndex
}

// prefixIndex finds the longest stored prefix containing an address: one
// hash lookup per stored length, longest first (/0 is always stored).
type prefixIndex struct {
	lens4, lens6 []uint8
	v4           map[uint64]uint32 // masked address << 8 | length
	v6           map[prefix6]uint32
}

type prefix6 struct {
	hi, lo uint64 // masked address
	bits   uint8
}

// NewMatcher builds a matcher for compiled tables.
func NewMatcher(t *Tables) *Matcher {
	m := &Matcher{set: t.Set, used: t.Used}
	m.sums = (t.Words + 63) / 64
	m.stride = m.sums + t.Words
	add := func(b []uint64) uint32 {
		id := uint32(len(m.arena) / m.stride)
		m.arena = append(m.arena, make([]uint64, m.sums)...)
		for j, w := range b {
			if w != 0 {
				m.arena[int(id)*m.stride+j/64] |= 1 << (j % 64)
			}
		}
		m.arena = append(m.arena, b...)
		return id
	}
	table := func(k, size int) []uint32 {
		tab := make([]uint32, size)
		for i := range tab {
			tab[i] = m.wild[k]
		}
		for v, b := range t.Exact[k] {
			if int(v) < size {
				tab[v] = add(b)
			}
		}
		return tab
	}
	for k, b := range t.Wild {
		if b != nil {
			m.wild[k] = add(b)
		}
	}
	if t.Used&FieldIfindex != 0 {
		m.ifindex = make(map[uint32]uint32, len(t.Exact[0]))
		for v, b := range t.Exact[0] {
			m.ifindex[v] = add(b)
		}
	}
	if t.Used&FieldVLAN != 0 {
		m.vlan = table(fieldBit(FieldVLAN), 4096)
	}
	if t.Used&FieldEtherType != 0 {
		m.ether = table(fieldBit(FieldEtherType), 1<<16)
	}
	if t.Used&FieldProto != 0 {
		m.proto = table(fieldBit(FieldProto), 256)
	}
	for dir := range t.Prefix {
		if t.Prefix[dir] == nil {
			continue
		}
		px := prefixIndex{v4: map[uint64]uint32{}, v6: map[prefix6]uint32{}}
		for _, l := range t.PrefixLengths(dir, false) {
			px.lens4 = append(px.lens4, uint8(l))
		}
		for _, l := range t.PrefixLengths(dir, true) {
			px.lens6 = append(px.lens6, uint8(l))
		}
		for p, b := range t.Prefix[dir] {
			id := add(b)
			if p.Addr().Is4() {
				px.v4[key4(p.Addr(), uint8(p.Bits()))] = id
			} else {
				px.v6[key6(p.Addr(), uint8(p.Bits()))] = id
			}
		}
		m.pfx[dir] = px
	}
	for dir, iv := range t.Ports {
		if iv.Starts == nil {
			continue
		}
		tab := make([]uint32, 1<<16)
		for i, start := range iv.Starts {
			id := add(iv.Bitmaps[i])
			end := 1 << 16
			if i+1 < len(iv.Starts) {
				end = int(iv.Starts[i+1])
			}
			for p := int(start); p < end; p++ {
				tab[p] = id
			}
		}
		m.ports[dir] = tab
	}
	return m
}

// key4 is the v4 map key of a's first bits bits.
func key4(a netip.Addr, bits uint8) uint64 {
	b := a.As4()
	v := uint64(binary.BigEndian.Uint32(b[:]))
	if bits < 32 {
		v &^= 1<<(32-bits) - 1
	}
	return v<<8 | uint64(bits)
}

// key6 is the v6 map key of a's first bits bits.
func key6(a netip.Addr, bits uint8) prefix6 {
	b := a.As16()
	k := prefix6{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:]), bits: bits}
	switch {
	case bits == 0:
		k.hi, k.lo = 0, 0
	case bits < 64:
		k.hi &^= 1<<(64-bits) - 1
		k.lo = 0
	case bits == 64:
		k.lo = 0
	case bits < 128:
		k.lo &^= 1<<(128-bits) - 1
	}
	return k
}

// lookup returns the bitmap of the longest stored prefix containing a.
func (px *prefixIndex) lookup(a netip.Addr, v6 bool) uint32 {
	if !v6 {
		for _, l := range px.lens4 {
			if id, ok := px.v4[key4(a, l)]; ok {
				return id
			}
		}
	} else {
		for _, l := range px.lens6 {
			if id, ok := px.v6[key6(a, l)]; ok {
				return id
			}
		}
	}
	panic("rules: no /0 prefix stored") // Compile always stores /0
}

// linearMax is the largest set Match scans linearly: up to a few rules the
// scan (Set.Match, the reference itself) costs less than looking up and
// ANDing the bitmaps, and its cost stays bounded.
const linearMax = 4

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
	if len(set.Rules) <= linearMax {
		return set.Match(t)
	}
	var bms [8]int // arena offsets of the fields' bitmaps
	n := 0
	add := func(id uint32) { bms[n] = int(id) * m.stride; n++ }
	if m.used&FieldIfindex != 0 {
		id, ok := m.ifindex[t.Ifindex]
		if !ok {
			id = m.wild[0]
		}
		add(id)
	}
	if m.used&FieldVLAN != 0 {
		if t.HasVLAN {
			add(m.vlan[t.VLAN&0x0fff])
		} else {
			add(m.wild[1])
		}
	}
	if m.used&FieldEtherType != 0 {
		add(m.ether[t.EtherType])
	}
	if m.used&FieldProto != 0 {
		if t.Family != 0 {
			add(m.proto[t.Proto])
		} else {
			add(m.wild[3])
		}
	}
	for dir, f := range [2]Field{FieldSrc, FieldDst} {
		if m.used&f == 0 {
			continue
		}
		if t.Family == 0 {
			add(m.wild[4+dir])
			continue
		}
		a := t.Src
		if dir == 1 {
			a = t.Dst
		}
		add(m.pfx[dir].lookup(a, t.Family == 6))
	}
	for dir, f := range [2]Field{FieldSport, FieldDport} {
		if m.used&f == 0 {
			continue
		}
		if !t.HasPorts {
			add(m.wild[6+dir])
			continue
		}
		p := t.Sport
		if dir == 1 {
			p = t.Dport
		}
		add(m.ports[dir][p])
	}
	// Only words whose summary bit is set in every bitmap can match.
	arena := m.arena
	for sw := 0; sw < m.sums; sw++ {
		s := ^uint64(0)
		for _, o := range bms[:n] {
			s &= arena[o+sw]
		}
		for ; s != 0; s &= s - 1 {
			w := m.sums + sw*64 + bits.TrailingZeros64(s)
			x := ^uint64(0)
			for _, o := range bms[:n] {
				x &= arena[o+w]
			}
			if x != 0 {
				i := (w-m.sums)*64 + bits.TrailingZeros64(x)
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
