package netdev_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/xdpipe/xdpipe/dataplane"
	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/netdev"
	"github.com/xdpipe/xdpipe/xsk"
)

func TestMain(m *testing.M) { testutil.RunCheckingLeaks(m) }

func TestXDPFeaturesString(t *testing.T) {
	for f, want := range map[netdev.XDPFeatures]string{
		0: "none",
		netdev.XDPBasic | netdev.XDPRedirect | netdev.XDPRxSG:                     "basic,redirect,rx-sg",
		netdev.XDPNdoXmit | netdev.XDPXSKZeroCopy | netdev.XDPHWOffload:           "ndo-xmit,xsk-zerocopy,hw-offload",
		netdev.XDPNdoXmitSG | 1<<9:                                                "ndo-xmit-sg,0x200",
		netdev.XDPBasic | netdev.XDPRedirect | netdev.XDPNdoXmit | netdev.XDPRxSG: "basic,redirect,ndo-xmit,rx-sg",
	} {
		if got := f.String(); got != want {
			t.Errorf("%#x: %q, want %q", uint64(f), got, want)
		}
	}
	if got := (netdev.Device{Features: netdev.XDPBasic, ZeroCopyMaxSegs: 1}).String(); got != "xdp-features basic xdp-rx-metadata none zc-max-segs 1" {
		t.Errorf("Device.String: %q", got)
	}
	for m, want := range map[netdev.RxMetadata]string{0: "none", netdev.RxHash: "hash",
		netdev.RxTimestamp | netdev.RxHash | netdev.RxVLANTag | 1<<5: "timestamp,hash,vlan-tag,0x20"} {
		if got := m.String(); got != want {
			t.Errorf("RxMetadata %#x: %q, want %q", uint64(m), got, want)
		}
	}
}

// get reads end's device inside its namespace.
func get(t *testing.T, e *testutil.LinkEnd) netdev.Device {
	t.Helper()
	idx := e.Ifindex(t)
	var d netdev.Device
	e.NS.MustDo(t, func() error {
		var err error
		d, err = netdev.Get(idx)
		if errors.Is(err, netdev.ErrNotSupported) {
			testutil.SkipOrFail(t, "%v", err)
		}
		return err
	})
	return d
}

// TestVethFeatures reads a veth's features from the kernel: basic,
// redirect and rx-sg, no zero-copy; ndo-xmit appears on A once its peer B
// has an XDP program (veth can then take redirected frames).
func TestVethFeatures(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{Queues: 2})
	d := get(t, &p.A)
	t.Logf("%s (%s): %v, queues rx %d tx %d", d.Name, d.Driver, d, d.RXQueues, d.TXQueues)
	if !d.Known || d.Name != p.A.Name || d.Driver != "veth" {
		t.Fatalf("device %+v: want known, name %s, driver veth", d, p.A.Name)
	}
	want := netdev.XDPBasic | netdev.XDPRedirect | netdev.XDPRxSG
	if !d.Features.Has(want) || d.Features.Has(netdev.XDPXSKZeroCopy) {
		t.Fatalf("veth features %v: want %v and no xsk-zerocopy", d.Features, want)
	}
	if d.Features.Has(netdev.XDPNdoXmit) {
		t.Fatalf("veth features %v: ndo-xmit without an XDP program on the peer", d.Features)
	}
	if want := netdev.RxTimestamp | netdev.RxHash | netdev.RxVLANTag; d.RxMetadata != want {
		t.Fatalf("veth xdp-rx-metadata %v, want %v", d.RxMetadata, want)
	}
	if d.RXQueues != 2 || d.TXQueues != 2 {
		t.Fatalf("queues rx %d tx %d, want 2 and 2", d.RXQueues, d.TXQueues)
	}

	p.B.AttachPass(t)
	if d := get(t, &p.A); !d.Features.Has(netdev.XDPNdoXmit) {
		t.Fatalf("with a program on the peer: %v, want ndo-xmit", d.Features)
	}
	p.A.NS.MustRun(t, "ethtool", "-L", p.A.Name, "rx", "1", "tx", "1")
	if d := get(t, &p.A); d.RXQueues != 1 || d.TXQueues != 1 {
		t.Fatalf("after ethtool -L rx 1 tx 1: queues rx %d tx %d", d.RXQueues, d.TXQueues)
	}
}

