// Package xskport runs gen's AF_XDP engine on a port of its own, opened
// the one way the data plane opens ports (dataplane.OpenPort), without an
// XDP program: it only sends. `xdpipe gen --engine xsk` and the benchmark
// harness use it.
//
// It is a package of its own so that neither gen nor dataplane imports the
// other: dataplane is a library that knows nothing of the generator, and
// gen stays below the packages whose tests use it (bpf, dataplane).
package xskport

import (
	"errors"

	"github.com/xdpipe/xdpipe/dataplane"
	"github.com/xdpipe/xdpipe/gen"
	"github.com/xdpipe/xdpipe/xsk"
)

// Generator is gen's AF_XDP engine on a port of its own.
type Generator struct {
	*gen.XSK
	port *dataplane.Port
	umem *xsk.Umem
}

var _ gen.Engine = (*Generator)(nil)

// Open opens gen's AF_XDP engine for t on queue of iface; opts' Ifindex
// must be iface's. Close releases the engine, socket and UMEM.
func Open(t *gen.Template, iface string, queue int, opts gen.XSKOptions) (_ *Generator, err error) {
	uo, so, err := gen.XSKSocket(t, opts)
	if err != nil {
		return nil, err
	}
	if _, _, err := dataplane.CheckInterface(iface); err != nil { // before the UMEM; the socket checks the TX queue
		return nil, err
	}
	g := &Generator{}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	if g.umem, err = xsk.NewUmem(uo); err != nil {
		return nil, err
	}
	g.port, err = dataplane.OpenPort(dataplane.PortOptions{Iface: iface, Queues: []int{queue}, Umems: []*xsk.Umem{g.umem}, Socket: so,
		TakesMultiBuffer: so.MultiBuffer, NoProgram: true})
	if err != nil {
		return nil, err
	}
	if g.XSK, err = gen.NewXSK(t, g.port.Sockets[0], opts); err != nil {
		return nil, err
	}
	return g, nil
}

// XDPFeatures describes the device's XDP features (dataplane.Port.XDP).
func (g *Generator) XDPFeatures() string { return g.port.XDP }

// Close closes the engine, its socket and its UMEM.
func (g *Generator) Close() error {
	var err error
	if g.XSK != nil {
		err = g.XSK.Close()
	}
	if g.port != nil {
		err = errors.Join(err, g.port.Close())
	}
	if g.umem != nil {
		err = errors.Join(err, g.umem.Close())
	}
	return err
}
