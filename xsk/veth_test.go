package xsk_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/xsk"
)

// openSocket makes a Umem and a socket on end e's queue, inside its
// namespace, closed at the end of the test.
func openSocket(t *testing.T, e *testutil.VethEnd, queue int, uo xsk.UmemOptions, so xsk.SocketOptions) (*xsk.Umem, *xsk.Socket) {
	t.Helper()
	u, err := xsk.NewUmem(uo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	ifindex := e.Ifindex(t)
	var s *xsk.Socket
	e.NS.MustDo(t, func() error {
		var err error
		s, err = xsk.NewSocket(u, ifindex, queue, so)
		return err
	})
	t.Cleanup(func() { s.Close() })
	return u, s
}

func TestBindCopy(t *testing.T) {
	p := testutil.NewVethPair(t, testutil.VethOptions{})
	_, s := openSocket(t, &p.B, 0, xsk.UmemOptions{NumFrames: 256}, xsk.SocketOptions{Bind: xsk.BindCopy})
	if s.Mode() != xsk.BindCopy {
		t.Fatalf("mode %v, want copy", s.Mode())
	}
	if s.FD() < 0 {
		t.Fatal("no fd")
	}
	t.Logf("fill need_wakeup=%v tx need_wakeup=%v", s.Fill().NeedWakeup(), s.TX().NeedWakeup())
	if st, err := s.Stats(); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("stats %+v", st)
	}
}

func TestBindZeroCopyFallsBack(t *testing.T) {
	p := testutil.NewVethPair(t, testutil.VethOptions{})
	u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	ifindex := p.B.Ifindex(t)
	p.B.NS.MustDo(t, func() error {
		s, err := xsk.NewSocket(u, ifindex, 0, xsk.SocketOptions{Bind: xsk.BindZeroCopy})
		if err == nil {
			s.Close()
			return errors.New("zero-copy bind on veth succeeded")
		}
		t.Logf("zero-copy: %v", err)
		if !errors.Is(err, xsk.ErrNotSupported) || !strings.Contains(err.Error(), "zero-copy not supported by xdpb queue 0; use copy or auto") {
			return err
		}
		s, err = xsk.NewSocket(u, ifindex, 0, xsk.SocketOptions{})
		if err != nil {
			return err
		}
		defer s.Close()
		if s.Mode() != xsk.BindCopy {
			return errors.New("auto did not fall back to copy")
		}
		return nil
	})
}
