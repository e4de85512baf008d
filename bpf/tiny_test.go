//go:build linux

package bpf

import (
	"context"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xdpipe/xdpipe/gen"
	"github.com/xdpipe/xdpipe/internal/testutil"
)

func newDropCount(t *testing.T) *DropCount {
	t.Helper()
	testutil.RequireRoot(t)
	d, err := LoadDropCount()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

// TestDropCountProgRun checks the action and that the per-CPU counters sum
// to exactly what ran, whole multi-buffer frames included.
func TestDropCountProgRun(t *testing.T) {
	d := newDropCount(t)
	const n = 100
	ret, err := d.Program().Run(&ebpf.RunOptions{Data: udp4Frame(64), Repeat: n})
	if err != nil {
		t.Fatal(err)
	}
	if ret != xdpDrop {
		t.Fatalf("action %d, want XDP_DROP", ret)
	}
	if got := run(t, d.Program(), udp4Frame(9000)); got != xdpDrop {
		t.Fatalf("9000-byte frame: action %d, want XDP_DROP", got)
	}
	c, err := d.Counts()
	if err != nil {
		t.Fatal(err)
	}
	if want := (Counter{Packets: n + 1, Bytes: n*64 + 9000}); c != want {
		t.Fatalf("counts %+v, want %+v", c, want)
	}
}

// TestLiveFramesIntoDropCount sends frames with the generator's live
// engine out of one veth end and counts them with xdp_drop_count on the
// other: the generator and the ceiling of the benchmarks, together.
func TestLiveFramesIntoDropCount(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	d := newDropCount(t)
	ia, ib := p.A.Ifindex(t), p.B.Ifindex(t)
	var mode AttachMode
	p.B.NS.MustDo(t, func() (err error) {
		mode, err = d.Attach(ib, AttachAuto)
		return err
	})
	before, err := d.Counts()
	if err != nil {
		t.Fatal(err)
	}
	const n = 10000
	tp, err := gen.NewTemplate(gen.Config{Proto: gen.UDP4, SrcMAC: p.A.MAC, DstMAC: p.B.MAC,
		SrcIP: netip.MustParseAddr("198.18.0.1"), DstIP: netip.MustParseAddr("198.18.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	p.A.NS.MustDo(t, func() error {
		l, err := gen.NewLive(tp, gen.LiveOptions{Ifindex: ia})
		if err != nil {
			return err
		}
		defer l.Close()
		_, err = l.Send(context.Background(), gen.Run{Count: n})
		return err
	})
	after, err := d.Counts()
	if err != nil {
		t.Fatal(err)
	}
	got := after.Packets - before.Packets
	t.Logf("drop_count attached in %v mode counted %d of %d live frames", mode, got, n)
	// Live-frames mode may drop under pressure but never invents frames;
	// IPv6 neighbour or MLD chatter of the stack could add a few.
	if got < n*9/10 || got > n+16 {
		t.Fatalf("counted %d frames, sent %d", got, n)
	}
}
