//go:build linux

package bpf

import (
	"bytes"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/xdpipe/xdpipe/gen"
	"github.com/xdpipe/xdpipe/internal/testutil"
)

func newTrackingRedirect(t *testing.T) *Redirect {
	t.Helper()
	testutil.RequireRoot(t)
	r, err := LoadTrackingRedirect(RedirectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := r.Register(0, unboundXSK(t)); err != nil {
		t.Fatal(err)
	}
	return r
}

// trackedSum adds the tracking program's per-CPU states (BPF_PROG_RUN runs
// on whichever CPU the test thread is on).
func trackedSum(t *testing.T, r *Redirect) (sum TrackState, maxSeq uint64) {
	t.Helper()
	states, err := r.Tracked()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		sum.Received += s.Received
		sum.Unique += s.Unique
		sum.Dups += s.Dups
		sum.Reordered += s.Reordered
		sum.Late += s.Late
		sum.Others += s.Others
		sum.Bytes += s.Bytes
		if s.AnySeen != 0 {
			maxSeq = max(maxSeq, s.MaxSeq)
		}
	}
	return sum, maxSeq
}

// TestTrackingRedirectCountsAsTracker: the tracking program, fed generated
// frames of every protocol with loss, duplicates, reordering, late frames
// and jumps of the sequence window, plus frames that are not generated
// ones, counts what gen.Tracker counts for the same frames.
func TestTrackingRedirectCountsAsTracker(t *testing.T) {
	r := newTrackingRedirect(t)
	var frames [][]byte
	r0 := rand.New(rand.NewPCG(3, 4))
	seqs := []uint64{}
	for s := uint64(0); s < 300; s++ {
		switch {
		case s%17 == 0: // lost
		case s%23 == 0: // duplicated
			seqs = append(seqs, s, s)
		default:
			seqs = append(seqs, s)
		}
	}
	r0.Shuffle(len(seqs), func(i, j int) {
		if i-j < 8 && j-i < 8 {
			seqs[i], seqs[j] = seqs[j], seqs[i]
		}
	})
	// A jump within the window, then one frame back onto a position an
	// earlier frame (100) had set, which the jump must have forgotten; the
	// same after a jump past the window (260, a position the first jump
	// kept); a late frame, too old for the window; a duplicate of the
	// highest.
	const w = 1 << 16
	seqs = append(seqs, w+250, w+100, 4*w+280, 4*w+260, 100, 4*w+280)
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	for i, s := range seqs {
		var c gen.Config
		switch i % 4 {
		case 0:
			c = gen.Config{Proto: gen.UDP4, SrcIP: netip.MustParseAddr("198.18.0.1"), DstIP: netip.MustParseAddr("198.18.0.2")}
		case 1:
			c = gen.Config{Proto: gen.UDP6, SrcIP: netip.MustParseAddr("2001:2::1"), DstIP: netip.MustParseAddr("2001:2::2")}
		case 2:
			c = gen.Config{Proto: gen.TCP4SYN, SrcIP: netip.MustParseAddr("198.18.0.1"), DstIP: netip.MustParseAddr("198.18.0.2"), Size: 128}
		case 3:
			c = gen.Config{Proto: gen.TCP6SYN, SrcIP: netip.MustParseAddr("2001:2::1"), DstIP: netip.MustParseAddr("2001:2::2")}
		}
		c.SrcMAC, c.DstMAC = mac, mac
		tp, err := gen.NewTemplate(c)
		if err != nil {
			t.Fatal(err)
		}
		f := bytes.Clone(tp.Bytes())
		tp.Stamp(f, s, 0)
		frames = append(frames, f)
	}
	// Not generated: no magic, a payload cut short, an L4 header cut short.
	frames = append(frames, udp4Frame(64), frames[0][:50], frames[0][:36])

	tr := gen.NewTracker()
	for _, f := range frames {
		if got := run(t, r.Program(), f); got != xdpRedirect {
			t.Fatalf("action %d, want XDP_REDIRECT", got)
		}
		tr.Observe(f, 0)
	}
	want := tr.Stats(0)
	t.Logf("gen.Tracker: %v (late %d, others %d)", want, want.Late, want.Others)
	got, maxSeq := trackedSum(t, r)
	if got.Received != want.Received || got.Unique != want.Unique || got.Dups != want.Duplicates ||
		got.Reordered != want.Reordered || got.Late != want.Late || got.Others != want.Others ||
		got.Bytes != want.Bytes || maxSeq != want.MaxSeq {
		t.Fatalf("program counted received %d unique %d dups %d reordered %d late %d others %d bytes %d max %d\n"+
			"gen.Tracker: %+v", got.Received, got.Unique, got.Dups, got.Reordered, got.Late, got.Others, got.Bytes, maxSeq, want)
	}
}
