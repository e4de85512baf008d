package pipeline

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/xdpipe/xdpipe/internal/frame"
	"github.com/xdpipe/xdpipe/xsk"
	"github.com/xdpipe/xdpipe/xsk/xsktest"
)

// jumboFrame is a 9000-byte UDP frame to port 53 whose payload bytes all
// differ from their neighbours, so a segment out of place shows.
func jumboFrame(tb testing.TB) []byte {
	f := buildFrame(tb, frameSpec{dport: 53, payload: 9000 - 42})
	for i := 42; i < len(f); i++ {
		f[i] = byte(i * 7)
	}
	return f
}

// putChain spreads f over frames of m of room bytes each, chained with
// XDP_PKT_CONTD, as the kernel delivers a multi-buffer packet.
func putChain(tb testing.TB, m *xsk.Umem, f []byte, room int) []Desc {
	var out []Desc
	for off := 0; off < len(f); off += room {
		d := put(tb, m, f[off:min(off+room, len(f))])
		if off+room < len(f) {
			d.Options = xsk.PktContd
		}
		out = append(out, d)
	}
	return out
}

// TestBurstLoadsChainsAsOnePacket: descriptors chained by XDP_PKT_CONTD are
// one packet whose Len, segments and copy are the whole frame; a chain cut
// short is loaded dropped, so the worker frees its frames.
func TestBurstLoadsChainsAsOnePacket(t *testing.T) {
	m := newUmem(t, 32, 2048, 32)
	jumbo, small := jumboFrame(t), udp4(t, 53)
	var descs []Desc
	descs = append(descs, put(t, m, small))
	descs = append(descs, putChain(t, m, jumbo, 1792)...) // 6 segments
	descs = append(descs, put(t, m, small))
	b, err := NewBurst(len(descs))
	if err != nil {
		t.Fatal(err)
	}
	b.Load(m, 0, 0, descs, 1)
	if b.Len() != 3 || b.Pkts[1].Len() != 9000 || len(b.Pkts[1].More) != 5 || b.Pkts[0].More != nil || b.Pkts[2].Len() != len(small) {
		t.Fatalf("%d packets; jumbo %d bytes in %d more segments", b.Len(), b.Pkts[1].Len(), len(b.Pkts[1].More))
	}
	got := make([]byte, 10000)
	if n := b.CopyPacket(got, &b.Pkts[1]); n != 9000 || !bytes.Equal(got[:n], jumbo) {
		t.Fatalf("copy of the jumbo packet: %d bytes, equal %v", n, bytes.Equal(got[:n], jumbo))
	}
	if n := b.CopyPacket(got[:3000], &b.Pkts[1]); n != 3000 || !bytes.Equal(got[:n], jumbo[:3000]) {
		t.Fatalf("copy into 3000 bytes: %d", n)
	}
	for _, v := range b.Pkts {
		if v.Verdict != VerdictKeep {
			t.Fatalf("verdict %v for a whole packet", v.Verdict)
		}
	}

	b.Reset()
	b.Load(m, 0, 0, descs[:4], 1) // the small frame and half the chain
	if b.Len() != 2 || b.Pkts[1].Verdict != VerdictDrop || len(b.Pkts[1].More) != 2 {
		t.Fatalf("cut chain: %d packets, verdict %v, %d more", b.Len(), b.Pkts[1].Verdict, len(b.Pkts[1].More))
	}
}

