//go:build linux

package bpf

import (
	"testing"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// The floor programs (testdata/floor.c) are test-only: their generated
// loader is a _test.go file, so xdpipe's binary does not carry them.

//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -tags linux floor testdata/floor.c

// newFloor loads the floor programs, with an AF_XDP socket on queue 0 of
// floor_xsks, so that xdp_floor redirects as the redirect program does.
func newFloor(tb testing.TB) *floorObjects {
	tb.Helper()
	testutil.RequireRoot(tb)
	var objs floorObjects
	if err := loadFloorObjects(&objs, nil); err != nil {
		tb.Fatalf("load floor programs: %v", err)
	}
	tb.Cleanup(func() {
		if err := objs.Close(); err != nil {
			tb.Error(err)
		}
	})
	if err := registerXSK(objs.FloorXsks, 0, unboundXSK(tb)); err != nil {
		tb.Fatal(err)
	}
	return &objs
}

// TestFloorProgRun holds the floor program to what it stands for: the
// steering program's verdict on a frame it redirects, and its malformed
// frames passed.
func TestFloorProgRun(t *testing.T) {
	f := newFloor(t)
	_, frame := scaleSet(1, false)
	if got := run(t, f.XdpFloor, frame); got != xdpRedirect {
		t.Errorf("floor on a UDP frame: action %d, want XDP_REDIRECT (%d)", got, xdpRedirect)
	}
	if got := run(t, f.XdpFloor, frame[:14+10]); got != xdpPass {
		t.Errorf("floor on a truncated IPv4 header: action %d, want XDP_PASS (%d)", got, xdpPass)
	}
	if got := run(t, f.XdpPass, frame); got != xdpPass {
		t.Errorf("pass: action %d, want XDP_PASS (%d)", got, xdpPass)
	}
}
