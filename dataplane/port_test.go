package dataplane

import (
	"context"
	"strings"
	"testing"

	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/xsk"
)

// TestBusyPollZeroCopyTransmit: busy polling keeps a virtio_net port that
// transmits out of zero-copy (its zero-copy transmit would stall): zero-copy
// asked for is refused, auto binds copy mode; receiving only, copy mode,
// no busy polling or another driver are left alone.
func TestBusyPollZeroCopyTransmit(t *testing.T) {
	for _, tc := range []struct {
		driver    string
		bind      xsk.BindMode
		busy, txs bool
		stalls    bool
	}{
		{"virtio_net", xsk.BindZeroCopy, true, true, true},
		{"virtio_net", xsk.BindAuto, true, true, true},
		{"virtio_net", xsk.BindCopy, true, true, false},
		{"virtio_net", xsk.BindZeroCopy, true, false, false},
		{"virtio_net", xsk.BindZeroCopy, false, true, false},
		{"mlx5_core", xsk.BindZeroCopy, true, true, false},
	} {
		o := PortOptions{Transmits: tc.txs, Socket: xsk.SocketOptions{Bind: tc.bind, BusyPoll: tc.busy}}
		why := busyPollStall(tc.driver, o)
		if (why != "") != tc.stalls || tc.stalls && !strings.Contains(why, "virtio_net") {
			t.Errorf("%s bind %v busy %v transmits %v: %q, want stall %v", tc.driver, tc.bind, tc.busy, tc.txs, why, tc.stalls)
		}
	}
}

// TestPlanTransmits: a chain transmits when a stage that sends is in it,
// or undecided frames go back out; a receive-only chain does not.
func TestPlanTransmits(t *testing.T) {
	for _, tc := range []struct {
		stages []string
		def    pipeline.Verdict
		want   bool
	}{
		{[]string{"count"}, pipeline.VerdictKeep, false},
		{[]string{"count"}, pipeline.VerdictDrop, false},
		{[]string{"count"}, pipeline.VerdictTransmit, true},
		{[]string{"count", "macswap"}, pipeline.VerdictKeep, true},
		{[]string{"forward"}, pipeline.VerdictKeep, true},
	} {
		c := Options{Interfaces: []string{"xa"}, Default: tc.def}
		for _, k := range tc.stages {
			s, err := NewStage(k)
			if err != nil {
				t.Fatal(err)
			}
			c.Stages = append(c.Stages, s)
		}
		p, err := resolve(c, &fakeSystem{})
		if err != nil {
			t.Fatalf("%v default %v: %v", tc.stages, tc.def, err)
		}
		if p.transmits != tc.want {
			t.Errorf("%v default %v: transmits %v, want %v", tc.stages, tc.def, p.transmits, tc.want)
		}
	}
}

// TestPlanMemlockIsTheSystems: the locked-memory bound a plan is checked
// against is the system's, not the test process's: the same configuration
// passes on a system without a bound and is refused, naming the setting and
// the limit, on one with a small RLIMIT_MEMLOCK, whoever runs the test.
func TestPlanMemlockIsTheSystems(t *testing.T) {
	s, err := NewStage("count")
	if err != nil {
		t.Fatal(err)
	}
	c := Options{Interfaces: []string{"xa"}, Stages: []Stage{s}}
	if _, err := resolve(c, &fakeSystem{}); err != nil {
		t.Fatalf("no memlock bound: %v", err)
	}
	_, err = resolve(c, &fakeSystem{memlock: 1 << 20})
	if err == nil || !strings.HasPrefix(err.Error(), "ring: ") || !strings.Contains(err.Error(), "RLIMIT_MEMLOCK allows (1.0 MiB)") {
		t.Fatalf("memlock 1 MiB: %v, want the ring refused against 1.0 MiB", err)
	}
}

// TestPlanMultiBuffer: when one interface's MTU needs packets larger than
// a UMEM frame, every socket binds multi-buffer (the sockets of a worker
// share its UMEM and must agree); a burst too short for such a packet is
// refused in one line naming the fix; the rdma stage ships them, its
// connection sized for the largest.
func TestPlanMultiBuffer(t *testing.T) {
	cfg := func(burst int, ifaces ...string) Options {
		return Options{Interfaces: ifaces, Burst: burst, Stages: stages(t, "macswap")}
	}
	sys := &fakeSystem{}
	d, err := open(context.Background(), cfg(0, "xa", "jumbo0"), nil, sys)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if len(sys.opts) != 2 {
		t.Fatalf("%d ports opened", len(sys.opts))
	}
	for _, o := range sys.opts {
		if !o.Socket.MultiBuffer || !o.TakesMultiBuffer {
			t.Errorf("%s: multi-buffer %v, takes it %v; want both with an MTU 9000 interface in the UMEM", o.Iface, o.Socket.MultiBuffer, o.TakesMultiBuffer)
		}
	}
	if p, err := resolve(cfg(0, "xa"), &fakeSystem{}); err != nil || p.multiBuffer {
		t.Errorf("MTU 1500: multi-buffer %v (%v)", p != nil && p.multiBuffer, err)
	}
	if _, err := resolve(cfg(2, "jumbo0"), &fakeSystem{}); err == nil || !strings.Contains(err.Error(), "raise burst to 3") {
		t.Errorf("burst 2 with MTU 9000: %v, want an error with %q", err, "raise burst to 3")
	}
	rdma := cfg(0, "xa", "jumbo0")
	rdma.Stages = stages(t, "rdma")
	rdma.Stages[0].Options.(*pipeline.RDMAOptions).Connect = "198.18.0.9:7471"
	p, err := resolve(rdma, &fakeSystem{})
	if err != nil {
		t.Fatalf("rdma stage with MTU 9000: %v", err)
	}
	if !p.multiBuffer || p.rdmaSegs != 3 || p.rdmaPacket != 9018 {
		t.Errorf("rdma stage with MTU 9000: multi-buffer %v, %d segments, %d bytes; want true, 3, 9018 (a VLAN-tagged frame)", p.multiBuffer, p.rdmaSegs, p.rdmaPacket)
	}
}
