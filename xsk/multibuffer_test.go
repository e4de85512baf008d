package xsk_test

import (
	"slices"
	"testing"

	"github.com/xdpipe/xdpipe/xsk"
)

// chain is descriptors for packets of the given segment counts, every
// segment but a packet's last flagged XDP_PKT_CONTD, Len numbering them.
func chain(segs ...int) []xsk.Desc {
	var ds []xsk.Desc
	for _, n := range segs {
		for i := range n {
			d := xsk.Desc{Addr: uint64(len(ds)) * 4096, Len: uint32(len(ds))}
			if i < n-1 {
				d.Options = xsk.PktContd
			}
			ds = append(ds, d)
		}
	}
	return ds
}

// lens is the Len of each descriptor: which ones a packet holds.
func lens(ds []xsk.Desc) []uint32 {
	var l []uint32
	for _, d := range ds {
		l = append(l, d.Len)
	}
	return l
}

// TestPacketBoundaries: each helper finds a packet's end at the first
// descriptor without XDP_PKT_CONTD, and none treats a chain cut by the
// end of the slice as a whole packet.
func TestPacketBoundaries(t *testing.T) {
	ds := chain(1, 3, 2, 1)
	if ds[0].Continues() || !ds[1].Continues() || !ds[2].Continues() || ds[3].Continues() {
		t.Fatalf("Continues wrong on %+v", ds[:4])
	}
	for _, c := range []struct {
		descs     []xsk.Desc
		i, end    int
		wantWhole bool
	}{
		{ds, 0, 1, true},
		{ds, 1, 4, true},
		{ds, 2, 4, true}, // from inside a packet: to its end
		{ds, 4, 6, true},
		{ds, 6, 7, true},
		{ds[:3], 1, 3, false}, // cut: the slice ends while it continues
		{ds[:5], 4, 5, false},
	} {
		end, whole := xsk.PacketEnd(c.descs, c.i)
		if end != c.end || whole != c.wantWhole {
			t.Errorf("PacketEnd(%d descs, %d) = %d, %v; want %d, %v", len(c.descs), c.i, end, whole, c.end, c.wantWhole)
		}
	}
	for n, want := range []int{0, 1, 1, 1, 4, 4, 6, 7} {
		if got := xsk.WholePackets(ds[:n]); got != want {
			t.Errorf("WholePackets(first %d) = %d, want %d", n, got, want)
		}
	}
	var got [][]uint32
	for p := range xsk.Packets(ds[:5]) { // the last packet cut after one segment
		got = append(got, lens(p))
	}
	if want := [][]uint32{{0}, {1, 2, 3}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("Packets yielded %v, want %v", got, want)
	}
	got = got[:0]
	for p := range xsk.Packets(ds) {
		got = append(got, lens(p))
		if len(got) == 2 {
			break
		}
	}
	if len(got) != 2 {
		t.Fatalf("Packets went on after break: %v", got)
	}
}

// TestPacketsAllocatesNothing: going over a burst's packets is free of
// allocations, as a receive loop needs.
func TestPacketsAllocatesNothing(t *testing.T) {
	ds := chain(1, 3, 2, 1, 1)
	var n, segs int
	allocs := testing.AllocsPerRun(100, func() {
		for p := range xsk.Packets(ds) {
			n++
			segs += len(p)
		}
		end, _ := xsk.PacketEnd(ds, 1)
		segs += end + xsk.WholePackets(ds)
	})
	if allocs != 0 || n == 0 || segs == 0 {
		t.Fatalf("%v allocations per run (%d packets)", allocs, n)
	}
}

// otherDesc is another transport's descriptor: a continuing packet
// flagged its own way.
type otherDesc struct{ more bool }

func (d otherDesc) Continues() bool { return d.more }

// TestSegmentOfAnotherTransport: the helpers take any descriptor that
// says whether its packet continues.
func TestSegmentOfAnotherTransport(t *testing.T) {
	ds := []otherDesc{{true}, {false}, {false}, {true}}
	if end, whole := xsk.PacketEnd(ds, 0); end != 2 || !whole {
		t.Fatalf("PacketEnd = %d, %v", end, whole)
	}
	if n := xsk.WholePackets(ds); n != 3 {
		t.Fatalf("WholePackets = %d", n)
	}
	var sizes []int
	for p := range xsk.Packets(ds) {
		sizes = append(sizes, len(p))
	}
	if !slices.Equal(sizes, []int{2, 1}) {
		t.Fatalf("Packets sizes %v", sizes)
	}
}
