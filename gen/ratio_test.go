package gen

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// BenchmarkLiveVsBare measures the live engine against a bare live-frames
// generator (LiveOptions.Bare: an XDP program that only returns XDP_TX on
// the same fixed 64-byte UDP frame), side by side in one run: rounds
// alternate the two, both on one pinned thread, both feeding an XDP_DROP
// program on the veth peer, and each rate counts only the frames the
// driver took. It reports the min, median and max of the per-round ratio
// live/bare (the bar is 0.9x or more).
//
//	go test ./gen/ -run '^$' -bench LiveVsBare -benchtime 7x
//
// -benchtime Nx is the number of rounds.
func BenchmarkLiveVsBare(b *testing.B) {
	testutil.RequireRoot(b)
	testutil.RequireVeth(b, "the live engine XDP_TXes out of the sender, which a virtio NIC does only with a program attached")
	const frames = 1 << 21 // per generator per round
	p := testutil.NewLinkPair(b, testutil.LinkOptions{})
	tp, err := NewTemplate(vethConfig(p, UDP4, 64))
	if err != nil {
		b.Fatal(err)
	}
	attachDrop(b, &p.B)
	idx := p.A.Ifindex(b)
	var ratios, live, bare []float64
	p.A.NS.MustDo(b, func() error {
		var cpu0 unix.CPUSet // one CPU for both, so the ratio compares like with like; best effort
		cpu0.Set(0)
		_ = unix.SchedSetaffinity(0, &cpu0)
		l, err := NewLive(tp, LiveOptions{Ifindex: idx, Chunk: 1 << 18})
		if err != nil {
			return err
		}
		defer l.Close()
		g, err := NewLive(tp, LiveOptions{Ifindex: idx, Chunk: 1 << 18, Bare: true})
		if err != nil {
			return err
		}
		defer g.Close()
		b.ResetTimer()
		for i := range b.N {
			var lr, br float64
			for k := range 2 { // alternate which goes first
				e, rate := Engine(l), &lr
				if (i+k)%2 == 1 {
					e, rate = g, &br
				}
				res, err := e.Send(context.Background(), Run{Count: frames})
				if err != nil {
					return err
				}
				*rate = float64(res.Sent) / res.Elapsed.Seconds()
			}
			live, bare = append(live, lr), append(bare, br)
			ratios = append(ratios, lr/br)
		}
		return nil
	})
	b.StopTimer()
	slices.Sort(ratios)
	b.ReportMetric(ratios[0], "min-ratio")
	b.ReportMetric(ratios[len(ratios)/2], "median-ratio")
	b.ReportMetric(ratios[len(ratios)-1], "max-ratio")
	slices.Sort(live)
	slices.Sort(bare)
	b.ReportMetric(live[len(live)/2]/1e6, "live-Mfps")
	b.ReportMetric(bare[len(bare)/2]/1e6, "bare-Mfps")
}

// attachDrop attaches an XDP_DROP program to the end, the receiver of the
// generators (a veth takes XDP_TX frames only into a peer with a program).
func attachDrop(tb testing.TB, e *testutil.LinkEnd) {
	tb.Helper()
	idx := e.Ifindex(tb)
	prog, err := NewXDPProgram(1, false)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { prog.Close() })
	e.NS.MustDo(tb, func() error {
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: idx})
		if err != nil {
			return fmt.Errorf("attach XDP_DROP to %s: %w", e.Name, err)
		}
		tb.Cleanup(func() { l.Close() })
		return nil
	})
}
