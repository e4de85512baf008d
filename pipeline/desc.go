package pipeline

import "github.com/xdpipe/xdpipe/xsk"

// Desc is an AF_XDP descriptor (struct xdp_desc): xsk.Desc itself, so the
// burst's receive scratch goes to xsk.Socket.Receive without conversion.
type Desc = xsk.Desc

// Compile-time checks that the xsk types plug into the worker directly.
var (
	_ Port   = (*xsk.Socket)(nil)
	_ Memory = (*xsk.Umem)(nil)
)
