package bench

import (
	"context"
	"net"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/xsk"
)

// rxL2fwd is xdpipe's l2fwd: the pipeline's run-to-completion worker with
// the MacSwap stage, spinning, on one AF_XDP socket behind the bare
// redirect program; every frame goes back out of the veth it came in on
// (and is dropped by the sender's kernel stack, which is not the
// receiver's CPU). Counts frames received by the worker.
func rxL2fwd(ctx context.Context, a rxArgs, c *counts) (func() error, func(), error) {
	ifc, err := net.InterfaceByName(a.Iface)
	if err != nil {
		return nil, nil, err
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
	w, err := pipeline.NewWorker(pipeline.WorkerConfig{
		Ports:  []pipeline.NamedPort{{Name: a.Iface, Port: sock}},
		Mem:    umem,
		Stages: []pipeline.Stage{&pipeline.MacSwap{}},
		Poll:   pipeline.PollSpin,
		CPU:    -1,
	})
	if err != nil {
		return fail(err)
	}
	sock.Refill()
	prog, err := bpf.LoadRedirect()
	if err != nil {
		return fail(err)
	}
	undo = append(undo, func() { prog.Close() })
	if _, err := prog.Attach(ifc.Index, bpf.AttachAuto); err != nil {
		return fail(err)
	}
	if err := prog.Register(0, sock.FD()); err != nil {
		return fail(err)
	}
	c.note = "pipeline worker with MacSwap (l2fwd), spinning, frames sent back out"
	loop := func() error {
		err := w.Run(ctx)
		ps := w.PortStats(0)
		c.frames.Store(ps.RxPackets.Load())
		c.bytes.Store(ps.RxBytes.Load())
		return err
	}
	return loop, cleanup, nil
}
