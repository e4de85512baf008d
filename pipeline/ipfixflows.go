package pipeline

import (
	"math/bits"
	"math/rand/v2"
)

// ipfixSlots is the table size for max flows: a power of two above 4/3
// of it (linear probing at a load under 3/4, and always an empty slot,
// which ends every probe).
func ipfixSlots(maxFlows int) uint64 {
	n := uint64(max(maxFlows, 1))
	return 1 << bits.Len64(n+n/3)
}

// flowKey is a flow's 5-tuple, VLAN and ingress port. An IPv4 address is
// in the low 32 bits of its first word. meta packs source port (bits
// 48-63), destination port (32-47), protocol (24-31), VLAN ID (12-23),
// the worker port (4-11) and the family (0-3: 4 or 6); it is never 0 for
// a flow, so 0 marks an empty slot.
type flowKey struct {
	src, dst [2]uint64
	meta     uint64
}

// flow is one slot of the table: flowSize bytes.
type flow struct {
	key     flowKey
	packets uint64 // since the last record
	octets  uint64
	first   int64 // pipeline time of the first packet since the last record
	last    int64 // of the last packet
}

// flowTable is a fixed-size open-addressing hash table (linear probing,
// backward-shift deletion), allocated once.
type flowTable struct {
	slots []flow
	mask  uint64
	n     int // flows in the table
	max   int
	seed  [3]uint64
}

func newFlowTable(maxFlows int) *flowTable {
	n := ipfixSlots(maxFlows)
	return &flowTable{slots: make([]flow, n), mask: n - 1, max: maxFlows,
		seed: [3]uint64{rand.Uint64(), rand.Uint64(), rand.Uint64()}}
}

// mix is wyhash's mixing step: the two halves of a 128-bit product, xored.
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// home is the slot a key hashes to. The seed is random per table, so
// crafted flows cannot aim at one probe chain.
func (t *flowTable) home(k *flowKey) uint64 {
	h := mix(k.src[0]^t.seed[0], k.src[1]^t.seed[1]) ^ mix(k.dst[0]^t.seed[1], k.dst[1]^t.seed[2]) ^ mix(k.meta^t.seed[2], t.seed[0])
	return mix(h, 0x9e3779b97f4a7c15) & t.mask
}

// find returns the slot holding k, or the empty slot where k goes.
func (t *flowTable) find(k *flowKey) *flow {
	for i := t.home(k); ; i = (i + 1) & t.mask {
		// Field by field, meta first: cheaper than the runtime's memequal
		// of the struct, and most misses differ in ports.
		f := &t.slots[i]
		if f.key.meta == 0 || f.key.meta == k.meta && f.key.src[0] == k.src[0] && f.key.dst[0] == k.dst[0] &&
			f.key.src[1] == k.src[1] && f.key.dst[1] == k.dst[1] {
			return f
		}
	}
}

// remove empties slot i, moving later entries of the probe chain back
// so that every key stays reachable from its home slot.
func (t *flowTable) remove(i uint64) {
	t.n--
	for {
		t.slots[i].key.meta = 0
		j := i
		for {
			j = (j + 1) & t.mask
			if t.slots[j].key.meta == 0 {
				return
			}
			// Slot j's entry may move to i when i lies on its chain:
			// between its home and j.
			if h := t.home(&t.slots[j].key); (j-h)&t.mask >= (j-i)&t.mask {
				t.slots[i] = t.slots[j]
				i = j
				break
			}
		}
	}
}
