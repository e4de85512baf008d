//go:build linux

package bpf

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// XDP return codes (enum xdp_action).
const (
	xdpAborted  = 0
	xdpDrop     = 1
	xdpPass     = 2
	xdpTX       = 3
	xdpRedirect = 4
)

func TestAttachModeString(t *testing.T) {
	for m, want := range map[AttachMode]string{AttachAuto: "auto", AttachDriver: "driver", AttachGeneric: "generic", 7: "AttachMode(7)"} {
		if got := m.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(m), got, want)
		}
		if m <= AttachGeneric {
			if p, err := ParseAttachMode(want); err != nil || p != m {
				t.Errorf("ParseAttachMode(%q) = %v, %v", want, p, err)
			}
		}
	}
	if _, err := ParseAttachMode("offload"); err == nil {
		t.Error("ParseAttachMode(offload) succeeded")
	}
}

// udp4Frame builds an Ethernet/IPv4/UDP frame of total length size (>= 42).
func udp4Frame(size int) []byte {
	f := make([]byte, size)
	copy(f[0:6], []byte{0x02, 0, 0, 0, 0, 0x0b})
	copy(f[6:12], []byte{0x02, 0, 0, 0, 0, 0x0a})
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(size-14))
	ip[8] = 64
	ip[9] = unix.IPPROTO_UDP
	copy(ip[12:16], []byte{198, 18, 0, 1})
	copy(ip[16:20], []byte{198, 18, 0, 2})
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], 9000)
	binary.BigEndian.PutUint16(udp[2:], 9001)
	binary.BigEndian.PutUint16(udp[4:], uint16(size-34))
	return f
}

func newRedirect(t testing.TB) *Redirect {
	t.Helper()
	testutil.RequireRoot(t)
	r, err := LoadRedirect(RedirectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

func run(t testing.TB, prog *ebpf.Program, frame []byte) uint32 {
	t.Helper()
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("BPF_PROG_RUN: %v", err)
	}
	return ret
}

// unboundXSK is an AF_XDP socket for an XSKMAP, closed after the test. It
// need not be bound: non-live BPF_PROG_RUN reports the action without
// delivering the frame. It has a small RX ring (64 descriptors): Linux 7.3
// refuses a socket without one in an XSKMAP (ENOBUFS), 6.18 takes it.
func unboundXSK(tb testing.TB) int {
	tb.Helper()
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatalf("AF_XDP socket: %v", err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	if err := unix.SetsockoptInt(fd, unix.SOL_XDP, unix.XDP_RX_RING, 64); err != nil {
		tb.Fatalf("AF_XDP RX ring: %v", err)
	}
	return fd
}

// wantUnbound fails the test unless the program counted exactly want
// frames that found no socket, all on queue 0 (BPF_PROG_RUN's queue).
func wantUnbound(t *testing.T, read func() (Unbound, error), want uint64) {
	t.Helper()
	u, err := read()
	if err != nil {
		t.Fatal(err)
	}
	if u.Total() != want || (want > 0 && (len(u) != 1 || u[0].Queue != 0)) {
		t.Fatalf("unbound frames %v, want %d on queue 0", u, want)
	}
}

// TestRedirectProgRun runs the program on crafted frames: XDP_PASS with no
// socket on the queue, counted as unbound, XDP_REDIRECT with one, XDP_PASS
// again after Unregister; and a 9000-byte frame, which BPF_PROG_RUN only
// accepts for a program loaded with BPF_F_XDP_HAS_FRAGS (SEC("xdp.frags")).
func TestRedirectProgRun(t *testing.T) {
	r := newRedirect(t)
	frame := udp4Frame(64)
	wantUnbound(t, r.Unbound, 0)
	if got := run(t, r.Program(), frame); got != xdpPass {
		t.Fatalf("no socket registered: action %d, want XDP_PASS", got)
	}
	wantUnbound(t, r.Unbound, 1)
	fd := unboundXSK(t)
	if err := r.Register(0, fd); err != nil {
		t.Fatal(err)
	}
	if got := run(t, r.Program(), frame); got != xdpRedirect {
		t.Fatalf("socket on queue 0: action %d, want XDP_REDIRECT", got)
	}
	if got := run(t, r.Program(), udp4Frame(9000)); got != xdpRedirect {
		t.Fatalf("9000-byte multi-buffer frame: action %d, want XDP_REDIRECT", got)
	}
	wantUnbound(t, r.Unbound, 1)
	if err := r.Unregister(0); err != nil {
		t.Fatal(err)
	}
	if err := r.Unregister(0); err != nil {
		t.Fatalf("second Unregister: %v", err)
	}
	if got := run(t, r.Program(), frame); got != xdpPass {
		t.Fatalf("after Unregister: action %d, want XDP_PASS", got)
	}
	wantUnbound(t, r.Unbound, 2)

	// Bad input.
	if err := r.Register(MaxQueues, fd); err == nil {
		t.Error("Register on queue MaxQueues succeeded")
	}
	udp, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(udp) })
	if err := r.Register(1, udp); err == nil {
		t.Error("Register of a UDP socket succeeded")
	}
}