// TestNoInterface: an ifindex that does not exist is an error naming it.
func TestNoInterface(t *testing.T) {
	ns := testutil.NewNetNS(t)
	ns.MustDo(t, func() error {
		_, err := netdev.Get(4000)
		if errors.Is(err, netdev.ErrNotSupported) {
			testutil.SkipOrFail(t, "%v", err)
		}
		if err == nil || !strings.Contains(err.Error(), "no interface with index 4000") {
			t.Errorf("Get(4000): %v", err)
		}
		return nil
	})
}

// bindOn binds a socket on e's queue with the driver as netdev reads it
// (handed to xsk the data plane's way, dataplane.SocketDriver) and returns
// the error (closing a socket that opened).
func bindOn(t *testing.T, e *testutil.LinkEnd, queue int, o xsk.SocketOptions) (mode xsk.BindMode, why string, err error) {
	t.Helper()
	d := get(t, e)
	idx := e.Ifindex(t)
	e.NS.MustDo(t, func() error {
		u, uerr := xsk.NewUmem(xsk.UmemOptions{NumFrames: 64, FillSize: 32, CompletionSize: 32})
		if uerr != nil {
			return uerr
		}
		defer u.Close()
		o.RXSize, o.TXSize, o.Driver = 32, 32, dataplane.SocketDriver(d)
		s, serr := xsk.NewSocket(u, idx, queue, o)
		if serr != nil {
			err = serr
			return nil
		}
		mode, why = s.Mode(), s.Fallback()
		return s.Close()
	})
	return mode, why, err
}

// TestBindBadInput: each refused bind is one line naming the cause and
// the fix, and never a guess at the queue count when the queue is valid.
func TestBindBadInput(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{Queues: 2})
	checkLine := func(t *testing.T, err error, want ...string) {
		t.Helper()
		if err == nil {
			t.Fatal("bind succeeded")
		}
		msg := err.Error()
		t.Log(msg)
		if strings.Contains(msg, "\n") {
			t.Errorf("more than one line: %q", msg)
		}
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("error %q lacks %q", msg, w)
			}
		}
	}
	t.Run("zero-copy asked of a driver without it", func(t *testing.T) {
		_, _, err := bindOn(t, &p.A, 0, xsk.SocketOptions{Bind: xsk.BindZeroCopy})
		checkLine(t, err, "bind "+p.A.Name+" queue 0: zero-copy: driver veth has no xsk-zerocopy in its xdp-features; use copy or auto mode")
		if !errors.Is(err, xsk.ErrNotSupported) {
			t.Errorf("%v: not ErrNotSupported", err)
		}
	})
	t.Run("queue beyond the count", func(t *testing.T) {
		p.A.NS.MustRun(t, "ethtool", "-L", p.A.Name, "rx", "1", "tx", "1")
		t.Cleanup(func() { p.A.NS.MustRun(t, "ethtool", "-L", p.A.Name, "rx", "2", "tx", "2") })
		for _, mode := range []xsk.BindMode{xsk.BindCopy, xsk.BindAuto, xsk.BindZeroCopy} {
			_, _, err := bindOn(t, &p.A, 1, xsk.SocketOptions{Bind: mode})
			checkLine(t, err, "bind "+p.A.Name+" queue 1: "+p.A.Name+" has 1 active queues (0 to 0)", "ethtool -L "+p.A.Name)
		}
	})
	t.Run("auto says why it fell back", func(t *testing.T) {
		mode, why, err := bindOn(t, &p.A, 1, xsk.SocketOptions{})
		if err != nil || mode != xsk.BindCopy || why != "driver veth has no xsk-zerocopy in its xdp-features" {
			t.Fatalf("auto on veth: mode %v, why %q, err %v", mode, why, err)
		}
	})
	t.Run("copy has no fallback", func(t *testing.T) {
		if mode, why, err := bindOn(t, &p.A, 0, xsk.SocketOptions{Bind: xsk.BindCopy}); err != nil || mode != xsk.BindCopy || why != "" {
			t.Fatalf("copy on veth: mode %v, why %q, err %v", mode, why, err)
		}
	})
}
