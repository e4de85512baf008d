package bench

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/frame"
	"github.com/xdpipe/xdpipe/internal/testutil"
)

// reflectCounts reads the reflect mode's counts from its note.
var reflectCounts = regexp.MustCompile(`reflected (\d+), refused (\d+), absorbed (\d+)`)

// TestXskCPeerReflect runs hack/xsk-c-peer's reflect mode in B of a bench
// testbed and talks to it from A. Over IPv4 a kernel UDP socket sends with
// checksum offload (a partial checksum on the veth), with no checksum
// (SO_NO_CHECK) and with a full one (offload off): every reply must come
// back to the socket from B's address and port with the payload intact. A
// datagram too big for one frame goes as two fragments, neither answered.
// The testbed has no IPv6, so IPv6 frames are written and read on a packet
// socket: partial and full checksums, one behind a hop-by-hop header, are
// answered; a bad checksum and an ARP request are not. Every reply must
// carry a valid checksum (or IPv4's zero), and the peer's counts must add
// up exactly: nothing else reaches B.
func TestXskCPeerReflect(t *testing.T) {
	testutil.RequireTool(t, "ethtool")
	tb, peer, conn := startCReflectBed(t)

	// Every reply A gets (from B's MAC, to A's), IPv4 and IPv6.
	endA := &testutil.LinkEnd{NS: &testutil.NetNS{Name: tb.nsA}, Name: tb.ifA, MAC: tb.macA}
	replies := testutil.OpenPacketSocket(t, endA, func(b []byte) bool {
		var h frame.Headers
		return frame.Parse(b, &h) == frame.ReasonNone && h.Proto == frame.ProtoUDP &&
			bytes.Equal(b[0:6], tb.macA) && bytes.Equal(b[6:12], tb.macB)
	})

	const port = 7777
	dst := &net.UDPAddr{IP: tb.ipB, Port: port}
	buf := make([]byte, 2048)
	var echoed, unchecked int
	echo := func(how string, size int) {
		t.Helper()
		payload := make([]byte, size)
		for i := range payload {
			payload[i] = byte(i*7 + size)
		}
		if _, err := conn.WriteToUDP(payload, dst); err != nil {
			t.Fatalf("%s, %d bytes: send: %v", how, size, err)
		}
		// A bound for a lost reply, not a timing gate.
		if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("%s, %d bytes: no reply: %v", how, size, err)
		}
		if !from.IP.Equal(tb.ipB) || from.Port != port {
			t.Fatalf("%s, %d bytes: reply from %v, want %v", how, size, from, dst)
		}
		if !bytes.Equal(buf[:n], payload) {
			t.Fatalf("%s, %d bytes: reply of %d bytes differs from what was sent", how, size, n)
		}
		echoed++
	}
	sizes := []int{1, 2, 17, 64, 1000, 1472} // 1472: a full 1500-byte MTU
	for _, n := range sizes {
		echo("checksum offload (partial)", n)
	}
	// Two fragments: the first's UDP length runs past its frame, the second
	// has no UDP header. Neither is answered; the next echo's reply shows
	// that they are behind the peer.
	if _, err := conn.WriteToUDP(make([]byte, 2000), dst); err != nil {
		t.Fatal(err)
	}
	refused := 2
	setNoCheck(t, conn, 1)
	for _, n := range []int{3, 64} {
		echo("no checksum (SO_NO_CHECK)", n)
		unchecked++
	}
	setNoCheck(t, conn, 0)
	if out, err := exec.Command("ip", "netns", "exec", tb.nsA, "ethtool", "-K", tb.ifA, "tx", "off").CombinedOutput(); err != nil {
		t.Fatalf("ethtool -K %s tx off: %v: %s", tb.ifA, err, out)
	}
	for _, n := range []int{5, 64, 1472} {
		echo("full checksum (offload off)", n)
	}

	// IPv6, on the packet socket.
	for _, f := range []struct {
		check  string
		hop    bool
		answer bool
	}{
		{"partial", false, true}, {"full", false, true}, {"partial", true, true}, {"bad", false, false},
	} {
		replies.Send(t, udp6Frame(tb, f.check, f.hop, port, []byte("reflect me over IPv6, "+f.check)))
		if f.answer {
			echoed++
		} else {
			refused++
		}
	}
	replies.Send(t, arpRequest(tb))
	refused++
	testutil.EventuallyErr(t, 5*time.Second, func() error {
		if n := replies.Received(); n < int64(echoed) {
			return fmt.Errorf("%d replies seen on A's packet socket, want %d", n, echoed)
		}
		return nil
	})

	var zero, v6 int
	got := replies.Frames()
	if len(got) != echoed {
		t.Errorf("%d replies seen on A's packet socket, want %d", len(got), echoed)
	}
	for _, b := range got {
		var h frame.Headers
		frame.Parse(b, &h)
		u := b[h.L4:]
		n := int(binary.BigEndian.Uint16(u[4:6]))
		if n < frame.UDPLen || n > len(u) {
			t.Fatalf("reply with UDP length %d in %d bytes", n, len(u))
		}
		u = u[:n]
		if h.SrcPort != port {
			t.Errorf("reply from port %d, want %d", h.SrcPort, port)
		}
		switch {
		case h.Family == 4 && binary.BigEndian.Uint16(u[6:8]) == 0:
			zero++
		case frame.Fold(pseudoSum(h.Src, h.Dst, n)+frame.Sum(u)) != 0xffff:
			t.Errorf("reply %v:%d -> %v:%d: bad UDP checksum", h.Src, h.SrcPort, h.Dst, h.DstPort)
		}
		if h.Family != 6 {
			continue
		}
		v6++
		if h.Src != addr6B || h.Dst != addr6A || h.DstPort != port6A {
			t.Errorf("IPv6 reply %v:%d -> %v:%d, want %v:%d -> %v:%d", h.Src, h.SrcPort, h.Dst, h.DstPort,
				addr6B, port, addr6A, port6A)
		}
		if !bytes.HasPrefix(u[frame.UDPLen:], []byte("reflect me over IPv6, ")) {
			t.Errorf("IPv6 reply payload %q", u[frame.UDPLen:])
		}
	}
	if zero != unchecked || v6 != 3 {
		t.Errorf("replies: %d with no checksum (want %d), %d over IPv6 (want 3)", zero, unchecked, v6)
	}

	res := peer.stop(t)
	t.Logf("peer: %+v", res)
	m := reflectCounts.FindStringSubmatch(res.Note)
	if m == nil {
		t.Fatalf("no reflected and refused counts in %q", res.Note)
	}
	gotReflected, _ := strconv.Atoi(m[1])
	gotRefused, _ := strconv.Atoi(m[2])
	if gotReflected != echoed || gotRefused != refused || m[3] != "0" || res.Frames != uint64(echoed+refused) {
		t.Fatalf("peer received %d, reflected %d, refused %d; want %d, %d, %d",
			res.Frames, gotReflected, gotRefused, echoed+refused, echoed, refused)
	}
}