// TestMultiBufferStages: count, pcap and sample see the whole packet, not
// its first segment.
func TestMultiBufferStages(t *testing.T) {
	m := newUmem(t, 16, 4096, 16)
	jumbo := jumboFrame(t)
	descs := putChain(t, m, jumbo, 3840)
	b, _ := NewBurst(8)
	b.Load(m, 0, 0, descs, 1)

	c := &Count{}
	c.Process(b)
	if c.Packets.Load() != 1 || c.Bytes.Load() != 9000 {
		t.Errorf("count: %d packets, %d bytes", c.Packets.Load(), c.Bytes.Load())
	}
	path := filepath.Join(t.TempDir(), "j.pcap")
	p, err := NewPcap(PcapOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	p.Process(b)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readPcap(t, path); len(got) != 1 || !bytes.Equal(got[0], jumbo) {
		t.Errorf("pcap: %d records, first equal %v", len(got), len(got) > 0 && bytes.Equal(got[0], jumbo))
	}
	s, err := NewSample(1, 4, 5000)
	if err != nil {
		t.Fatal(err)
	}
	s.Process(b)
	x := <-s.C()
	if x.Length != 9000 || !bytes.Equal(x.Data, jumbo[:5000]) {
		t.Errorf("sample: length %d, %d bytes, equal %v", x.Length, len(x.Data), bytes.Equal(x.Data, jumbo[:min(len(x.Data), 5000)]))
	}
	s.Release(x)
	s.Close()
}

// TestIPFIXCountsAJumboPacketWhole: the ipfix stage counts a multi-buffer
// packet's IP length, not its first segment's.
func TestIPFIXCountsAJumboPacketWhole(t *testing.T) {
	m := newUmem(t, 16, 4096, 16)
	b, _ := NewBurst(8)
	b.Load(m, 0, 0, putChain(t, m, jumboFrame(t), 3840), 1)
	var s IPFIX
	var h frame.Headers
	var k flowKey
	if n, ok := s.flowOf(&b.Pkts[0], &h, &k); !ok || n != 9000-14 {
		t.Fatalf("ip length %d (%v), want %d", n, ok, 9000-14)
	}
}

// newXskFakeMB is newXskFakeB with multi-buffer on (4096-byte frames,
// the default).
func newXskFakeMB(tb testing.TB, stages []Stage) (*Worker, *xsk.Umem, *xsktest.Kernel) {
	tb.Helper()
	return newXskFakeWith(tb, stages, xsk.SocketOptions{MultiBuffer: true})
}

// TestWorkerXskFakeJumbo: l2fwd of 9000-byte frames in three segments
// each over xsk's fake kernel: every frame goes back whole, MACs swapped,
// segments in order with XDP_PKT_CONTD on all but the last; counters count
// packets, completions every frame, the UMEM accounts for every frame, and
// a pass allocates nothing.
func TestWorkerXskFakeJumbo(t *testing.T) {
	count := &Count{}
	w, u, k := newXskFakeMB(t, []Stage{count, &MacSwap{}})
	jumbo := jumboFrame(t)
	swapped := append(append(append([]byte(nil), jumbo[6:12]...), jumbo[0:6]...), jumbo[12:]...)
	sent := make([]xsk.Desc, 256)
	got := make([]byte, 9000)
	total, good := 0, 0
	collect := func() {
		n := k.Send(sent)
		if xsk.WholePackets(sent[:n]) != n {
			t.Fatalf("the fake kernel got %d descriptors ending inside a packet", n)
		}
		for p := range xsk.Packets(sent[:n]) {
			if m := u.CopyPacket(got, p); m == len(swapped) && len(p) == 3 && bytes.Equal(got[:m], swapped) {
				good++
			}
			total++
		}
	}
	step := func() {
		for range 30 { // 90 descriptors: bursts end inside a packet
			k.DeliverPacket(jumbo)
		}
		w.pass()
		w.pass()
		collect()
	}
	for range 20 {
		step()
	}
	if a := testing.AllocsPerRun(200, step); a != 0 {
		t.Fatalf("worker pass over multi-buffer packets allocates %v", a)
	}
	w.shutdown()
	collect()
	w.pass() // the last completions
	ps := w.PortStats(0)
	if total == 0 || good != total || ps.RxPackets.Load() != uint64(total) || ps.TxPackets.Load() != uint64(total) ||
		count.Bytes.Load() != uint64(9000*total) || ps.TxSegments.Load() != uint64(3*total) || ps.TxDone.Load() != uint64(3*total) {
		t.Fatalf("sent %d packets, %d right; rx %d tx %d packets, %d segments, %d done; counted %d bytes",
			total, good, ps.RxPackets.Load(), ps.TxPackets.Load(), ps.TxSegments.Load(), ps.TxDone.Load(), count.Bytes.Load())
	}
	if err := u.Accounting().Check(); err != nil {
		t.Fatal(err)
	}
}

// TestWorkerFreesEverySegment: dropped multi-buffer packets give every
// frame back.
func TestWorkerFreesEverySegment(t *testing.T) {
	w, u, k := newXskFakeMB(t, []Stage{&Drop{}})
	free := u.FreeCount()
	jumbo := jumboFrame(t)
	for range 10 {
		k.DeliverPacket(jumbo)
	}
	w.pass()
	if w.Stats().Dropped.Load() != 10 || u.FreeCount() != free {
		t.Fatalf("dropped %d packets; free frames %d, want %d", w.Stats().Dropped.Load(), u.FreeCount(), free)
	}
}

// BenchmarkWorkerXskFakeJumbo: 21 9000-byte packets (63 descriptors)
// delivered, through l2fwd on xsk's fake kernel, and sent, per op: a full
// pass and an idle one (which flushes the TX buffer short of its batch);
// 0 allocs/op. The fake kernel's copies of 9000 bytes in and none out are
// part of the figure.
func BenchmarkWorkerXskFakeJumbo(b *testing.B) {
	w, u, k := newXskFakeMB(b, []Stage{&Count{}, &MacSwap{}})
	jumbo := jumboFrame(b)
	sent := make([]xsk.Desc, 256)
	got := 0
	b.ReportAllocs()
	for b.Loop() {
		for range 21 {
			if k.DeliverPacket(jumbo) {
				got++
			}
		}
		w.pass()
		w.pass()
		k.Send(sent)
	}
	if got != 21*b.N {
		st, _ := k.Statistics()
		b.Fatalf("delivered %d of %d packets %+v %+v", got, 21*b.N, st, u.Accounting())
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*21), "ns/pkt")
}
