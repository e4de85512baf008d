package pipeline

import "unsafe"

// The sizes of what the stages allocate per slot, as the compiler lays it
// out: their memory costs (Costly) are worked out from these, so a cost
// follows the structure its constructor makes.
const (
	// flowSize is the bytes of one ipfix flow table slot.
	flowSize = uint64(unsafe.Sizeof(flow{}))
	// sampledSize is a sample slot's header, without its buffer.
	sampledSize = uint64(unsafe.Sizeof(Sampled{}))
	// ptrSize is a pointer: a channel element of the sample stage.
	ptrSize = uint64(unsafe.Sizeof(uintptr(0)))
)