func TestRedirectCloseTwice(t *testing.T) {
	r := newRedirect(t)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := r.Attach(1, AttachAuto); !errors.Is(err, ErrClosed) {
		t.Fatalf("Attach after Close: %v, want ErrClosed", err)
	}
	if err := r.Register(0, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Register after Close: %v, want ErrClosed", err)
	}
}

// xdpShown reports whether `ip link show` in the end's namespace lists an
// XDP program on it.
func xdpShown(t *testing.T, e *testutil.LinkEnd) bool {
	t.Helper()
	// Attached: "mtu 1500 xdp qdisc ..." (xdpgeneric in generic mode) and a
	// "prog/xdp id N" line with -d.
	out := e.NS.MustRun(t, "ip", "-d", "link", "show", "dev", e.Name)
	return strings.Contains(out, "prog/xdp") || strings.Contains(out, " xdp ") || strings.Contains(out, " xdpgeneric ")
}

// TestRedirectAttachVeth attaches in each mode on a veth (which has native
// XDP), reports the mode, and checks Close detaches.
func TestRedirectAttachVeth(t *testing.T) {
	for _, tc := range []struct {
		mode, want AttachMode
		mtu        int
	}{
		{AttachAuto, AttachDriver, 1500},
		{AttachDriver, AttachDriver, 1500},
		{AttachGeneric, AttachGeneric, 1500},
		// veth refuses programs without xdp.frags above about 3500 bytes.
		{AttachDriver, AttachDriver, 9000},
	} {
		t.Run(tc.mode.String()+"-mtu"+strconv.Itoa(tc.mtu), func(t *testing.T) {
			p := testutil.NewLinkPair(t, testutil.LinkOptions{MTU: tc.mtu})
			r := newRedirect(t)
			ifindex := p.B.Ifindex(t)
			var got AttachMode
			p.B.NS.MustDo(t, func() (err error) {
				got, err = r.Attach(ifindex, tc.mode)
				return err
			})
			t.Logf("attach %v on %s mtu %d: got %v", tc.mode, p.B.Name, tc.mtu, got)
			if got != tc.want || r.Mode() != tc.want {
				t.Fatalf("attach %v: got mode %v, want %v", tc.mode, got, tc.want)
			}
			if !xdpShown(t, &p.B) {
				t.Fatalf("ip link shows no xdp on %s after Attach", p.B.Name)
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if xdpShown(t, &p.B) {
				t.Fatalf("ip link still shows xdp on %s after Close:\n%s", p.B.Name,
					p.B.NS.MustRun(t, "ip", "link", "show", "dev", p.B.Name))
			}
		})
	}
}

// TestRedirectAttachErrors: a missing interface, an interface that already
// has an XDP program, attaching twice.
func TestRedirectAttachErrors(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	r1, r2 := newRedirect(t), newRedirect(t)
	ifindex := p.B.Ifindex(t)
	p.B.NS.MustDo(t, func() error {
		if _, err := r1.Attach(999999, AttachAuto); !errors.Is(err, ErrNoInterface) {
			t.Errorf("attach to index 999999: %v, want ErrNoInterface", err)
		}
		if _, err := r1.Attach(ifindex, AttachAuto); err != nil {
			return err
		}
		if _, err := r1.Attach(ifindex, AttachAuto); err == nil {
			t.Error("second Attach of one Redirect succeeded")
		}
		for _, m := range []AttachMode{AttachAuto, AttachDriver, AttachGeneric} {
			_, err := r2.Attach(ifindex, m)
			if !errors.Is(err, ErrInterfaceBusy) {
				t.Errorf("attach %v over an attached program: %v, want ErrInterfaceBusy", m, err)
			} else if !strings.Contains(err.Error(), "xdp off") {
				t.Errorf("busy error does not say how to remove the program: %v", err)
			} else {
				t.Logf("busy (%v): %v", m, err)
			}
		}
		return nil
	})
}
