package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/gen"
	"github.com/xdpipe/xdpipe/internal/monotime"
)

// A receiver runs in a child process (so its CPU time can be read alone)
// in the receiving namespace: it sets up, prints "ready" on stdout,
// receives until SIGTERM, SIGINT or its stdin closes, and prints one JSON
// line (childResult) on stdout.

// childResult is what a receiver child reports.
type childResult struct {
	Frames uint64 `json:"frames"`
	Bytes  uint64 `json:"bytes"`
	Note   string `json:"note,omitempty"`
	// Drops is read from the child's output by kernelDrops.
	Drops uint64 `json:"-"`
}

// rxArgs is what a receiver child is told.
type rxArgs struct {
	Iface string
	IP    net.IP
	Port  int
	Size  int
}

// rxFunc sets up a receiver and returns its loop, which counts into c
// until ctx is done, and a cleanup.
type rxFunc func(ctx context.Context, a rxArgs, c *counts) (loop func() error, cleanup func(), err error)

type counts struct {
	frames, bytes atomic.Uint64
	note          string
}

// ReceiverMain is the entry point of a receiver child: `xdpipe bench
// receiver --kind K --iface IF ...` (the harness starts it; users do not).
func ReceiverMain(args []string) error {
	fs := flag.NewFlagSet("bench receiver", flag.ContinueOnError)
	kind := fs.String("kind", "", "receiver kind")
	iface := fs.String("iface", "", "interface")
	ip := fs.String("ip", "", "IPv4 address to listen on (socket receivers)")
	port := fs.Int("port", 9, "UDP port")
	size := fs.Int("size", 64, "frame size")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rx, ok := receiverNamed(*kind)
	if !ok || rx.run == nil {
		return fmt.Errorf("unknown receiver kind %q", *kind)
	}
	a := rxArgs{Iface: *iface, IP: net.ParseIP(*ip), Port: *port, Size: *size}
	ctx, release := stopContext(os.Stdin)
	defer release()
	var c counts
	loop, cleanup, err := rx.run(ctx, a, &c)
	if err != nil {
		return err
	}
	defer cleanup()
	fmt.Println("ready")
	if err := loop(); err != nil && ctx.Err() == nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(childResult{Frames: c.frames.Load(), Bytes: c.bytes.Load(), Note: c.note})
}

// stopContext is done when the harness stops the child: it closes the
// child's stdin, then sends SIGTERM (SIGINT works too). The signals stay
// caught until release, so a SIGTERM after the EOF does not kill the child
// before it prints its result; undoing the signal handling on the EOF did,
// by the signal's default action, and the harness read no result.
func stopContext(stdin io.Reader) (ctx context.Context, release func()) {
	sigCtx, unnotify := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	ctx, cancel := context.WithCancel(sigCtx)
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		cancel()
	}()
	return ctx, func() { cancel(); unnotify() }
}

// attachPass attaches an XDP_PASS program to iface: frames XDP_TX'd into a
// veth by the live generator vanish uncounted unless the receiving veth has
// an XDP program, so the socket receivers get one that passes everything.
func attachPass(iface string) (func(), error) {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, err
	}
	prog, err := gen.NewXDPProgram(2, true)
	if err != nil {
		return nil, err
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index})
	if err != nil {
		prog.Close()
		return nil, fmt.Errorf("attach XDP_PASS to %s: %w", iface, err)
	}
	return func() { l.Close(); prog.Close() }, nil
}

func rxXDPDrop(ctx context.Context, a rxArgs, c *counts) (func() error, func(), error) {
	ifc, err := net.InterfaceByName(a.Iface)
	if err != nil {
		return nil, nil, err
	}
	d, err := bpf.LoadDropCount()
	if err != nil {
		return nil, nil, err
	}
	mode, err := d.Attach(ifc.Index, bpf.AttachAuto)
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	c.note = "in-kernel XDP_DROP (" + mode.String() + " mode): all work in softirq"
	loop := func() error {
		<-ctx.Done()
		n, err := d.Counts()
		if err != nil {
			return err
		}
		c.frames.Store(n.Packets)
		c.bytes.Store(n.Bytes)
		return nil
	}
	return loop, func() { d.Close() }, nil
}

// rxXDPDropXSKTX is xdp-drop fed by gen's xsk engine (AF_XDP TX in copy
// mode) at every size instead of live frames (feedXSK): the
// kernel's copy-mode AF_XDP TX path (xsk_generic_xmit, an skb per frame
// in sendto) with next to nothing behind it, the ceiling of any l2fwd that
// sends that way from one CPU. A slightly low one: that CPU also runs the
// generator's loop (which stamps every frame) and, in softirq, the
// receiving veth's XDP_DROP.
func rxXDPDropXSKTX(ctx context.Context, a rxArgs, c *counts) (func() error, func(), error) {
	loop, cleanup, err := rxXDPDrop(ctx, a, c)
	c.note += "; fed by gen's AF_XDP TX in copy mode: the kernel's copy-mode TX ceiling on one CPU"
	return loop, cleanup, err
}

// rxXDPDropBare is xdp-drop fed by the bare live-frames generator
// (gen.LiveOptions.Bare, feedBare): a program that only
// returns XDP_TX on the unstamped template. xdp-drop over this cell is what
// gen's sequence numbers, flow words and timestamps cost.
func rxXDPDropBare(ctx context.Context, a rxArgs, c *counts) (func() error, func(), error) {
	loop, cleanup, err := rxXDPDrop(ctx, a, c)
	c.note += "; fed by the bare live-frames generator (XDP_TX only, no stamps)"
	return loop, cleanup, err
}

