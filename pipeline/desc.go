package pipeline

// Desc is an AF_XDP descriptor (struct xdp_desc): a UMEM address, a length
// and options.
//
// TODO(pipeline): becomes `type Desc = xsk.Desc` once the xsk package is
// committed; the layout is the one the contract fixes, so nothing else changes.
type Desc struct {
	Addr    uint64
	Len     uint32
	Options uint32
}
