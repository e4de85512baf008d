package dataplane

import (
	"errors"

	"github.com/xdpipe/xdpipe/gen"
	"github.com/xdpipe/xdpipe/xsk"
)

// Generator is gen's AF_XDP engine on a port of its own: the socket opened
// by OpenPort, without an XDP program (it only sends).
type Generator struct {
	*gen.XSK
	port *Port
	umem *xsk.Umem
}

var _ gen.Engine = (*Generator)(nil)

// OpenGenerator opens gen's AF_XDP engine for t on queue of iface; opts'
// Ifindex must be iface's. Close releases the engine, socket and UMEM.
func OpenGenerator(t *gen.Template, iface string, queue int, opts gen.XSKOptions) (_ *Generator, err error) {
	uo, so, err := gen.XSKSocket(t, opts)
	if err != nil {
		return nil, err
	}
	if _, _, err := CheckInterface(iface); err != nil { // before the UMEM; the socket checks the TX queue
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
	g.port, err = OpenPort(PortOptions{Iface: iface, Queues: []int{queue}, Umems: []*xsk.Umem{g.umem}, Socket: so,
		TakesMultiBuffer: so.MultiBuffer, NoProgram: true})
	if err != nil {
		return nil, err
	}
	if g.XSK, err = gen.NewXSK(t, g.port.Sockets[0], opts); err != nil {
		return nil, err
	}
	return g, nil
}

// XDPFeatures describes the device's XDP features (Port.XDP).
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