// listenUDP opens the UDP socket with a large receive buffer.
func listenUDP(a rxArgs) (*net.UDPConn, func(), error) {
	undo, err := attachPass(a.Iface)
	if err != nil {
		return nil, nil, err
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: a.IP, Port: a.Port})
	if err != nil {
		undo()
		return nil, nil, err
	}
	if rc, err := conn.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
		})
	}
	return conn, func() { conn.Close(); undo() }, nil
}

// closeOnDone closes conn when ctx ends, unblocking its reader.
func closeOnDone(ctx context.Context, conn io.Closer) {
	go func() { <-ctx.Done(); conn.Close() }()
}

func rxUDP(ctx context.Context, a rxArgs, c *counts) (func() error, func(), error) {
	conn, cleanup, err := listenUDP(a)
	if err != nil {
		return nil, nil, err
	}
	c.note = "net.UDPConn.ReadFromUDP, one datagram per call"
	loop := func() error {
		closeOnDone(ctx, conn)
		buf := make([]byte, 65536)
		hdr := uint64(gen.HeaderLen(gen.UDP4))
		for {
			n, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				return err
			}
			c.frames.Add(1)
			c.bytes.Add(uint64(n) + hdr)
		}
	}
	return loop, cleanup, nil
}

// udpEcho sends every datagram back to its sender from a Go
// net.UDPConn: the kernel's socket path with Go's runtime on top. Unlike
// the socket receivers it attaches no XDP program, so that the veth takes
// the path it takes for any UDP socket.
func udpEcho(ctx context.Context, a rxArgs, c *counts) (func() error, func(), error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: a.IP, Port: a.Port})
	if err != nil {
		return nil, nil, err
	}
	c.note = "net.UDPConn echo"
	loop := func() error {
		closeOnDone(ctx, conn)
		buf := make([]byte, 65536)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return err
			}
			if _, err := conn.WriteToUDPAddrPort(buf[:n], from); err != nil {
				return err
			}
			c.frames.Add(1)
			c.bytes.Add(uint64(n))
		}
	}
	return loop, func() { conn.Close() }, nil
}

func rxRecvmmsg(ctx context.Context, a rxArgs, c *counts) (func() error, func(), error) {
	conn, cleanup, err := listenUDP(a)
	if err != nil {
		return nil, nil, err
	}
	c.note = "x/net ipv4.PacketConn.ReadBatch (recvmmsg), 64 per call"
	loop := func() error {
		closeOnDone(ctx, conn)
		pc := ipv4.NewPacketConn(conn)
		msgs := make([]ipv4.Message, 64)
		for i := range msgs {
			msgs[i].Buffers = [][]byte{make([]byte, 9216)}
		}
		hdr := uint64(gen.HeaderLen(gen.UDP4))
		for {
			n, err := pc.ReadBatch(msgs, 0)
			if err != nil {
				return err
			}
			var b uint64
			for i := range n {
				b += uint64(msgs[i].N) + hdr
			}
			c.frames.Add(uint64(n))
			c.bytes.Add(b)
		}
	}
	return loop, cleanup, nil
}

func rxAFPacket(ctx context.Context, a rxArgs, c *counts) (func() error, func(), error) {
	undo, err := attachPass(a.Iface)
	if err != nil {
		return nil, nil, err
	}
	ifc, err := net.InterfaceByName(a.Iface)
	if err != nil {
		undo()
		return nil, nil, err
	}
	r, err := newTPacketV3(ifc.Index, a.Size)
	if err != nil {
		undo()
		return nil, nil, err
	}
	c.note = "AF_PACKET TPACKET_V3 mmap ring, poll(2) per block"
	// The kernel's own receive path, no AF_XDP: the generated frames'
	// loss and order as the stack sees them (hack/vm/README.md uses it
	// to tell the VM's reordering from xdpipe's).
	tr := gen.NewTracker()
	var now int64
	observe := func(frame []byte) { tr.Observe(frame, now) }
	loop := func() error {
		for ctx.Err() == nil {
			now = monotime.Now()
			n, b, err := r.next(100, observe)
			if err != nil {
				return err
			}
			c.frames.Add(n)
			c.bytes.Add(b)
		}
		if st := tr.Stats(0); st.Received > 0 {
			c.note += "; generated: " + st.String()
		}
		return nil
	}
	return loop, func() { r.close(); undo() }, nil
}

// readyLine waits for the child's ready line: "ready", or one that ok
// accepts (skipping others).
func readyLine(r *bufio.Reader, ok func(string) bool, timeout time.Duration) error {
	type res struct {
		line string
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		for {
			l, err := r.ReadString('\n')
			if err != nil || ok == nil || ok(l) {
				ch <- res{l, err}
				return
			}
		}
	}()
	select {
	case x := <-ch:
		if x.err != nil {
			return fmt.Errorf("receiver exited before it was ready: %w", x.err)
		}
		if ok == nil && x.line != "ready\n" {
			return fmt.Errorf("receiver said %q, want ready", x.line)
		}
		return nil
	case <-time.After(timeout):
		return errors.New("receiver not ready in time")
	}
}
