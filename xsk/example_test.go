package xsk_test

import (
	"fmt"
	"time"

	"github.com/xdpipe/xdpipe/xsk"
)

// The receive-and-drop loop: frames go from the RX ring straight back to
// the fill ring. An XDP program must redirect the queue's frames into an
// XSKMAP entry holding s.FD() (bpf.Redirect does).
func Example_rxdrop() {
	u, err := xsk.NewUmem(xsk.UmemOptions{}) // 4096 frames of 4096 bytes
	if err != nil {
		fmt.Println(err)
		return
	}
	defer u.Close()
	s, err := xsk.NewSocket(u, 2, 0, xsk.SocketOptions{}) // ifindex 2, queue 0, auto mode
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	fmt.Println("bound in", s.Mode(), "mode")

	descs := make([]xsk.Desc, 64) // one burst, allocated once
	s.Refill()
	for range 1000 {
		n := s.Receive(descs)
		if n == 0 {
			s.Wait(100 * time.Millisecond) // sleep in poll until frames arrive
			continue
		}
		for _, d := range descs[:n] {
			_ = u.Bytes(d) // the packet, in place in the UMEM
		}
		if r := s.Recycle(descs[:n]); r < n {
			u.FreeDescs(descs[r:n]) // fill ring full: back to the free stack
		}
	}
}

// The transmit side: write frames in place, queue them, and take
// completions back to the free stack.
func Example_transmit() {
	u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 1024, FrameSize: 2048})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer u.Close()
	s, err := xsk.NewSocket(u, 2, 0, xsk.SocketOptions{Bind: xsk.BindCopy})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	frame := make([]byte, 60) // an Ethernet frame
	addrs := make([]uint64, 32)
	descs := make([]xsk.Desc, 32)
	n := u.Alloc(addrs)
	for i, a := range addrs[:n] {
		a += u.DataOffset()
		copy(u.Frame(a)[u.DataOffset():], frame)
		descs[i] = xsk.Desc{Addr: a, Len: uint32(len(frame))}
	}
	q := s.Transmit(descs[:n])
	u.FreeDescs(descs[q:n]) // TX ring full: not sent
	for done := 0; done < q; {
		done += s.Complete()
		if done < q {
			s.Transmit(nil) // copy mode sends at most 32 per kick
		}
	}
}