// TestXskCPeerReflectSockperf: with --sockperf the C reflector answers as
// sockperf's server does. A kernel UDP socket in A sends sockperf headers:
// a ping (client and pong-request flags) comes back with the client flag
// cleared, the rest of the payload intact and the checksum valid for the
// kernel to deliver it, with a partial checksum and with none
// (SO_NO_CHECK); a message that wants no reply is absorbed, one without
// the client flag refused, neither answered; the counts add up.
func TestXskCPeerReflectSockperf(t *testing.T) {
	tb, peer, conn := startCReflectBed(t, "--sockperf")
	dst := &net.UDPAddr{IP: tb.ipB, Port: 7777}
	msg := func(seq uint32, flags uint16) []byte {
		m := make([]byte, 64)
		binary.BigEndian.PutUint32(m[4:], seq)
		binary.BigEndian.PutUint16(m[8:], flags)
		binary.BigEndian.PutUint32(m[10:], uint32(len(m)))
		for i := 14; i < len(m); i++ {
			m[i] = byte(i)
		}
		return m
	}
	buf := make([]byte, 2048)
	// The unanswered first: the ping after them is the next datagram A reads.
	for i, f := range []uint16{1, 2, 3, 1, 2, 3} {
		if i == 3 {
			setNoCheck(t, conn, 1)
		}
		req := msg(uint32(i), f)
		if _, err := conn.WriteToUDP(req, dst); err != nil {
			t.Fatal(err)
		}
		if f != 3 {
			continue
		}
		// A bound for a lost reply, not a timing gate.
		if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("ping %d: no reply: %v", i, err)
		}
		want := msg(uint32(i), 2)
		if !bytes.Equal(buf[:n], want) {
			t.Fatalf("ping %d: reply % x, want % x", i, buf[:n], want)
		}
	}
	res := peer.stop(t)
	m := reflectCounts.FindStringSubmatch(res.Note)
	if m == nil {
		t.Fatalf("no counts in %q", res.Note)
	}
	if m[1] != "2" || m[2] != "2" || m[3] != "2" || res.Frames != 6 {
		t.Fatalf("peer received %d, reflected %s, refused %s, absorbed %s; want 6, 2, 2, 2", res.Frames, m[1], m[2], m[3])
	}
}

// startCReflectBed is what the reflect tests start from: a testbed, the
// C peer built and reflecting on B (with flags), and a UDP socket on A's
// address. All go when the test ends.
func startCReflectBed(t *testing.T, flags ...string) (*testbed, *cReflect, *net.UDPConn) {
	t.Helper()
	testutil.RequireRoot(t)
	requireCToolchain(t)
	bin, err := buildXskC("../hack/xsk-c-peer")
	if err != nil {
		t.Fatal(err)
	}
	tb, err := newTestbed()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tb.close)
	peer := startCReflect(t, tb, bin, flags...)
	var conn *net.UDPConn
	if err := tb.inA(func() (err error) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: tb.ipA})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return tb, peer, conn
}

