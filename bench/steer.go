package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/xsk"
)

// steerRules is the rule count of the xdpipe-steer10k receiver.
const steerRules = 10000

// steerSet is steerRules rules of which only the last (lowest priority)
// matches the generated traffic (UDP to ip port 9) and redirects it; the
// others match other destinations and ports and would drop.
func steerSet(ip netip.Addr) *rules.Set {
	s := &rules.Set{Default: rules.ActionPass, Malformed: rules.ActionPass}
	for i := range steerRules - 1 {
		dst := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		s.Rules = append(s.Rules, rules.Rule{
			Priority: uint32(i + 1),
			Fields:   rules.FieldProto | rules.FieldDst | rules.FieldDport,
			Proto:    17,
			Dst:      netip.PrefixFrom(dst, 32),
			Dport:    rules.PortRange{Lo: uint16(1000 + i%50000), Hi: uint16(1000 + i%50000)},
			Action:   rules.ActionDrop,
		})
	}
	s.Rules = append(s.Rules, rules.Rule{
		Priority: steerRules,
		Name:     "bench",
		Fields:   rules.FieldProto | rules.FieldDst | rules.FieldDport,
		Proto:    17,
		Dst:      netip.PrefixFrom(ip, 32),
		Dport:    rules.PortRange{Lo: 9, Hi: 9},
		Action:   rules.ActionRedirect,
	})
	return s
}

// rxSteer10k is xdpipe's receive-and-drop loop (the same xsk calls and
// ring sizes as `xdpipe rxdrop --poll spin`) behind the steering program
// holding 10,000 rules instead of the bare redirect program.
func rxSteer10k(ctx context.Context, a rxArgs, c *counts) (func() error, func(), error) {
	ifc, err := net.InterfaceByName(a.Iface)
	if err != nil {
		return nil, nil, err
	}
	ip, ok := netip.AddrFromSlice(a.IP.To4())
	if !ok {
		return nil, nil, fmt.Errorf("steer receiver needs --ip")
	}
	var undo []func()
	cleanup := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	fail := func(err error) (func() error, func(), error) { cleanup(); return nil, nil, err }
	umem, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 4 * xsk.DefaultRingSize, FillSize: 2 * xsk.DefaultRingSize})
	if err != nil {
		return fail(err)
	}
	undo = append(undo, func() { umem.Close() })
	sock, err := xsk.NewSocket(umem, ifc.Index, 0, xsk.SocketOptions{Bind: xsk.BindCopy})
	if err != nil {
		return fail(err)
	}
	undo = append(undo, func() { sock.Close() })
	st, err := bpf.LoadSteer(bpf.SteerOptions{})
	if err != nil {
		return fail(err)
	}
	undo = append(undo, func() { st.Close() })
	set := steerSet(ip)
	if err := set.Normalize(); err != nil {
		return fail(err)
	}
	if err := st.Apply(set); err != nil {
		return fail(fmt.Errorf("apply %d rules: %w", len(set.Rules), err))
	}
	sock.Refill()
	if _, err := st.Attach(ifc.Index, bpf.AttachAuto); err != nil {
		return fail(err)
	}
	if err := st.Register(0, sock.FD()); err != nil {
		return fail(err)
	}
	c.note = fmt.Sprintf("rxdrop's spin loop behind the steering program with %d rules (the last matches)", len(set.Rules))
	loop := func() error {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var stop atomic.Bool
		go func() { <-ctx.Done(); stop.Store(true) }()
		descs := make([]xsk.Desc, 64)
		for !stop.Load() {
			n := sock.Receive(descs)
			if n == 0 {
				continue
			}
			var b uint64
			for i := range descs[:n] {
				b += uint64(descs[i].Len)
			}
			c.frames.Add(uint64(n))
			c.bytes.Add(b)
			if r := sock.Recycle(descs[:n]); r < n {
				umem.FreeDescs(descs[r:n])
				sock.Refill()
			}
		}
		return nil
	}
	return loop, cleanup, nil
}
