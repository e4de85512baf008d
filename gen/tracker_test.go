package gen

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/xdpipe/xdpipe/internal/monotime"
)

func TestTrackerCounts(t *testing.T) {
	tp, _ := NewTemplate(testConfig(UDP4, 0))
	f := bytes.Clone(tp.Bytes())
	tr := NewTracker()
	// 0..99 with 10 and 20 lost, 30 duplicated, 41 and 40 swapped.
	seqs := []uint64{}
	for s := uint64(0); s < 100; s++ {
		switch s {
		case 10, 20:
			continue
		case 30:
			seqs = append(seqs, 30, 30)
			continue
		case 40:
			seqs = append(seqs, 41, 40)
			continue
		case 41:
			continue
		}
		seqs = append(seqs, s)
	}
	for i, s := range seqs {
		tp.Stamp(f, s, 1000)
		if !tr.Observe(f, 1000+int64(i)*1000) {
			t.Fatal("generated frame not recognised")
		}
	}
	tr.Observe([]byte("not a frame at all, just bytes"), 0)
	st := tr.Stats(0)
	want := Stats{Received: 99, Unique: 98, Duplicates: 1, Reordered: 1, Others: 1, MaxSeq: 99, Expected: 100, Lost: 2}
	if st.Received != want.Received || st.Unique != want.Unique || st.Duplicates != want.Duplicates ||
		st.Reordered != want.Reordered || st.Others != want.Others || st.Lost != want.Lost || st.Expected != want.Expected {
		t.Fatalf("stats %+v\nwant %+v", st, want)
	}
	if st2 := tr.Stats(105); st2.Lost != 7 {
		t.Fatalf("lost with sender count 105: %d, want 7", st2.Lost)
	}
}

func TestTrackerWindowMoves(t *testing.T) {
	tr := NewTracker()
	// Every sequence number once, far past the window, in small shuffled
	// blocks: no duplicates, no loss.
	const n = 5 * trackWindow
	r := rand.New(rand.NewPCG(1, 2))
	for b := uint64(0); b < n; b += 8 {
		perm := r.Perm(8)
		for _, p := range perm {
			tr.ObservePayload(Payload{Seq: b + uint64(p)}, 64, 0)
		}
	}
	st := tr.Stats(n)
	if st.Unique != n || st.Duplicates != 0 || st.Lost != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Jumps larger than the window, then a duplicate of the last.
	tr.Reset()
	for _, s := range []uint64{0, 3 * trackWindow, 3*trackWindow + 5, 3 * trackWindow} {
		tr.ObservePayload(Payload{Seq: s}, 64, 0)
	}
	if st := tr.Stats(0); st.Duplicates != 1 || st.Unique != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for v := uint64(1); v <= 100000; v++ {
		h.Add(v)
	}
	for _, c := range []struct {
		q    float64
		want uint64
	}{{0.5, 50000}, {0.99, 99000}, {0.999, 99900}, {1, 100000}} {
		got := h.Quantile(c.q)
		if got < c.want || float64(got) > float64(c.want)*(1+1.0/16) {
			t.Errorf("q%v = %d, want %d within +6.25%%", c.q, got, c.want)
		}
	}
	for i := range 64 * histSub {
		if i > 0 && bucketHigh(i) <= bucketHigh(i-1) && i < 976 {
			t.Fatalf("bucket %d high %d not above bucket %d's %d", i, bucketHigh(i), i-1, bucketHigh(i-1))
		}
		if i < 976 && bucket(bucketHigh(i)) != i {
			t.Fatalf("bucket(bucketHigh(%d)) = %d", i, bucket(bucketHigh(i)))
		}
	}
}

func TestTrackerAllocatesNothing(t *testing.T) {
	tp, _ := NewTemplate(testConfig(UDP6, 256))
	f := bytes.Clone(tp.Bytes())
	tr := NewTracker()
	var seq uint64
	allocs := testing.AllocsPerRun(10000, func() {
		tp.Stamp(f, seq, 5)
		seq += 3
		tr.Observe(f, monotime.Now())
		tr.SampleLatency(f, monotime.Now())
	})
	if allocs != 0 {
		t.Fatalf("Observe+SampleLatency+Stamp: %v allocations per frame, want 0", allocs)
	}
}

func BenchmarkTrackerObserve(b *testing.B) {
	tp, _ := NewTemplate(testConfig(UDP4, 64))
	f := bytes.Clone(tp.Bytes())
	tr := NewTracker()
	b.ReportAllocs()
	now := monotime.Now()
	for i := 0; b.Loop(); i++ {
		tp.Stamp(f, uint64(i), now)
		tr.Observe(f, now+1000)
	}
}

// TestMergeCountsIsMerge: counts made elsewhere, handed over as Counts,
// with latencies sampled by SampleLatency, give the Stats that merging a
// Tracker that saw the frames gives; and LessDropped moves frames dropped
// after the count from received to lost.
func TestMergeCountsIsMerge(t *testing.T) {
	tp, _ := NewTemplate(testConfig(UDP4, 0))
	f := bytes.Clone(tp.Bytes())
	a, b := NewTracker(), NewTracker()
	sampled := NewTracker()
	for s := uint64(0); s < 50; s++ {
		if s != 7 {
			a.ObservePayload(Payload{Seq: s, Sent: 100}, 64, 100+int64(s)*1000)
		}
	}
	a.ObservePayload(Payload{Seq: 3, Sent: 100}, 64, 200) // duplicate
	for _, o := range []struct {
		seq       uint64
		sent, now int64
	}{{60, 100, 150}, {55, 9000, 1000}} { // a later highest; reordered, clock skewed
		tp.Stamp(f, o.seq, o.sent)
		b.Observe(f, o.now)
		if !sampled.SampleLatency(f, o.now) {
			t.Fatal("SampleLatency: generated frame not recognised")
		}
	}
	if sampled.SampleLatency([]byte("not a frame"), 0) {
		t.Fatal("SampleLatency took bytes for a generated frame")
	}
	b.others = 2
	merged := NewTracker()
	merged.Merge(a)
	merged.Merge(b)
	folded := NewTracker()
	folded.Merge(a)
	folded.Merge(sampled)
	folded.MergeCounts(&Counts{
		Received: b.received, Unique: b.unique, Duplicates: b.dups, Reordered: b.reordered, Late: b.late,
		Others: b.others, Bytes: b.bytes, MaxSeq: b.maxSeq, AnySeen: b.anySeen,
	})
	want, got := merged.Stats(0), folded.Stats(0)
	if got != want {
		t.Fatalf("MergeCounts: %+v\nMerge: %+v", got, want)
	}
	if got.Duplicates != 1 || got.Reordered != 1 || got.ClockSkewed != 1 || got.Lost != 10 || got.MaxSeq != 60 || got.LatencySamples != 51 {
		t.Fatalf("stats %+v: want 1 duplicate, 1 reordered, 1 skewed, 10 lost of 61, 51 latencies", got)
	}
	d := got.LessDropped(4)
	if d.Received != got.Received-4 || d.Unique != got.Unique-4 || d.Lost != got.Lost+4 || d.Expected != got.Expected {
		t.Fatalf("LessDropped(4): %+v from %+v", d, got)
	}
}