// cReflect is a running hack/xsk-c-peer reflect.
type cReflect struct {
	cmd    *exec.Cmd
	out    *bufio.Reader
	stderr *bytes.Buffer
	done   bool
}

// startCReflect starts the peer in reflect mode in B, as the bench starts
// its receivers, and waits for it to be ready. It is stopped when the
// test ends, if stop has not stopped it.
func startCReflect(t *testing.T, tb *testbed, bin string, flags ...string) *cReflect {
	t.Helper()
	args := append([]string{"netns", "exec", tb.nsB, bin, "reflect", "--iface", tb.ifB}, flags...)
	p := &cReflect{cmd: exec.Command("ip", args...), stderr: &bytes.Buffer{}}
	p.cmd.Stderr = p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.done {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			kill := time.AfterFunc(10*time.Second, func() { _ = p.cmd.Process.Kill() })
			_ = p.cmd.Wait()
			kill.Stop()
		}
	})
	p.out = bufio.NewReader(stdout)
	if err := readyLine(p.out, nil, 15*time.Second); err != nil {
		t.Fatalf("xsk-c-peer reflect: %v: %s", err, p.stderr.String())
	}
	return p
}

// stop sends SIGTERM and returns the peer's JSON line; the peer must exit 0.
func (p *cReflect) stop(t *testing.T) childResult {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	res, err := readResult(p.out, nil, 0)
	werr := p.cmd.Wait()
	p.done = true
	if err != nil || werr != nil {
		t.Fatalf("xsk-c-peer reflect: result %v, exit %v: %s", err, werr, p.stderr.String())
	}
	return res
}

// setNoCheck sets SO_NO_CHECK on c: with 1 the kernel sends IPv4 UDP with
// a zero checksum.
func setNoCheck(t *testing.T, c *net.UDPConn, v int) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, v) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatalf("SO_NO_CHECK %d: %v", v, serr)
	}
}

// The IPv6 frames' addresses and source port (A's side; B is the reflector).
var (
	addr6A = netip.MustParseAddr("2001:2::a")
	addr6B = netip.MustParseAddr("2001:2::b")
)

const port6A = 5555

// pseudoSum is the UDP pseudo-header's unfolded sum for a datagram of n bytes.
func pseudoSum(src, dst netip.Addr, n int) uint64 {
	s, d := src.AsSlice(), dst.AsSlice()
	return frame.Sum(s) + frame.Sum(d) + frame.Sum([]byte{0, frame.ProtoUDP, byte(n >> 8), byte(n)})
}

// udp6Frame is a UDP over IPv6 frame from A to B's MAC, addr6A:port6A to
// addr6B:port, with the checksum check ("full", "partial": only the
// pseudo-header's sum, as checksum offload leaves it; "bad"), behind a
// hop-by-hop options header (one PadN) if hop.
func udp6Frame(tb *testbed, check string, hop bool, port uint16, payload []byte) []byte {
	var ext []byte
	next := byte(frame.ProtoUDP)
	if hop {
		ext, next = []byte{frame.ProtoUDP, 0, 1, 4, 0, 0, 0, 0}, 0
	}
	n := frame.UDPLen + len(payload)
	b := make([]byte, 0, frame.EthLen+frame.IPv6Len+len(ext)+n)
	b = append(append(append(b, tb.macB...), tb.macA...), 0x86, 0xdd)
	b = append(b, 0x60, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ext)+n))
	b = append(b, next, 64)
	b = append(append(b, addr6A.AsSlice()...), addr6B.AsSlice()...)
	b = append(b, ext...)
	l4 := len(b)
	b = binary.BigEndian.AppendUint16(b, port6A)
	b = binary.BigEndian.AppendUint16(b, port)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	b = append(b, 0, 0)
	b = append(b, payload...)
	pseudo := pseudoSum(addr6A, addr6B, n)
	c := frame.Fold(pseudo) // partial
	if check != "partial" {
		if c = ^frame.Fold(pseudo + frame.Sum(b[l4:])); c == 0 {
			c = 0xffff
		}
		if check == "bad" {
			c ^= 0x0101
		}
	}
	binary.NativeEndian.PutUint16(b[l4+6:], c)
	return b
}

// arpRequest is A asking for B's MAC, broadcast.
func arpRequest(tb *testbed) []byte {
	b := append(bytes.Repeat([]byte{0xff}, 6), tb.macA...)
	b = append(b, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1)
	b = append(append(b, tb.macA...), tb.ipA...)
	return append(append(b, make([]byte, 6)...), tb.ipB...)
}
