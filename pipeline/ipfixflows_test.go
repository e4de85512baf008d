package pipeline

import "testing"

// TestFlowTableRemoveKeepsChains: after any removals, every flow left is
// found, on a table small enough for long probe chains that wrap.
func TestFlowTableRemoveKeepsChains(t *testing.T) {
	tb := newFlowTable(12) // 16 slots
	keys := make([]flowKey, 12)
	for i := range keys {
		keys[i] = flowKey{src: [2]uint64{uint64(i)}, meta: 4}
		*tb.find(&keys[i]) = flow{key: keys[i], packets: uint64(i)}
		tb.n++
	}
	for _, del := range []int{3, 0, 7, 11, 5} {
		i := tb.home(&keys[del])
		for tb.slots[i].key != keys[del] {
			i = (i + 1) & tb.mask
		}
		tb.remove(i)
		keys[del].meta = 0
		for j, k := range keys {
			if k.meta == 0 {
				continue
			}
			if f := tb.find(&k); f.key != k || f.packets != uint64(j) {
				t.Fatalf("after removing %d, flow %d not found", del, j)
			}
		}
	}
	if tb.n != 7 {
		t.Errorf("%d flows, want 7", tb.n)
	}
}

// TestFlowTableFullKeepsAnEmptySlot: a table holding its most flows still
// has an empty slot at the end of every probe chain, so looking up a new
// flow ends, where it would go; the slots are a power of two above 4/3
// of the most flows.
func TestFlowTableFullKeepsAnEmptySlot(t *testing.T) {
	for _, most := range []int{1, 2, 3, 12, 100, 1000} {
		tb := newFlowTable(most)
		if n := uint64(len(tb.slots)); n&(n-1) != 0 || n*3 <= uint64(most)*4 || tb.mask != n-1 {
			t.Fatalf("at most %d flows: %d slots, mask %#x; want a power of two above 4/3 of it", most, n, tb.mask)
		}
		for i := range most {
			k := flowKey{dst: [2]uint64{uint64(i)}, meta: 6}
			f := tb.find(&k)
			if f.key.meta != 0 {
				t.Fatalf("at most %d flows: flow %d found before it was added", most, i)
			}
			*f = flow{key: k}
			tb.n++
		}
		k := flowKey{dst: [2]uint64{uint64(most)}, meta: 6}
		if f := tb.find(&k); f.key.meta != 0 {
			t.Fatalf("at most %d flows: a new flow in the full table found %+v, want an empty slot", most, f.key)
		}
	}
}
