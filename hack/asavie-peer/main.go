// Command asavie-peer is the benchmark's Go AF_XDP peer: a receive-and-drop
// loop on github.com/asavie/xdp v0.3.3, the library a Go user would reach
// for before xdpipe. It is its own module so xdpipe does not depend on it
// (only v0.3.3 resolves from the module proxy).
//
// It follows the library's own dumpframes example: its XDP program
// (attached through netlink), one socket on one queue, fill with every free
// descriptor, then take what arrived. With --poll spin it checks the RX
// ring in a loop; with --poll wakeup it sleeps in poll(2).
//
// It speaks xdpipe bench's child protocol: "ready" on stdout once set up,
// then, on SIGTERM, SIGINT or stdin closing, one JSON line
// {"frames":N,"bytes":B}.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/asavie/xdp"
)

func main() {
	iface := flag.String("iface", "", "interface")
	queue := flag.Int("queue", 0, "RX queue")
	poll := flag.String("poll", "spin", "spin or wakeup")
	flag.Parse()
	if err := run(*iface, *queue, *poll == "wakeup"); err != nil {
		fmt.Fprintln(os.Stderr, "asavie-peer:", err)
		os.Exit(1)
	}
}

func run(iface string, queue int, wakeup bool) error {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return err
	}
	prog, err := xdp.NewProgram(queue + 1)
	if err != nil {
		return fmt.Errorf("program: %w", err)
	}
	defer prog.Close()
	if err := prog.Attach(ifc.Index); err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	defer prog.Detach(ifc.Index)
	// The kernel releases the previous cell's socket on the queue a moment
	// after its process exits: retry EBUSY for up to 2 s, as xdpipe's xsk
	// and the C peer do. asavie formats the bind's error with %v, so only
	// its text says EBUSY.
	var xsk *xdp.Socket
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		xsk, err = xdp.NewSocket(ifc.Index, queue, nil)
		if err == nil || !strings.Contains(err.Error(), syscall.EBUSY.Error()) || time.Since(start) > 2*time.Second {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer xsk.Close()
	if err := prog.Register(queue, xsk.FD()); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	defer prog.Unregister(queue)

	var stop atomic.Bool
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	go func() { <-sig; stop.Store(true) }()
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stop.Store(true) }()

	fmt.Println("ready")
	runtime.LockOSThread()
	var frames, bytes uint64
	for !stop.Load() {
		if n := xsk.NumFreeFillSlots(); n > 0 {
			xsk.Fill(xsk.GetDescs(n))
		}
		var n int
		if wakeup {
			n, _, err = xsk.Poll(100)
			if err != nil {
				return err
			}
		} else {
			n = xsk.NumReceived()
		}
		if n == 0 {
			continue
		}
		for _, d := range xsk.Receive(n) {
			bytes += uint64(d.Len)
		}
		frames += uint64(n)
	}
	// Its defaults (128 frames, 64-entry rings) keep the working set in
	// cache but leave little room for a late receiver: report what the
	// kernel dropped, as the other receivers do.
	note := "asavie/xdp v0.3.3 defaults: 128 frames, 64-entry rings"
	if st, err := xsk.Stats(); err == nil {
		note += fmt.Sprintf("; kernel: rx_ring_full %d, rx_dropped %d", st.KernelStats.Rx_ring_full, st.KernelStats.Rx_dropped)
	}
	return json.NewEncoder(os.Stdout).Encode(struct {
		Frames uint64 `json:"frames"`
		Bytes  uint64 `json:"bytes"`
		Note   string `json:"note"`
	}{frames, bytes, note})
}
